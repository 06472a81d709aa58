"""ONNX Runtime as a runner: CPU here, CUDA and TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.backends.base import Runner, RunnerError, Shape, check_feed
from deploykit.errors import DeployKitError, MissingExtraError
from deploykit.onnx_io import OPT_LEVELS, deployment_settings, gpu_provider_options, import_onnxruntime

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
    ort = import_onnxruntime()

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


TRT_CACHE_SUFFIX = ".ort-trt-cache"


def trt_cache_dir(model_path: str | os.PathLike) -> Path:
    """Where the TensorRT EP keeps engines and timing cache for a model: a folder beside the artifact.

    ``resnet18/model.onnx`` in an artifact directory -> ``resnet18.ort-trt-cache/ort-1.31.1/`` next
    to it (the artifact's own files, hashed in its manifest, stay untouched); a bare ``m.onnx`` ->
    ``m.onnx.ort-trt-cache/ort-1.31.1/``. One subfolder per ONNX Runtime version, since ONNX Runtime
    asks for its engine cache to be cleared when it is upgraded.
    """
    path = Path(model_path)
    if (path.parent / "manifest.json").is_file():
        base = path.parent.with_name(path.parent.name + TRT_CACHE_SUFFIX)
    else:
        base = path.with_name(path.name + TRT_CACHE_SUFFIX)
    return base / f"ort-{import_onnxruntime().__version__}"


def trt_profile(manifest: Any) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Input name -> (min, opt, max) shapes from an artifact's batch profile, for the TensorRT EP."""
    batch = manifest.batch
    out = {}
    for spec in manifest.inputs:
        rest = [int(d) for d in spec.shape[1:] if not isinstance(d, str)]
        if len(rest) != len(spec.shape) - 1:  # a symbolic dimension past the batch: no static profile
            return {}
        out[spec.name] = tuple((n, *rest) for n in (batch.min, batch.opt, batch.max))
    return out


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
        device_id: int = 0,
        trt_cache: str | os.PathLike | None = None,
        trt_profile: dict[str, tuple] | None = None,
    ) -> None:
        """``device_id``, ``trt_cache`` (default: :func:`trt_cache_dir` of a model file) and
        ``trt_profile`` configure the GPU providers unless ``provider_options`` is given."""
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
        self.trt_cache: Path | None = None
        if self.provider_options is None and device == "cuda":
            if "TensorrtExecutionProvider" in self.providers:
                self.trt_cache = Path(trt_cache) if trt_cache is not None else None
                if self.trt_cache is None and self.path is not None:
                    self.trt_cache = trt_cache_dir(self.path)
            self.provider_options = gpu_provider_options(
                self.providers, device_id=device_id, trt_cache_dir=self.trt_cache, trt_profile=trt_profile
            )
            self.device = f"cuda:{device_id}"
        # ORT's worker threads spin between calls, as in a deployment (deployment_settings) unless
        # told otherwise; timers keep one session alive at a time so no idle one steals the cores.
        self.spin = deployment_settings().spin if spin is None else spin
        self.session: Any = None

    def _activate(self) -> None:
        from deploykit.onnx_io import ort_session

        src = self.path if self.path is not None else self._model_bytes
        where = str(self.path) if self.path is not None else self.name
        if self.trt_cache is not None:
            try:
                self.trt_cache.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DeployKitError(f"{self.trt_cache}: cannot create the TensorRT EP cache folder ({e})") from None
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
                hint = ""
                if p == "TensorrtExecutionProvider":
                    # onnxruntime-gpu up to 1.31.1 links libnvinfer.so.10: TensorRT 11 cannot serve it
                    hint = "; ONNX Runtime's TensorRT EP needs TensorRT 10: pip install 'tensorrt-cu13>=10.13.2,<11'"
                raise DeployKitError(
                    f"{where}: {p} could not start (no usable CUDA GPU or CUDA libraries); "
                    f"the session fell back to {', '.join(got)}{hint}"
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
        if self.provider_options and any(self.provider_options):
            opts["provider_options"] = dict(zip(self.providers, self.provider_options))
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
