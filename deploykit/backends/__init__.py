"""Backends behind one Runner interface, and ``make_runner`` to get one from whatever the user has.

``make_runner`` accepts an artifact directory (hashes verified), an ``.onnx`` file, a TensorRT
``.engine`` / ``.plan`` file, an ``nn.Module`` or a zoo model name, and turns every mistake
(unknown backend, backend not installed, absent device, tampered files, batch outside the
artifact's profile) into a one-line DeployKitError.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploykit.backends.base import Runner, RunnerError
from deploykit.errors import DeployKitError, MissingExtraError

BACKENDS = ("torch", "onnxruntime", "tensorrt", "onnxruntime-cuda", "onnxruntime-trt", "openvino", "openvino-bf16")
# ONNX Runtime on a GPU execution provider (onnxruntime-gpu, the 'gpu' extra): backend -> device.
ORT_GPU_BACKENDS = {"onnxruntime-cuda": "cuda", "onnxruntime-trt": "tensorrt"}
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
_EXTRA = {"onnxruntime": ("onnxruntime", "gpu"), "tensorrt": ("tensorrt", "tensorrt"), "torch": ("torch", "")}
# OpenVINO on the CPU (the 'openvino' extra): backend -> inference precision
OV_BACKENDS = {"openvino": "f32", "openvino-bf16": "bf16"}


def backend_status() -> dict[str, str | None]:
    """Backend name -> None when usable here, else the reason it is not."""
    out: dict[str, str | None] = {}
    for name in BACKENDS:
        if name in ORT_GPU_BACKENDS:
            out[name] = _ort_gpu_status(name)
            continue
        if name in OV_BACKENDS:
            out[name] = _openvino_status(name)
            continue
        out[name] = (
            None
            if importlib.util.find_spec(_EXTRA[name][0])
            else (
                f"the '{_EXTRA[name][0]}' package is not installed"
                + (f"; pip install 'deploykit[{_EXTRA[name][1]}]'" if name == "tensorrt" else "")
            )
        )
    return out


def _ort_gpu_status(name: str) -> str | None:
    from deploykit.backends.onnxruntime import DEVICE_PROVIDERS

    if importlib.util.find_spec("onnxruntime") is None:
        return "the 'onnxruntime' package is not installed"
    import onnxruntime as ort

    provider = DEVICE_PROVIDERS[ORT_GPU_BACKENDS[name]][0]
    if provider not in ort.get_available_providers():
        return f"this onnxruntime build has no {provider}; pip install 'deploykit[gpu]'"
    return None


def _openvino_status(name: str) -> str | None:
    if importlib.util.find_spec("openvino") is None:
        return "the 'openvino' package is not installed; pip install 'deploykit[openvino]'"
    if OV_BACKENDS[name] == "bf16":
        from deploykit.machine import bf16_refusal

        return bf16_refusal()
    return None


def available_backends() -> list[str]:
    """Backends whose Python package is installed (a GPU may still be needed to run them)."""
    return [name for name, why in backend_status().items() if why is None]


def backend_name(backend: str) -> str:
    """Normalise a backend name ("trt" -> "tensorrt"); an unknown one is a one-line error."""
    key = backend.strip().lower().replace("-", "").replace("_", "")
    key = {
        "ort": "onnxruntime",
        "trt": "tensorrt",
        "pytorch": "torch",
        "onnxruntimecuda": "onnxruntime-cuda",
        "ortcuda": "onnxruntime-cuda",
        "onnxruntimetrt": "onnxruntime-trt",
        "orttrt": "onnxruntime-trt",
        "onnxruntimetensorrt": "onnxruntime-trt",
        "ov": "openvino",
        "openvinof32": "openvino",
        "openvinobf16": "openvino-bf16",
        "ovbf16": "openvino-bf16",
    }.get(key, key)
    if key not in BACKENDS:
        raise DeployKitError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    return key


def check_backend(backend: str) -> str:
    """Normalise a backend name; unknown or uninstalled backends are one-line errors."""
    key = backend_name(backend)
    if key == "tensorrt":
        from deploykit.backends.tensorrt import import_tensorrt

        import_tensorrt()  # MissingExtraError naming the extra
    elif key in OV_BACKENDS:
        from deploykit.openvino_io import check_precision, import_openvino

        import_openvino(f"The {key} backend")  # MissingExtraError naming the extra
        check_precision(OV_BACKENDS[key], where=f"backend {key}")  # bf16 only where the CPU has it
    elif key in ORT_GPU_BACKENDS and backend_status()[key] is not None:
        from deploykit.backends.onnxruntime import DEVICE_PROVIDERS

        raise MissingExtraError(
            "onnxruntime-gpu", "gpu", f"The {key} backend ({DEVICE_PROVIDERS[ORT_GPU_BACKENDS[key]][0]})"
        )
    elif backend_status()[key] is not None:
        raise DeployKitError(f"backend '{key}' is not usable: {backend_status()[key]}")
    return key


def make_runner(
    target: Any,
    backend: str = "onnxruntime",
    device: str = "cpu",
    threads: int | None = None,
    *,
    batch_sizes: Sequence[int] | None = None,
    precision: str | None = None,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    overrides: dict[str, Any] | None = None,
    verify: bool = True,
    **opts: Any,
) -> Runner:
    """A (not yet activated) runner for ``target`` on ``backend`` and ``device``.

    ``weights``/``num_classes``/``overrides`` apply to a zoo model name; ``precision`` is the
    torch backend's compute precision and, for a file, must match what the file holds.
    ``batch_sizes`` are checked against an artifact's batch profile up front. An engine artifact is
    checked against the running TensorRT and GPU before anything loads it; ``running=RunningEnv(...)``
    stands in for them (otherwise :func:`deploykit.backends.tensorrt.guard.running_env` asks).
    """
    backend = backend_name(backend)
    kind, obj = _resolve_target(target, verify=verify, weights=weights, num_classes=num_classes, overrides=overrides)
    if not (backend == "tensorrt" and kind == "artifact" and obj.manifest.format == "tensorrt-engine"):
        check_backend(backend)  # an engine artifact meets the guard first, even where tensorrt is absent
    if kind == "artifact":
        for b in batch_sizes or ():
            obj.manifest.batch.check(int(b), where=str(obj.path))
    runner = _build(kind, obj, backend, device, threads, precision, opts)
    if kind == "artifact":
        runner.batch_profile = obj.manifest.batch
        runner.data_config = obj.data_config
        if backend != "torch":  # the torch backend computes in its own precision
            runner.precision = _run_precision(obj.manifest.precision, backend)
    elif kind == "module":
        runner.data_config = getattr(obj, "data_config", None)
    elif kind in ("onnx", "proto"):
        runner.data_config, file_precision = _onnx_metadata(obj)
        runner.precision = runner.precision or _run_precision(file_precision, backend)
    return runner


def _run_precision(file_precision: str | None, backend: str) -> str | None:
    """What the numbers are computed in: a float file run by openvino-bf16 computes in bf16 (its own gate)."""
    if backend in OV_BACKENDS and OV_BACKENDS[backend] == "bf16" and file_precision in (None, "fp32", "fp16"):
        return "bf16"
    return file_precision


def _onnx_metadata(model: Path | Any) -> tuple[Any, str | None]:
    """The data config and precision deploykit's exporter stores in an ONNX model's metadata_props."""
    import json

    import onnx

    from deploykit.data.config import DataConfig

    try:
        proto = model if hasattr(model, "metadata_props") else onnx.load(str(model), load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
    except Exception:  # ORT gives the precise error for an unreadable file when it loads it
        return None, None
    cfg = None
    if "deploykit.data_config" in meta:
        try:
            cfg = DataConfig.from_dict(json.loads(meta["deploykit.data_config"]))
        except (ValueError, TypeError, KeyError, DeployKitError):
            cfg = None
    return cfg, meta.get("deploykit.precision")


# -- target resolution ------------------------------------------------------------------------
def _resolve_target(
    target: Any, verify: bool, weights: Any, num_classes: int | None, overrides: dict[str, Any] | None
) -> tuple[str, Any]:
    import torch

    from deploykit.models.registry import looks_like_model_name  # imported here: models needs torch

    if (weights is not None or num_classes is not None or overrides) and not looks_like_model_name(target):
        raise DeployKitError(
            f"{target!s:.80}: weights, num_classes and data-config overrides apply to a zoo model name only"
        )
    if isinstance(target, torch.nn.Module):
        return "module", target
    if hasattr(target, "SerializeToString") and hasattr(target, "graph"):  # an onnx.ModelProto in memory
        return "proto", target
    if hasattr(target, "manifest") and hasattr(target, "main_path"):  # an Artifact already loaded
        if verify:
            target.verify()
        return "artifact", target
    if not isinstance(target, (str, os.PathLike)):
        raise DeployKitError(
            f"cannot run a {type(target).__name__}; pass an artifact directory, "
            ".onnx/.engine file, nn.Module or zoo model name"
        )
    path = Path(target)
    suffix = path.suffix.lower()
    if path.is_dir():
        from deploykit.artifact import Artifact

        return "artifact", Artifact.load(path, verify=verify)
    if suffix == ".onnx":
        if not path.is_file():
            raise DeployKitError(f"{path}: ONNX file not found")
        return "onnx", path
    if suffix in ENGINE_SUFFIXES:
        if not path.is_file():
            raise DeployKitError(f"{path}: TensorRT engine file not found")
        return "engine", path
    if path.exists():
        raise DeployKitError(
            f"{path}: not an artifact directory, .onnx file or TensorRT engine ({', '.join(ENGINE_SUFFIXES)})"
        )
    text = str(target)
    if os.sep in text or "/" in text or suffix:
        raise DeployKitError(f"{path}: no such file or directory")
    from deploykit.models.weights import load_model  # resolves the name and suggests close ones

    return "module", load_model(
        text, weights=None if weights is None else str(weights), num_classes=num_classes, overrides=overrides or None
    )


def _build(
    kind: str, obj: Any, backend: str, device: str, threads: int | None, precision: str | None, opts: dict[str, Any]
) -> Runner:
    if backend == "torch":
        return _torch_runner(kind, obj, device, threads, precision, opts)
    if backend == "onnxruntime":
        return _ort_runner(kind, obj, device, threads, precision, opts)
    if backend in OV_BACKENDS:
        return _ov_runner(kind, obj, backend, device, threads, precision, opts)
    if backend in ORT_GPU_BACKENDS:
        from deploykit.backends.onnxruntime import providers_for_device

        if opts.get("providers"):
            raise DeployKitError(
                f"backend {backend} chooses its execution providers; use --backend onnxruntime with providers instead"
            )
        opts["providers"] = providers_for_device(ORT_GPU_BACKENDS[backend])
        runner = _ort_runner(kind, obj, device, threads, precision, opts)
        runner.backend = backend
        return runner
    return _trt_runner(kind, obj, device, precision, opts)


def _call(cls: type, *args: Any, **kwargs: Any) -> Runner:
    try:
        return cls(*args, **kwargs)
    except TypeError as e:  # an option this backend does not have
        raise DeployKitError(f"{cls.__name__}: {e}") from None


def _torch_runner(
    kind: str, obj: Any, device: str, threads: int | None, precision: str | None, opts: dict[str, Any]
) -> Runner:
    from deploykit.backends.torch import TorchRunner

    if kind == "artifact":
        obj = _module_from_artifact(obj)
    elif kind != "module":
        raise DeployKitError(
            f"{obj}: the torch backend needs a zoo model name, an nn.Module or an artifact "
            "with its weights; this is a bare model file"
        )
    return _call(TorchRunner, obj, device=device, precision=precision or "fp32", threads=threads, **opts)


def _check_file_precision(kind: str, obj: Any, precision: str | None, backend: str) -> None:
    if precision is None:
        return
    if kind == "artifact":
        if precision != obj.manifest.precision:
            raise DeployKitError(
                f"{obj.path}: artifact precision is {obj.manifest.precision}, not {precision}; "
                f"{backend} runs the file as it is (use a {precision} artifact)"
            )
        return
    if kind in ("onnx", "engine", "proto"):
        raise DeployKitError(
            f"{getattr(obj, 'name', None) or obj!s:.60}: precision is fixed by the file for {backend}; "
            "--precision applies to the torch backend and to artifacts (checked against the manifest)"
        )


def _ort_runner(
    kind: str, obj: Any, device: str, threads: int | None, precision: str | None, opts: dict[str, Any]
) -> Runner:
    from deploykit.backends.onnxruntime import GPU_PROVIDERS, OnnxRuntimeRunner, providers_for_device, trt_profile

    providers = opts.pop("providers", None) or providers_for_device(device)
    if any(p in GPU_PROVIDERS for p in providers) and not opts.get("provider_options"):
        opts.setdefault("device_id", _cuda_index(device))  # cuda:N -> every GPU provider's device_id
        if kind == "artifact":
            opts.setdefault("trt_profile", trt_profile(obj.manifest))  # the artifact's batch range
    if kind == "module":
        raise DeployKitError(
            f"{getattr(obj, 'model_name', type(obj).__name__)}: onnxruntime runs ONNX; export the "
            "model first (deploykit export), or let deploykit.harness.runner_for export it in memory"
        )
    if kind == "proto":
        return _call(OnnxRuntimeRunner, obj, providers=providers, threads=threads, **opts)
    _check_file_precision(kind, obj, precision, "onnxruntime")
    if kind == "engine":
        raise DeployKitError(f"{obj}: a TensorRT engine runs only with --backend tensorrt")
    if kind == "artifact":
        if obj.manifest.format != "onnx":
            raise DeployKitError(f"{obj.path}: a {obj.manifest.format} artifact runs only with --backend tensorrt")
        from deploykit.onnx_io import check_declared_inputs

        check_declared_inputs(obj.main_path, obj.manifest.inputs)
        return _call(
            OnnxRuntimeRunner,
            obj.main_path,
            providers=providers,
            threads=threads,
            name=f"{obj.path.name}/{obj.manifest.main_file}",
            **opts,
        )
    return _call(OnnxRuntimeRunner, obj, providers=providers, threads=threads, **opts)


def _ov_runner(
    kind: str, obj: Any, backend: str, device: str, threads: int | None, precision: str | None, opts: dict[str, Any]
) -> Runner:
    from deploykit.backends.openvino import OpenVINORunner

    if device.split(":")[0] != "cpu":
        raise DeployKitError(f"backend {backend} runs on the CPU (OpenVINO's CPU plugin), not on '{device}'")
    if kind == "module":
        raise DeployKitError(
            f"{getattr(obj, 'model_name', type(obj).__name__)}: {backend} runs ONNX; export the model first"
        )
    if kind == "engine":
        raise DeployKitError(f"{obj}: a TensorRT engine runs only with --backend tensorrt")
    _check_file_precision(kind, obj, precision, backend)
    if kind == "artifact":
        if obj.manifest.format != "onnx":
            raise DeployKitError(f"{obj.path}: a {obj.manifest.format} artifact runs only with --backend tensorrt")
        from deploykit.onnx_io import check_declared_inputs

        check_declared_inputs(obj.main_path, obj.manifest.inputs)
        return _call(
            OpenVINORunner,
            obj.main_path,
            precision=OV_BACKENDS[backend],
            threads=threads,
            name=f"{obj.path.name}/{obj.manifest.main_file}",
            **opts,
        )
    return _call(OpenVINORunner, obj, precision=OV_BACKENDS[backend], threads=threads, **opts)


def _trt_runner(kind: str, obj: Any, device: str, precision: str | None, opts: dict[str, Any]) -> Runner:
    from deploykit.backends.tensorrt.runner import TensorRTRunner

    if device == "cpu":
        device = "cuda"  # TensorRT has no CPU mode; the runner refuses when CUDA is absent
    _check_file_precision(kind, obj, precision, "tensorrt")
    if kind == "artifact" and obj.manifest.format == "tensorrt-engine":
        from deploykit.backends.tensorrt.guard import built_for, check_engine_artifact, engine_record, running_env

        record = engine_record(obj.manifest, where=str(obj.manifest_path))
        running = opts.pop("running", None) or running_env(
            _cuda_index(device), purpose=f"{obj.path}: an engine built with {built_for(record)}"
        )
        check_engine_artifact(obj, running)  # before TensorRT ever sees the bytes
        host_code = bool((record.get("flags") or {}).get("version_compatible"))
        return _call(
            TensorRTRunner,
            obj.main_path,
            device=device,
            host_code_allowed=host_code,
            name=f"{obj.path.name}/{obj.manifest.main_file}",
            **opts,
        )
    if kind == "engine":
        return _call(TensorRTRunner, obj, device=device, **opts)
    raise DeployKitError(
        f"{getattr(obj, 'path', obj)}: the tensorrt backend runs a built engine "
        "(.engine/.plan or an engine artifact); build one from the ONNX first"
    )


def _cuda_index(device: str) -> int:
    _, _, idx = device.partition(":")
    return int(idx) if idx.isdigit() else 0


def _module_from_artifact(art: Any) -> Any:
    """Rebuild the PyTorch model an ONNX artifact came from, from the weights it names."""
    from deploykit._io import sha256_file
    from deploykit.models.weights import load_model

    m = art.manifest
    w = m.weights or {}
    cfg = m.data_config
    overrides = {"image_size": cfg.image_size, "mean": tuple(cfg.mean), "std": tuple(cfg.std)}
    if cfg.labels:
        overrides["labels"] = tuple(cfg.labels)
    if w.get("init") == "random":  # exported without a checkpoint: the recorded seed rebuilds it
        return load_model(m.model, num_classes=cfg.num_classes, overrides=overrides, seed=int(w.get("seed", 0)))
    candidates = [art.path / w["file"]] if w.get("file") else []
    if w.get("path"):
        candidates.append(Path(w["path"]))
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise DeployKitError(
            f"{art.path}: the torch backend needs the weights this artifact was exported from, "
            "and the manifest names none that exist here; pass the zoo model name with --weights instead"
        )
    if w.get("sha256") and sha256_file(found) != w["sha256"]:
        raise DeployKitError(f"{found}: sha256 does not match the weights recorded in {art.manifest_path}")
    return load_model(m.model, weights=str(found), num_classes=cfg.num_classes, overrides=overrides)


__all__ = [
    "BACKENDS",
    "backend_name",
    "Runner",
    "RunnerError",
    "available_backends",
    "backend_status",
    "check_backend",
    "ORT_GPU_BACKENDS",
    "make_runner",
]
