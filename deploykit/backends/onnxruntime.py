"""ONNX Runtime as a runner: CPU here, CUDA and TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.backends.base import Runner, RunnerError, Shape, check_feed
from deploykit.errors import DeployKitError, MissingExtraError
from deploykit.onnx_io import OPT_LEVELS, deployment_settings

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
DEVICE_PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def providers_for_device(device: str) -> tuple[str, ...]:
    """Execution providers, in priority order, for a device name (cpu, cuda, tensorrt)."""
    dev = device.strip().lower().split(":")[0]
    dev = "cuda" if dev == "gpu" else dev
    if dev not in DEVICE_PROVIDERS:
        raise DeployKitError(f"device '{device}' is not one of {', '.join(DEVICE_PROVIDERS)} for onnxruntime")
    return DEVICE_PROVIDERS[dev]


def check_providers(providers: Sequence[str]) -> list[str]:
    """Refuse providers this onnxruntime build lacks, naming the extra that brings GPU ones."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    for p in providers:
        if p in available:
            continue
        if p in GPU_PROVIDERS:
            raise MissingExtraError("onnxruntime-gpu", "gpu", f"ONNX Runtime's {p}")
        known = ort.get_all_providers()
        hint = "" if p in known else f" (known providers: {', '.join(known[:6])}, ...)"
        raise DeployKitError(f"execution provider '{p}' is not available in this onnxruntime build{hint}")
    return list(providers)


class OnnxRuntimeRunner(Runner):
    """Run an ONNX file (or in-memory ModelProto) in an ONNX Runtime InferenceSession."""

    backend = "onnxruntime"

    def __init__(
        self,
        model: str | os.PathLike | Any,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
        graph_optimization_level: str = "all",
        inter_op_threads: int | None = None,
        provider_options: Sequence[dict] | None = None,
        name: str | None = None,
        spin: bool | None = None,
    ) -> None:
        if graph_optimization_level not in OPT_LEVELS:
            raise DeployKitError(
                f"graph optimisation level '{graph_optimization_level}' is not one of {', '.join(OPT_LEVELS)}"
            )
        if threads is not None and threads < 1:
            raise DeployKitError(f"threads must be at least 1, got {threads}")
        self.providers = check_providers(providers)
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if not path.is_file():
                raise DeployKitError(f"{path}: ONNX file not found")
            self.path: Path | None = path
            self._model_bytes: bytes | None = None
            label = name or path.name
        else:  # an onnx.ModelProto built in memory
            if not hasattr(model, "SerializeToString"):
                raise DeployKitError(f"OnnxRuntimeRunner needs an ONNX path or ModelProto, got {type(model).__name__}")
            self.path = None
            self._model_bytes = model.SerializeToString()
            label = name or (model.graph.name or "model")
        device = "cuda" if any(p in GPU_PROVIDERS for p in self.providers) else "cpu"
        short = ",".join(p.replace("ExecutionProvider", "") for p in self.providers)
        super().__init__(f"onnxruntime[{label},{short}]", device)
        self.threads = threads
        self.inter_op_threads = inter_op_threads
        self.graph_optimization_level = graph_optimization_level
        self.provider_options = list(provider_options) if provider_options else None
        # ORT's worker threads spin between calls, as in a deployment (deployment_settings) unless
        # told otherwise; timers keep one session alive at a time so no idle one steals the cores.
        self.spin = deployment_settings().spin if spin is None else spin
        self.session: Any = None

    def _activate(self) -> None:
        from deploykit.onnx_io import ort_session

        src = self.path if self.path is not None else self._model_bytes
        where = str(self.path) if self.path is not None else self.name
        self.session = ort_session(
            src,
            providers=self.providers,
            provider_options=self.provider_options,
            threads=self.threads,
            inter_op_threads=self.inter_op_threads,
            optimization=self.graph_optimization_level,
            spin=self.spin,
            where=where,
        )
        got = self.session.get_providers()
        for p in self.providers:
            if p in GPU_PROVIDERS and p not in got:
                self.session = None
                raise DeployKitError(
                    f"{where}: {p} could not start (no usable CUDA GPU or CUDA libraries); "
                    f"the session fell back to {', '.join(got)}"
                )

    def _deactivate(self) -> None:
        self.session = None

    def _input_metadata(self) -> dict[str, tuple[np.dtype, Shape]]:
        out = {}
        for i in self.session.get_inputs():
            if i.type not in _ORT_DTYPES:
                raise RunnerError(f"{self.name}: input '{i.name}' has unsupported type {i.type}")
            out[i.name] = (np.dtype(_ORT_DTYPES[i.type]), tuple(i.shape))
        return out

    def _output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def _options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "providers": list(self.providers),
            "graph_optimization_level": self.graph_optimization_level,
            "threads": self.threads,
            "inter_op_threads": self.inter_op_threads,
            "spin": self.spin,
        }
        if self.session is not None:
            so = self.session.get_session_options()
            opts["threads"] = so.intra_op_num_threads or "default"
            opts["inter_op_threads"] = so.inter_op_num_threads or "default"
            opts["active_providers"] = self.session.get_providers()
        return opts

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        meta = self._input_metadata()
        ready = {n: check_feed(n, feeds[n], *meta[n], self.name) for n in meta}
        try:
            outs = self.session.run(None, ready)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RunnerError(f"{self.name}: inference failed ({first[:300]})") from None
        return dict(zip(self._output_names(), outs))
