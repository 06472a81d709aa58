"""The engine stage: an ONNX artifact in, a TensorRT engine artifact (``model.plan`` + manifest) out.

``build_engine_artifact`` checks everything it can without TensorRT first (the parent artifact's
hashes, precision against what the parent holds, the batch profile, the options, the output
directory), then the environment (the ``tensorrt`` package, a GPU, the timing cache), and only then
builds, inside an :class:`~deploykit.artifact.ArtifactWriter` so a failed build leaves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.backends.tensorrt.builder import PRECISIONS, BuildProgress, BuiltEngine, EngineOptions
from deploykit.backends.tensorrt.guard import RunningEnv
from deploykit.errors import DeployKitError

PLAN_NAME = "model.plan"
LOG_NAME = "build.log"
# verify(plan_path, engine_artifact_dir_to_be) -> what was proven, stored as results["parity"].
Verifier = Callable[[Path], dict[str, Any]]
# serialize(onnx_path, options, timing_cache=, log_file=, progress=) -> BuiltEngine, like build_serialized.
Serializer = Callable[..., BuiltEngine]


def tensorrt_serializer() -> Serializer:
    """TensorRT's engine builder; the one place the stage imports tensorrt (tests stand in a fake here)."""
    from deploykit.backends.tensorrt import import_tensorrt
    from deploykit.backends.tensorrt.builder import build_serialized

    import_tensorrt("deploykit build")
    return build_serialized


@dataclass
class BuildResult:
    """The committed engine artifact and the facts a caller prints."""

    artifact: Any
    seconds: float
    record: dict[str, Any]
    timing_cache: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.artifact.path


def parse_batch(text: str | None) -> tuple[int, int, int] | None:
    """``MIN:OPT:MAX`` (or one number for a fixed batch) -> (min, opt, max)."""
    if text is None or str(text).strip() == "":
        return None
    parts = str(text).split(":")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise DeployKitError(f"batch '{text}' is not MIN:OPT:MAX (e.g. 1:8:32) or one number") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise DeployKitError(f"batch '{text}' is not MIN:OPT:MAX (e.g. 1:8:32) or one number")
    lo, opt, hi = vals
    if not 1 <= lo <= opt <= hi:
        raise DeployKitError(f"batch '{text}' needs 1 <= MIN <= OPT <= MAX")
    return lo, opt, hi


def default_out(artifact_dir: str | os.PathLike, precision: str) -> Path:
    """``ARTIFACT-trt-PRECISION`` next to the ONNX artifact."""
    p = Path(artifact_dir)
    return p.with_name(f"{p.name}-trt-{precision}")


def quantize_profile(manifest: Any) -> str | None:
    """The Q/DQ profile an INT8 artifact was quantised for (newest quantize stage), or None."""
    for stage in reversed(manifest.stages or []):
        if stage.get("stage") == "quantize":
            return (stage.get("params") or {}).get("profile")
    return None


def environment_problem() -> str | None:
    """Why no engine can be built here (no tensorrt module, no GPU), or None when one can."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "the 'tensorrt' module is not installed (pip install 'deploykit[tensorrt]')"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "torch is not installed, so no CUDA GPU can be found"
    if not torch.cuda.is_available():
        return "no NVIDIA GPU is visible (torch.cuda.is_available() is False)"
    return None


def plan_build(
    artifact: str | os.PathLike | Any,
    precision: str = "fp16",
    batch: Any = None,
    workspace_mb: int | None = None,
    opt_level: int | None = None,
    hardware_compat: str = "none",
    version_compatible: bool = False,
    out: str | os.PathLike | None = None,
    force: bool = False,
) -> tuple[Any, EngineOptions, Path]:
    """Every check that needs no TensorRT: the parent, precision, batch profile, options and output."""
    from deploykit.artifact import Artifact, check_output

    parent = artifact if hasattr(artifact, "manifest") else Artifact.load(artifact, verify=True)
    if hasattr(artifact, "manifest"):
        parent.verify()
    m = parent.manifest
    where = str(parent.path)
    if m.format != "onnx":
        raise DeployKitError(f"{where}: is a {m.format} artifact; deploykit build needs an ONNX artifact")
    if precision not in PRECISIONS:
        raise DeployKitError(f"engine precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision in ("int8", "best"):
        if m.precision != "int8":
            raise DeployKitError(
                f"{where}: is a {m.precision} artifact and --precision {precision} needs an INT8 one; "
                f"make it with: deploykit quantize {where} --profile tensorrt --calib SPEC --val SPEC"
            )
        if quantize_profile(m) != "tensorrt":
            raise DeployKitError(
                f"{where}: was quantised for the '{quantize_profile(m)}' Q/DQ profile; TensorRT needs "
                f"one made with: deploykit quantize PARENT --profile tensorrt"
            )
    elif m.precision == "int8":
        raise DeployKitError(f"{where}: is an INT8 (Q/DQ) artifact; build it with --precision int8 or best")
    bp = m.batch
    if batch is None:
        lo, opt, hi = bp.min, bp.opt, bp.max
    elif isinstance(batch, str):
        lo, opt, hi = parse_batch(batch)  # type: ignore[misc]
    else:
        lo, opt, hi = (int(b) for b in batch)
    for b in (lo, hi):
        bp.check(b, where=where)
    if not bp.dynamic and lo != hi:
        raise DeployKitError(f"{where}: has a fixed batch of {bp.max}; an engine of it takes --batch {bp.max}")
    options = EngineOptions(
        precision=precision,
        min_batch=lo,
        opt_batch=opt,
        max_batch=hi,
        workspace_mb=workspace_mb,
        opt_level=opt_level,
        hardware_compat=hardware_compat,
        version_compatible=version_compatible,
    )
    out_dir = Path(out) if out is not None else default_out(parent.path, precision)
    if out_dir.exists() and not force:
        raise DeployKitError(f"{out_dir}: already exists; pass --force to replace it")
    if out_dir.resolve() == parent.path.resolve():
        raise DeployKitError(f"{out_dir}: is the input artifact; choose another --out")
    check_output(out_dir, force, reads=(parent.path,))  # not an artifact, inside one: refused before TensorRT
    return parent, options, out_dir


def engine_manifest(parent: Any, options: EngineOptions, record: dict[str, Any]) -> Any:
    """The engine artifact's manifest: the parent's data config and I/O, plus the build stage."""
    from deploykit.artifact import BatchProfile, Manifest, tool_versions

    m = parent.manifest
    weights = dict(m.weights) if m.weights else None
    if weights and weights.get("file"):  # the weights stay in the parent directory
        weights["path"] = str((parent.path / weights.pop("file")).resolve())
    precision = {"best": "int8"}.get(options.precision, options.precision)
    manifest = Manifest(
        model=m.model,
        family=m.family,
        format="tensorrt-engine",
        precision=precision,
        main_file=PLAN_NAME,
        data_config=m.data_config,
        inputs=m.inputs,
        outputs=m.outputs,
        batch=BatchProfile(
            options.min_batch,
            options.opt_batch,
            options.max_batch,
            options.min_batch != options.max_batch or m.batch.dynamic,
        ),
        opset=m.opset,
        weights=weights,
        parent=parent.parent_ref(),
        versions=tool_versions("tensorrt"),
        stages=list(m.stages),
    )
    manifest.add_stage("build", params=options.to_dict(), engine=record, log=LOG_NAME)
    return manifest


def build_engine_artifact(
    artifact: str | os.PathLike | Any,
    precision: str = "fp16",
    batch: str | tuple[int, int, int] | None = None,
    workspace_mb: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    opt_level: int | None = None,
    hardware_compat: str = "none",
    version_compatible: bool = False,
    out: str | os.PathLike | None = None,
    force: bool = False,
    progress: BuildProgress | None = None,
    verify: Verifier | None = None,
    running: RunningEnv | None = None,
    serialize: Serializer | None = None,
) -> BuildResult:
    """Build a TensorRT engine artifact from an ONNX artifact; nothing is left behind on failure.

    ``running`` and ``serialize`` stand in for this machine's TensorRT/GPU and for TensorRT's
    builder (tests; another builder); by default both come from TensorRT itself.
    """
    from deploykit._io import sha256_file
    from deploykit.artifact import ArtifactWriter
    from deploykit.backends.tensorrt.guard import running_env
    from deploykit.backends.tensorrt.timing_cache import TimingCacheMeta, read_timing_cache, write_timing_cache

    parent, options, out_dir = plan_build(
        artifact, precision, batch, workspace_mb, opt_level, hardware_compat, version_compatible, out, force
    )
    serialize = serialize or tensorrt_serializer()
    env = running or running_env(purpose="deploykit build")
    meta = TimingCacheMeta(env.tensorrt, env.gpu, env.compute_capability)
    cache_in = read_timing_cache(timing_cache, meta) if timing_cache else None
    with ArtifactWriter(out_dir, force=force, reads=(parent.path,)) as writer:  # --force swaps it in whole
        built = serialize(
            parent.main_path, options, timing_cache=cache_in, log_file=writer.dir / LOG_NAME, progress=progress
        )
        plan_path = writer.dir / PLAN_NAME
        plan_path.write_bytes(built.plan)
        record = {
            "tensorrt": env.tensorrt,
            "gpu": env.gpu,
            "compute_capability": env.compute_capability,
            "precision": options.precision,
            "batch": {"min": options.min_batch, "opt": options.opt_batch, "max": options.max_batch},
            "profile": built.inputs,
            "flags": options.flags,
            "build_seconds": round(built.seconds, 3),
            "engine_sha256": sha256_file(plan_path),
            "onnx_sha256": sha256_file(parent.main_path),
            "parent": parent.parent_ref(),
            "timing_cache": str(timing_cache) if timing_cache else None,
        }
        manifest = engine_manifest(parent, options, record)
        if verify is not None:
            manifest.results["parity"] = verify(plan_path)
        committed = writer.commit(manifest)
    cache_path = None
    if timing_cache and built.timing_cache:
        cache_path = write_timing_cache(timing_cache, built.timing_cache, meta)
    return BuildResult(artifact=committed, seconds=built.seconds, record=record, timing_cache=cache_path)


__all__ = [
    "BuildResult",
    "PLAN_NAME",
    "Serializer",
    "build_engine_artifact",
    "default_out",
    "engine_manifest",
    "environment_problem",
    "parse_batch",
    "plan_build",
    "quantize_profile",
    "tensorrt_serializer",
]
