"""OpenVINO as a runner: the CPU plugin, one compiled model, precision explicit (``f32`` or ``bf16``).

``--backend openvino`` runs floating-point layers in f32; ``--backend openvino-bf16`` in bfloat16,
offered only where the CPU computes it natively. An INT8 Q/DQ file runs its quantised layers in
INT8 either way. The compiled configuration (hint, threads, streams, precision read back from
OpenVINO) is part of :meth:`describe`, so every bench figure records it.

Each batch size fed runs in its own static compile (:func:`deploykit.openvino_io.ov_compile` with
``batch``; 2x faster than a dynamic-batch compile on an INT8 DenseNet-121), compiled on the first
call at that batch and kept in a small cache. The bench's untimed warm-up call is that first call,
so a compile is never timed; it shows in the reported first-inference time instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.backends.base import Runner, RunnerError, Shape, check_feed
from deploykit.errors import DeployKitError

# backend name -> OpenVINO inference precision
OV_BACKENDS = {"openvino": "f32", "openvino-bf16": "bf16"}
_OV_DTYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i64": np.int64, "i32": np.int32}
_OV_DTYPES.update({"u8": np.uint8, "i8": np.int8, "boolean": np.bool_})


class OpenVINORunner(Runner):
    """Run an ONNX (or OpenVINO IR) file, or an in-memory ModelProto, in OpenVINO: one static compile per batch fed."""

    def __init__(
        self,
        model: str | os.PathLike | Any,
        precision: str = "f32",
        threads: int | None = None,
        hint: str = "LATENCY",
        name: str | None = None,
    ) -> None:
        from deploykit.openvino_io import HINTS, check_precision

        self.inference_precision = check_precision(precision)
        if hint not in HINTS:
            raise DeployKitError(f"OpenVINO performance hint '{hint}' is not one of {', '.join(HINTS)}")
        if threads is not None and threads < 1:
            raise DeployKitError(f"threads must be at least 1, got {threads}")
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if not path.is_file():
                raise DeployKitError(f"{path}: model file not found")
            self.path: Path | None = path
            self._model_bytes: bytes | None = None
            label = name or path.name
        else:
            if not hasattr(model, "SerializeToString"):
                raise DeployKitError(f"OpenVINORunner needs a model path or ModelProto, got {type(model).__name__}")
            self.path = None
            self._model_bytes = model.SerializeToString()
            label = name or (model.graph.name or "model")
        self.backend = "openvino" if self.inference_precision == "f32" else "openvino-bf16"
        super().__init__(f"openvino[{label},{self.inference_precision}]", "cpu")
        self.threads = threads
        self.hint = hint
        self.compiled: Any = None  # the compiled model of the latest call's batch
        self._cache: Any = None
        self._inputs: dict[str, tuple[np.dtype, Shape]] = {}
        self._outputs: list[str] = []

    def _activate(self) -> None:
        from deploykit.openvino_io import compiled_by_batch, ov_read

        src = self.path if self.path is not None else self._model_bytes
        # names, types and declared shapes from the model read but not compiled: compiling waits for
        # the first call, at the batch it feeds
        declared = ov_read(src, where=self.name)
        self._inputs = {}
        for port in declared.inputs:
            et = port.get_element_type().get_type_name()
            dtype = np.dtype(_OV_DTYPES.get(et, np.float32))
            dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            self._inputs[port.get_any_name()] = (dtype, dims)
        self._outputs = [port.get_any_name() for port in declared.outputs]
        self._cache = compiled_by_batch(
            src,
            precision=self.inference_precision,
            threads=self.threads,
            hint=self.hint,
            where=self.name,
            declared=declared,  # each static compile reuses its inputs: the file is not read again
        )

    def _deactivate(self) -> None:
        self.compiled = self._cache = None

    def _input_metadata(self) -> dict[str, tuple[np.dtype, Shape]]:
        return dict(self._inputs)

    def _output_names(self) -> list[str]:
        return list(self._outputs)

    def _options(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "inference_precision": self.inference_precision,
            "hint": self.hint,
            "threads": self.threads,
            "static_batch": True,  # compiled for each batch fed (deploykit.openvino_io.ov_compile)
        }
        if self._cache is not None and self._cache.config:
            out["compiled"] = self._cache.config
            out["compiled_input_shapes"] = {str(b): s for b, s in self._cache.shapes.items()}
        return out

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        meta = self._input_metadata()
        ready = {n: check_feed(n, feeds[n], *meta[n], self.name) for n in meta}
        batch = next(iter(ready.values())).shape[0] if ready else 1
        self.compiled, request = self._cache.get(int(batch))
        try:
            result = request.infer(ready)
        except Exception as e:
            from deploykit.onnx_io import first_line

            raise RunnerError(f"{self.name}: inference failed ({first_line(e)})") from None
        # copies: the request reuses its output tensors on the next call
        return {port.get_any_name(): np.array(result[port]) for port in self.compiled.outputs}
