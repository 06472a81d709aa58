"""The one runner interface every backend implements (Polygraphy's activate / infer / deactivate).

A runner is created cheaply, loads its model in ``activate()``, runs named numpy arrays through
``infer()`` and releases everything in ``deactivate()``. It is also a context manager, so
``with make_runner(path) as r: r.infer(feeds)`` is the usual form.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError

Shape = tuple  # entries are int (fixed) or str/None (symbolic, e.g. 'batch')


class RunnerError(DeployKitError):
    """A runner was used wrongly (not activated, wrong feed names, wrong shapes or dtypes)."""


class Runner(abc.ABC):
    """Load a model, run named numpy arrays through it, release it."""

    #: Short backend id: "torch", "onnxruntime", "tensorrt".
    backend: str = ""

    def __init__(self, name: str, device: str = "cpu") -> None:
        self.name = name
        self.device = device
        self.is_active = False
        # Set by make_runner for an artifact: the batch sizes the artifact was built for.
        self.batch_profile: Any = None
        # What the numbers mean: compute precision ("fp32", "fp16", "int8", ...) when known.
        self.precision: str | None = None
        # The model's DataConfig when known (artifact or zoo model): input size, mean, std.
        self.data_config: Any = None

    # -- lifecycle ------------------------------------------------------------------------------
    def activate(self) -> Runner:
        """Load the model (idempotent); errors the user can fix are DeployKitErrors."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        """Release the model and its memory (idempotent)."""
        if self.is_active:
            try:
                self._deactivate()
            finally:
                self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.deactivate()

    # -- inference ------------------------------------------------------------------------------
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: input name -> array in, output name -> array out (host numpy)."""
        if not self.is_active:
            raise RunnerError(f"{self.name}: activate() the runner (or use it in a with-block) before infer()")
        expected = self.input_names
        missing = [n for n in expected if n not in feeds]
        extra = [n for n in feeds if n not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(missing)}")
            if extra:
                parts.append(f"unknown input(s) {', '.join(extra)}")
            raise RunnerError(f"{self.name}: {'; '.join(parts)} (expects {', '.join(expected)})")
        return self._infer(feeds)

    def synchronize(self) -> None:  # noqa: B027 - a deliberate no-op default, overridden by GPU runners
        """Wait for queued device work; a no-op on CPU backends."""

    # -- metadata -------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        """Input tensor names, in model order."""
        return list(self.input_metadata())

    @property
    def output_names(self) -> list[str]:
        """Output tensor names, in model order."""
        self._require_active("output_names")
        return list(self._output_names())

    def input_metadata(self) -> dict[str, tuple[np.dtype, Shape]]:
        """Input name -> (numpy dtype, shape with symbolic dims as str or None)."""
        self._require_active("input_metadata")
        return dict(self._input_metadata())

    def describe(self) -> dict[str, Any]:
        """What this runner is, for reports: backend, device and the options that shape speed."""
        return {
            "backend": self.backend,
            "name": self.name,
            "device": self.device,
            "precision": self.precision,
            **self._options(),
        }

    # -- for subclasses -------------------------------------------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _deactivate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def _input_metadata(self) -> dict[str, tuple[np.dtype, Shape]]: ...

    @abc.abstractmethod
    def _output_names(self) -> list[str]: ...

    def _options(self) -> dict[str, Any]:
        return {}

    def _require_active(self, what: str) -> None:
        if not self.is_active:
            raise RunnerError(f"{self.name}: activate() the runner before reading {what}")

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"<{type(self).__name__} {self.name} on {self.device} ({state})>"


def check_feed(name: str, arr: np.ndarray, dtype: np.dtype, shape: Shape, where: str) -> np.ndarray:
    """Check one feed against its declared shape; cast float feeds to the model's float type."""
    arr = np.asarray(arr)
    if arr.ndim != len(shape):
        raise RunnerError(
            f"{where}: input '{name}' has {arr.ndim} dims {tuple(arr.shape)}, expected {len(shape)} {tuple(shape)}"
        )
    for i, (got, want) in enumerate(zip(arr.shape, shape)):
        if isinstance(want, int) and want >= 0 and got != want:
            raise RunnerError(
                f"{where}: input '{name}' has shape {tuple(arr.shape)} but dim {i} must be {want} "
                f"(model shape {tuple(shape)})"
            )
    if arr.dtype != dtype:
        if np.issubdtype(arr.dtype, np.floating) and np.issubdtype(dtype, np.floating):
            arr = arr.astype(dtype)
        else:
            raise RunnerError(f"{where}: input '{name}' is {arr.dtype}, expected {np.dtype(dtype)}")
    return np.ascontiguousarray(arr)
