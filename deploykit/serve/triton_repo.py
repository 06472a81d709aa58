"""Write an artifact into a Triton model repository: ``NAME/VERSION/model.onnx|model.plan`` + config.pbtxt.

The same repository runs on one CPU box or in NVIDIA's Triton container on GPU servers. The
version directory is built in a temporary sibling (a name Triton ignores, since it is not a
number) and renamed into place whole, so a polling server never sees half a model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploykit._io import atomic_write_text
from deploykit.artifact import MANIFEST_NAME, Artifact, Manifest
from deploykit.errors import DeployKitError

# Triton's platform and model file name per artifact format.
PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "tensorrt-engine": ("tensorrt_plan", "model.plan")}
TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
# Triton's OpenVINO backend (backend: "openvino"; it reads model.onnx given default_model_filename).
# Its parameters can ask for bfloat16 (HINT_BF16) but not for f32: on a CPU with native bf16 it runs
# float layers in bf16 by default, so a float artifact is written for it only as openvino-bf16.
# It compiles a batching model at one static batch, max_batch_size (ov::set_batch in its source), and
# fails a request batch of any other size unless ENABLE_BATCH_PADDING pads it with zeros to that size
# ("expected requests with batch size '8', got '2'": triton-inference-server/server#7363). So
# deploykit writes max_batch_size 1 unless asked (the static batch-1 compile, OpenVINO's fastest per
# request; instances give concurrency), and a larger one with padding and the batcher aiming at it.
OV_TRITON = {"openvino": {}, "openvino-bf16": {"HINT_BF16": "YES"}}
TRITON_BACKENDS = ("onnxruntime", *OV_TRITON)
LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.pbtxt"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class TritonModel:
    """Where a model version was written and the config Triton will read."""

    repo: Path
    name: str
    version: int
    version_dir: Path
    config_path: Path
    config: str
    max_batch_size: int
    note: str | None = None  # what the chosen backend does with batches, for the user to read


def default_kind(manifest: Manifest) -> str:
    """Engines run on GPUs; ONNX artifacts default to CPU instances."""
    return "gpu" if manifest.format == "tensorrt-engine" else "cpu"


def model_config(
    manifest: Manifest,
    name: str,
    *,
    max_batch: int | None = None,
    instances: int = 1,
    kind: str | None = None,
    dynamic_batching: bool = True,
    preferred_batch: tuple[int, ...] | None = None,
    max_queue_delay_us: int = 100,
    labels: bool = True,
    python_backend: dict[str, str] | None = None,
    backend: str = "onnxruntime",
) -> tuple[str, int]:
    """The config.pbtxt text for an artifact (and its max_batch_size), from the manifest alone.

    ``python_backend``: run the model with Triton's Python backend (``deploykit serve``'s
    model.py) instead of the artifact's platform, with these string parameters. ``backend``
    ``openvino`` / ``openvino-bf16``: Triton's OpenVINO backend on the ONNX file (CPU instances).
    """
    if manifest.format not in PLATFORMS:
        raise DeployKitError(f"artifact format '{manifest.format}' has no Triton platform")
    if not _NAME.match(name):
        raise DeployKitError(f"model name '{name}' may hold only letters, digits, '.', '_' and '-'")
    if instances < 1:
        raise DeployKitError(f"instances must be at least 1, got {instances}")
    kind = kind or default_kind(manifest)
    if kind not in KINDS:
        raise DeployKitError(f"instance kind '{kind}' is not one of {', '.join(KINDS)}")
    if manifest.format == "tensorrt-engine" and kind != "gpu":
        raise DeployKitError("a TensorRT engine runs on GPU instances only (--kind gpu)")
    if backend not in TRITON_BACKENDS:
        raise DeployKitError(f"Triton backend '{backend}' is not one of {', '.join(TRITON_BACKENDS)}")
    if backend in OV_TRITON:
        if manifest.format != "onnx" or kind != "cpu" or python_backend is not None:
            raise DeployKitError(f"--backend {backend} runs an ONNX artifact on CPU instances (--kind cpu)")
        if backend == "openvino" and manifest.precision in ("fp32", "fp16"):
            raise DeployKitError(
                f"Triton's OpenVINO backend cannot pin f32 and runs float layers in bf16 on CPUs that have it; "
                f"this {manifest.precision} artifact is written for it only with --backend openvino-bf16"
            )
    if max_queue_delay_us < 0:
        raise DeployKitError(f"max queue delay {max_queue_delay_us} us must not be negative")
    profile = manifest.batch
    if profile.dynamic:
        if profile.min > 1:
            raise DeployKitError(f"the artifact's batch profile starts at {profile.min}; Triton sends batches from 1")
        default_top = 1 if backend in OV_TRITON else profile.max
        top = default_top if max_batch is None else max_batch
        if not 1 <= top <= profile.max:
            raise DeployKitError(f"max batch {top} is outside the artifact's batch profile [1, {profile.max}]")
        batch_dims = 1
    else:
        if max_batch not in (None, 0):
            raise DeployKitError(
                f"the artifact was built for batch {profile.max} only; it cannot take --max-batch {max_batch}"
            )
        if dynamic_batching:
            dynamic_batching = False  # a fixed-batch model has no batch dimension for Triton to fill
        top, batch_dims = 0, 0
    pref = tuple(preferred_batch or ())
    bad = [b for b in pref if not 1 <= b <= max(top, 1)]
    if bad:
        raise DeployKitError(f"preferred batch size(s) {bad} are outside [1, {top}]")
    ov_params: dict[str, str] = {}
    if backend in OV_TRITON and top >= 1:
        if top == 1:
            dynamic_batching = False  # one static batch of 1: nothing for the batcher to merge
        else:
            if pref and set(pref) != {top}:
                raise DeployKitError(
                    f"Triton's OpenVINO backend runs batch {top} only (smaller batches are padded to it); "
                    f"--preferred-batch can only be {top}"
                )
            pref = (top,) if dynamic_batching else ()
            ov_params["ENABLE_BATCH_PADDING"] = "YES"

    runs_on = 'backend: "python"' if python_backend is not None else f'platform: "{PLATFORMS[manifest.format][0]}"'
    if backend in OV_TRITON:
        runs_on = f'backend: "openvino"\ndefault_model_filename: "{PLATFORMS["onnx"][1]}"'
    lines = [f'name: "{name}"', runs_on, f"max_batch_size: {top}"]
    for section, specs in (("input", manifest.inputs), ("output", manifest.outputs)):
        entries = []
        for i, spec in enumerate(specs):
            if spec.dtype not in TRITON_DTYPES:
                raise DeployKitError(f"{section} '{spec.name}' has dtype {spec.dtype}, which Triton config cannot name")
            dims = spec.shape[batch_dims:]
            if any(not isinstance(d, int) for d in dims):
                raise DeployKitError(f"{section} '{spec.name}' has symbolic dims {dims} beyond the batch")
            body = [
                f'    name: "{spec.name}"',
                f"    data_type: {TRITON_DTYPES[spec.dtype]}",
                f"    dims: [ {', '.join(str(d) for d in dims)} ]",
            ]
            if section == "output" and i == 0 and labels and manifest.data_config.labels:
                body.append(f'    label_filename: "{LABELS_FILE}"')
            entries.append("  {\n" + "\n".join(body) + "\n  }")
        lines.append(f"{section} [\n" + ",\n".join(entries) + "\n]")
    if dynamic_batching:
        batcher = [f"  max_queue_delay_microseconds: {max_queue_delay_us}"]
        if pref:
            batcher.insert(0, f"  preferred_batch_size: [ {', '.join(map(str, pref))} ]")
        lines.append("dynamic_batching {\n" + "\n".join(batcher) + "\n}")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: {KINDS[kind]}\n  }}\n]")
    params = dict(python_backend or {})
    if backend in OV_TRITON:  # one stream: Triton's instances and dynamic batcher give the concurrency
        params.update({"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", **OV_TRITON[backend], **ov_params})
    for key, value in params.items():
        lines.append(f'parameters {{\n  key: "{key}"\n  value: {{ string_value: {json.dumps(value)} }}\n}}')
    return "\n".join(lines) + "\n", top


def write_model_repository(
    artifact: str | os.PathLike | Artifact,
    repo: str | os.PathLike,
    *,
    name: str | None = None,
    version: int | None = None,
    force: bool = False,
    **config: object,
) -> TritonModel:
    """Add an artifact as one version of a Triton model; earlier versions are left untouched.

    ``config`` takes :func:`model_config`'s options. A model's inputs and outputs must not
    change between versions: Triton serves every version under one config.pbtxt.
    """
    art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact, verify=True)
    m = art.manifest
    name = name or m.model
    if version is not None and version < 1:
        raise DeployKitError(f"version {version} must be a positive integer")
    text, top = model_config(m, name, **config)  # type: ignore[arg-type]
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise DeployKitError(f"{repo}: exists and is not a directory")
    model_dir = repo / name
    fresh = not model_dir.exists()
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DeployKitError(f"{model_dir}: cannot create the model directory ({e.strerror})") from None
    cfg_path = model_dir / CONFIG_FILE
    if not fresh and cfg_path.is_file():
        old = cfg_path.read_text(encoding="utf-8")
        if _signature(old) != _signature(text):
            raise DeployKitError(
                f"{cfg_path}: model '{name}' already has a different platform, batch size or inputs/outputs; "
                "use another --name for this artifact"
            )
    existing = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    final = model_dir / str(version)
    if final.exists() and not force:
        raise DeployKitError(f"{final}: version {version} already exists; pass --force to replace it")

    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.tmp-", dir=model_dir))
    try:
        model_file = PLATFORMS[m.format][1]
        shutil.copyfile(art.main_path, tmp / model_file)
        external = m.main_file + ".data"
        if external in m.files:  # ONNX external weights must sit beside the model
            shutil.copyfile(art.path / external, tmp / external)
        shutil.copyfile(art.manifest_path, tmp / MANIFEST_NAME)  # provenance; Triton ignores it
        if m.data_config.labels:
            atomic_write_text(model_dir / LABELS_FILE, "\n".join(m.data_config.labels) + "\n")
        atomic_write_text(cfg_path, text)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        if fresh:  # no half-made model directory left behind
            shutil.rmtree(model_dir, ignore_errors=True)
        raise DeployKitError(f"{model_dir}: cannot write the model version ({e.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TritonModel(
        repo=repo,
        name=name,
        version=version,
        version_dir=final,
        config_path=cfg_path,
        config=text,
        max_batch_size=top,
        note=openvino_batch_note(top, bool(config.get("dynamic_batching", True)))
        if config.get("backend") in OV_TRITON
        else None,
    )


def openvino_batch_note(max_batch_size: int, batcher: bool = True) -> str:
    """What Triton's OpenVINO backend does with the batches of this config, in one line."""
    if max_batch_size == 0:
        return "Triton's OpenVINO backend runs the artifact's fixed batch as exported"
    if max_batch_size == 1:
        return (
            "Triton's OpenVINO backend compiles one static batch size: 1; clients send batch-1 requests "
            "and --instances sets how many run at once (--max-batch N pads every batch to N)"
        )
    fill = "the dynamic batcher waits up to the queue delay to fill it" if batcher else "no batcher fills it"
    return (
        f"Triton's OpenVINO backend compiles one static batch size: {max_batch_size}; every batch is padded "
        f"with zeros to {max_batch_size} and costs a batch-{max_batch_size} run ({fill}); "
        f"--max-batch 1 runs each request alone"
    )


def _signature(config_text: str) -> str:
    """The parts of a config every version must share: platform, max_batch_size, inputs, outputs."""
    keep = re.split(r"\n(?=dynamic_batching|instance_group)", config_text)[0]
    return re.sub(r'\n\s*label_filename: "[^"]*"', "", keep)
