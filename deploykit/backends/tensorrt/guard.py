"""Decide, before TensorRT sees the bytes, whether an engine built elsewhere may run here.

Pure Python: the guard reads the ``engine`` record an engine artifact's manifest holds and
compares it with a :class:`RunningEnv` (what is running) passed in by the caller, so every rule is
testable without TensorRT or a GPU. The rules follow NVIDIA's TensorRT documentation ("Engine
Compatibility" and the support matrix's "Engine Portability", TensorRT 11.4):

* a default engine runs only on the TensorRT version (major.minor.patch) and the GPU model it was
  built with (same name, same compute capability);
* ``version_compatible`` engines also run on a later TensorRT of the same major version, and across
  majors exactly where NVIDIA supports it (:data:`CROSS_MAJOR`: 10.x engines on an 11.x runtime);
* ``hardware_compat == "ampere+"`` (``HardwareCompatibilityLevel.AMPERE_PLUS``) engines run on any
  discrete GPU of compute capability 8.0 or newer; hardware compatibility is not supported on
  integrated GPUs (Jetson / JetPack, DRIVE OS), so they are refused there;
* ``hardware_compat == "same-cc"`` (``SAME_COMPUTE_CAPABILITY``) engines run on any GPU of the
  compute capability they were built on (other models included); building one needs Turing (sm 7.5+).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploykit.errors import DeployKitError

# deploykit's --hardware-compat level -> TensorRT's HardwareCompatibilityLevel member (None: its default,
# NONE). Both members exist in TensorRT 10.13 and 11.4 (checked by the bindings contract test).
HARDWARE_COMPAT_LEVELS: dict[str, str | None] = {
    "none": None,
    "ampere+": "AMPERE_PLUS",
    "same-cc": "SAME_COMPUTE_CAPABILITY",
}
HARDWARE_COMPAT = tuple(HARDWARE_COMPAT_LEVELS)
# Version-compatible engines across major versions: built major -> runtime majors that load them.
# NVIDIA's TensorRT 11.4 support matrix ("Engine Portability"): "Two combinations are supported
# across major versions: TensorRT 10 version-compatible engines can run with a TensorRT 11 runtime,
# and TensorRT 8 version-compatible engines can run with a TensorRT 10 runtime. No other combination
# across major versions is supported." The runtime must allow the engine's embedded lean runtime
# (``Runtime.engine_host_code_allowed``), and never the other way: a newer engine on an older runtime.
CROSS_MAJOR: dict[int, tuple[int, ...]] = {8: (10,), 10: (11,)}
# The oldest GPU that can build each level (TensorRT's HardwareCompatibilityLevel docs).
_BUILD_MIN_CC = {"ampere+": (8, 0), "same-cc": (7, 5)}


@dataclass(frozen=True)
class RunningEnv:
    """What an engine would run on: TensorRT version, GPU name, compute capability ("8.6").

    ``integrated``: the GPU shares memory with the CPU (Jetson, DRIVE; CUDA's device property
    ``integrated``), where TensorRT supports no hardware-compatible engine.
    """

    tensorrt: str
    gpu: str
    compute_capability: str
    integrated: bool = False  # a Jetson / DRIVE GPU that shares memory with the CPU

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt} on {self.gpu} (sm {self.compute_capability})"


def running_env(device: int = 0, purpose: str = "Checking a TensorRT engine") -> RunningEnv:
    """The TensorRT and CUDA GPU of this process (needs tensorrt, cuda-bindings and a CUDA GPU).

    The one place every engine entry point (runners, the runtime, ``deploykit build``) learns what
    is running, so tests replace this function to stand in for another machine. The GPU facts come
    from ``cudaGetDeviceProperties`` (:mod:`deploykit.backends.cuda`), so no torch is needed.
    """
    from deploykit.backends import cuda
    from deploykit.backends.tensorrt import import_tensorrt

    trt = import_tensorrt(purpose)
    cuda.cudart(purpose)
    try:
        count = cuda.device_count()
    except DeployKitError as e:  # no driver, or a driver older than the CUDA runtime
        raise DeployKitError(f"{purpose} needs an NVIDIA GPU, and CUDA sees none here: {e}") from None
    if count == 0:
        raise DeployKitError(f"{purpose} needs an NVIDIA GPU, and CUDA sees none here")
    info = cuda.device_info(device)
    return RunningEnv(
        tensorrt=str(trt.__version__),
        gpu=info.name,
        compute_capability=info.compute_capability,
        integrated=info.integrated,
    )


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for p in str(text).split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def _cc(text: str) -> tuple[int, int]:
    try:
        major, _, minor = str(text).partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        raise DeployKitError(f"compute capability '{text}' is not of the form MAJOR.MINOR") from None


def engine_record(manifest: Any, where: str = "manifest") -> dict[str, Any]:
    """The ``engine`` record of the newest build stage in an engine artifact's manifest, type-checked."""
    for stage in reversed(getattr(manifest, "stages", None) or []):
        if isinstance(stage, Mapping) and stage.get("stage") == "build" and isinstance(stage.get("engine"), Mapping):
            record = dict(stage["engine"])
            problem = _record_problem(record)
            if problem:
                raise DeployKitError(f"{where}: engine record is malformed: {problem}")
            return record
    raise DeployKitError(f"{where} has no build stage with an engine record; rebuild the engine with deploykit build")


# field -> (types it may hold, required); the guard and the rebuild command read these.
_RECORD_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "tensorrt": ((str,), True),
    "gpu": ((str,), True),
    "compute_capability": ((str,), True),
    "precision": ((str,), False),
    "flags": ((dict,), False),
    "batch": ((dict,), False),
    "parent": ((dict, type(None)), False),
}


def _record_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with an engine record's types (it comes from a file anyone may edit), or None."""
    for name, (types, required) in _RECORD_FIELDS.items():
        if name not in record:
            if required:
                return f"'{name}' is missing"
            continue
        if not isinstance(record[name], types) or isinstance(record[name], bool):
            return f"'{name}' is a {type(record[name]).__name__}"
    flags = record.get("flags") or {}
    if not isinstance(flags.get("version_compatible", False), bool):
        return "'flags.version_compatible' is not true or false"
    if not isinstance(flags.get("hardware_compat", "none"), str):
        return "'flags.hardware_compat' is not a string"
    for key, value in (record.get("batch") or {}).items():
        if not isinstance(value, int) or isinstance(value, bool):
            return f"'batch.{key}' is not an integer"
    if not isinstance((record.get("parent") or {}).get("path", ""), str):
        return "'parent.path' is not a string"
    try:
        _cc(record["compute_capability"])
    except DeployKitError as e:
        return str(e)
    return None


def _version_problem(built_trt: str, running: str, version_compat: bool) -> str | None:
    b, r = _version(built_trt), _version(running)
    if not version_compat:
        return None if r == b else f"it was built with TensorRT {built_trt} and TensorRT {running} is running"
    if (r[0] == b[0] and r >= b) or r[0] in CROSS_MAJOR.get(b[0], ()):
        return None
    later = f"later {b[0]}.x releases" + "".join(f" and {m}.x" for m in CROSS_MAJOR.get(b[0], ()))
    return f"it is version-compatible from TensorRT {built_trt} to {later}, and TensorRT {running} is running"


def incompatibility(record: Mapping[str, Any], running: RunningEnv) -> str | None:
    """Why an engine with ``record`` cannot run on ``running``, or None when it can."""
    built_trt = str(record.get("tensorrt", "?"))
    flags = record.get("flags", {}) or {}
    hw = str(flags.get("hardware_compat", "none"))
    why = _version_problem(built_trt, running.tensorrt, bool(flags.get("version_compatible")))
    if why:
        return why
    built_cc, run_cc = _cc(record.get("compute_capability", "0.0")), _cc(running.compute_capability)
    built_gpu = str(record.get("gpu", "?"))
    if hw == "ampere+":
        if running.integrated:
            return (
                f"it is hardware-compatible (ampere+), which TensorRT does not support on integrated GPUs "
                f"(Jetson, DRIVE), and this {running.gpu} is one"
            )
        if run_cc < (8, 0):
            return (
                f"it is hardware-compatible with Ampere and newer GPUs (sm 8.0+), and this "
                f"{running.gpu} is sm {running.compute_capability}"
            )
    elif hw == "same-cc":
        if run_cc != built_cc:
            return (
                f"it is hardware-compatible with GPUs of sm {record.get('compute_capability', '?')} (same-cc), "
                f"and this {running.gpu} is sm {running.compute_capability}"
            )
    elif hw != "none":
        return f"hardware compatibility level '{hw}' is unknown to this deploykit"
    elif run_cc != built_cc or built_gpu != running.gpu:
        return (
            f"it was built for {built_gpu} (sm {record.get('compute_capability', '?')}) and this GPU is "
            f"{running.gpu} (sm {running.compute_capability})"
        )
    return None


def build_problem(hardware_compat: str, building: RunningEnv) -> str | None:
    """Why this GPU cannot build an engine of ``hardware_compat``, or None when it can."""
    need = _BUILD_MIN_CC.get(hardware_compat)
    if need is None:
        return None
    if hardware_compat == "ampere+" and building.integrated:
        return f"--hardware-compat ampere+ is not supported by TensorRT on integrated GPUs like this {building.gpu}"
    if _cc(building.compute_capability) < need:
        return (
            f"--hardware-compat {hardware_compat} needs a GPU of sm {need[0]}.{need[1]} or newer to build on, "
            f"and this {building.gpu} is sm {building.compute_capability}"
        )
    return None


def check_engine(record: Mapping[str, Any], running: RunningEnv, where: str, rebuild: str) -> None:
    """Refuse, in one line, an engine that cannot run on ``running``; say how to rebuild it."""
    try:
        why = incompatibility(record, running)
    except DeployKitError as e:  # a malformed record (compute capability not MAJOR.MINOR)
        raise DeployKitError(f"{where}: engine record is malformed: {e}") from None
    if why is not None:
        raise DeployKitError(f"{where}: engine cannot run here: {why}; rebuild it here with: {rebuild}")


def built_for(record: Mapping[str, Any]) -> str:
    """What an engine was built with, in words: "TensorRT 10.3.0 for NVIDIA L4 (sm 8.9)"."""
    flags = record.get("flags", {}) or {}
    text = f"TensorRT {record.get('tensorrt', '?')} for {record.get('gpu', '?')}"
    text += f" (sm {record.get('compute_capability', '?')})"
    if flags.get("version_compatible"):
        text += ", version-compatible"
    if flags.get("hardware_compat", "none") != "none":
        text += f", hardware-compatible {flags['hardware_compat']}"
    return text


def check_engine_artifact(art: Any, running: RunningEnv) -> None:
    """The guard for a loaded engine artifact: refuse it when it cannot run on ``running``."""
    record = engine_record(art.manifest, where=str(art.manifest_path))
    check_engine(record, running, where=str(art.path), rebuild=rebuild_command(record, str(art.path)))


def rebuild_command(record: Mapping[str, Any], artifact_dir: str) -> str:
    """The ``deploykit build`` command that rebuilds an engine from its parent ONNX artifact."""
    parent = str((record.get("parent") or {}).get("path") or "PARENT_ARTIFACT")
    flags = record.get("flags", {}) or {}
    profile = record.get("batch") or {}
    parts = ["deploykit build", _quote(parent), "--precision", str(record.get("precision", "fp16"))]
    if profile:
        parts += ["--batch", f"{profile.get('min')}:{profile.get('opt')}:{profile.get('max')}"]
    if flags.get("hardware_compat", "none") != "none":
        parts += ["--hardware-compat", str(flags["hardware_compat"])]
    if flags.get("version_compatible"):
        parts.append("--version-compatible")
    if flags.get("tf32"):
        parts.append("--tf32")
    parts += ["--out", _quote(artifact_dir), "--force"]
    return " ".join(parts)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


__all__ = [
    "CROSS_MAJOR",
    "HARDWARE_COMPAT",
    "HARDWARE_COMPAT_LEVELS",
    "build_problem",
    "RunningEnv",
    "built_for",
    "check_engine",
    "check_engine_artifact",
    "engine_record",
    "incompatibility",
    "rebuild_command",
    "running_env",
]
