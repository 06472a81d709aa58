"""The engine stage: an ONNX artifact in, a TensorRT engine artifact (``model.plan`` + manifest) out.

TensorRT builds strongly typed networks (the only kind TensorRT 11 builds), so the ONNX tensor
types decide the engine's precision and the label must come from the artifact:

* ``fp32``: an FP32 artifact, TF32 off unless ``tf32=True`` (recorded);
* ``fp16``: an FP16 artifact; an FP32 one is converted first with deploykit.export.fp16 into the
  engine artifact (``model-fp16.onnx``, recorded in the build stage);
* ``int8``: an INT8 artifact with the TensorRT Q/DQ profile (float32 outside the Q/DQ pairs);
* ``best``: the same with float16 outside the pairs, made by
  ``deploykit quantize ART --profile tensorrt --high-precision fp16``.

``build_engine_artifact`` checks everything it can without TensorRT first (the parent artifact's
hashes, the label against the graph's types (precision_check.py), the batch profile, the options,
the output directory), then the environment (the ``tensorrt`` package, a GPU, the timing cache), and
only then builds, inside an :class:`~deploykit.artifact.ArtifactWriter` so a failed build leaves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.backends.tensorrt.builder import PRECISIONS, BuildProgress, BuiltEngine, EngineOptions
from deploykit.backends.tensorrt.guard import RunningEnv
from deploykit.build.precision_check import check_precision
from deploykit.errors import DeployKitError

PLAN_NAME = "model.plan"
LOG_NAME = "build.log"
FP16_ONNX_NAME = "model-fp16.onnx"  # an FP32 artifact converted for --precision fp16 (kept: the engine's source)
# verify(plan_path, engine_artifact_dir_to_be) -> what was proven, stored as results["parity"].
Verifier = Callable[[Path], dict[str, Any]]
# serialize(onnx_path, options, timing_cache=, log_file=, progress=) -> BuiltEngine, like build_serialized.
Serializer = Callable[..., BuiltEngine]


def tensorrt_serializer() -> Serializer:
    """TensorRT's engine builder; the one place the stage imports tensorrt (tests stand in a fake here).

    Refuses a TensorRT older than :data:`~deploykit.backends.tensorrt.builder.MIN_TENSORRT`, the
    oldest the strongly typed build path is written for.
    """
    from deploykit.backends.tensorrt import import_tensorrt
    from deploykit.backends.tensorrt.builder import MIN_TENSORRT, build_serialized

    trt = import_tensorrt("deploykit build")
    version = str(getattr(trt, "__version__", "0"))
    parts = [int("".join(c for c in p if c.isdigit()) or 0) for p in version.split(".")[:2]]
    if tuple(parts + [0] * (2 - len(parts))) < MIN_TENSORRT:
        oldest = ".".join(map(str, MIN_TENSORRT))
        raise DeployKitError(
            f"TensorRT {version} is older than {oldest}, the oldest deploykit builds strongly typed engines "
            f"with; upgrade it: pip install -U 'deploykit[tensorrt]'"
        )
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


def _quantize_params(manifest: Any) -> dict[str, Any]:
    for stage in reversed(manifest.stages or []):
        if stage.get("stage") == "quantize":
            return stage.get("params") or {}
    return {}


def quantize_profile(manifest: Any) -> str | None:
    """The Q/DQ profile an INT8 artifact was quantised for (newest quantize stage), or None."""
    return _quantize_params(manifest).get("profile")


def high_precision(manifest: Any) -> str:
    """The dtype outside the Q/DQ pairs of an INT8 artifact (newest quantize stage): fp32 unless it says fp16."""
    return str(_quantize_params(manifest).get("high_precision_dtype") or "fp32")


def converts_to_fp16(manifest: Any, precision: str) -> bool:
    """True when ``--precision fp16`` is asked of an FP32 artifact: the stage converts it first."""
    return precision == "fp16" and manifest.precision == "fp32"


def kept_fp32(manifest: Any) -> list[str]:
    """The layers a ``best`` artifact's quantiser kept in float32 because float16 would overflow."""
    hp = (manifest.results.get("quantize") or {}).get("high_precision") or {}
    kept = hp.get("kept_fp32_nodes") or []
    return [str(n) for n in kept] if isinstance(kept, list) else []


def environment_problem() -> str | None:
    """Why no engine can be built here (no tensorrt module, no GPU), or None when one can."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "the 'tensorrt' module is not installed (pip install 'deploykit[tensorrt]')"
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        return "the 'cuda-bindings' module is not installed (pip install 'deploykit[tensorrt]')"
    from deploykit.backends import cuda

    try:
        if cuda.device_count() == 0:
            return "no NVIDIA GPU is visible (CUDA reports 0 devices)"
    except DeployKitError as e:
        return f"no NVIDIA GPU is visible ({e})"
    return None


def _check_label(parent: Any, precision: str) -> None:
    """Refuse, in one line, a label the artifact cannot give under strong typing (manifest, then graph)."""
    m, where = parent.manifest, str(parent.path)
    quantize = f"deploykit quantize {where} --profile tensorrt --calib SPEC --val SPEC"
    if precision in ("int8", "best"):
        if m.precision != "int8":
            raise DeployKitError(
                f"{where}: is a {m.precision} artifact and --precision {precision} needs an INT8 one; "
                f"make it with: {quantize}" + (" --high-precision fp16" if precision == "best" else "")
            )
        if quantize_profile(m) != "tensorrt":
            raise DeployKitError(
                f"{where}: was quantised for the '{quantize_profile(m)}' Q/DQ profile; TensorRT needs "
                f"one made with: deploykit quantize PARENT --profile tensorrt"
            )
        outside = high_precision(m)
        if precision == "best" and outside != "fp16":
            raise DeployKitError(
                f"{where}: --precision best needs FP16 outside the Q/DQ pairs and this INT8 artifact is "
                f"{outside} there; make one with: deploykit quantize PARENT --profile tensorrt --high-precision fp16"
            )
        if precision == "int8" and outside == "fp16":
            raise DeployKitError(f"{where}: is INT8 with FP16 outside the Q/DQ pairs; build it with --precision best")
        check_precision(parent.main_path, precision, where=f"{where}/{m.main_file}", allowed_fp32=kept_fp32(m))
        return
    if m.precision == "int8":
        label = "best" if high_precision(m) == "fp16" else "int8"
        raise DeployKitError(f"{where}: is an INT8 (Q/DQ) artifact; build it with --precision {label}")
    if precision == "fp32" and m.precision != "fp32":
        other = "build it with --precision fp16, or " if m.precision == "fp16" else ""
        raise DeployKitError(
            f"{where}: is a {m.precision} artifact and a strongly typed engine computes in the artifact's types; "
            f"{other}build --precision fp32 from the FP32 artifact"
        )
    # fp16 of an FP32 artifact: the graph must be FP32 here, and is converted (and checked again) when built
    label = "fp32" if converts_to_fp16(m, precision) else precision
    fix = "re-export the artifact with deploykit export" if label == precision else None
    check_precision(parent.main_path, label, where=f"{where}/{m.main_file}", fix=fix)


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
    tf32: bool = False,
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
    _check_label(parent, precision)
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
        tf32=tf32,
    )
    out_dir = Path(out) if out is not None else default_out(parent.path, precision)
    if out_dir.exists() and not force:
        raise DeployKitError(f"{out_dir}: already exists; pass --force to replace it")
    if out_dir.resolve() == parent.path.resolve():
        raise DeployKitError(f"{out_dir}: is the input artifact; choose another --out")
    check_output(out_dir, force, reads=(parent.path,))  # not an artifact, inside one: refused before TensorRT
    return parent, options, out_dir


def _convert_fp16(parent: Any, out: Path) -> tuple[Path, dict[str, Any]]:
    """Convert the parent's FP32 graph to FP16 (float32 I/O kept) beside the engine; what to record."""
    import onnx

    from deploykit._io import sha256_file
    from deploykit.export.fp16 import convert_to_fp16

    half = convert_to_fp16(onnx.load(str(parent.main_path)), keep_io_types=True)
    onnx.save(half, str(out))
    return out, {
        "tool": "deploykit.export.fp16 (onnxconverter-common)",
        "keep_io_types": True,
        "from": str(parent.manifest.main_file),
        "from_sha256": sha256_file(parent.main_path),
        "file": out.name,
    }


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
    tf32: bool = False,
) -> BuildResult:
    """Build a TensorRT engine artifact from an ONNX artifact; nothing is left behind on failure.

    ``running`` and ``serialize`` stand in for this machine's TensorRT/GPU and for TensorRT's
    builder (tests; another builder); by default both come from TensorRT itself.
    """
    from deploykit._io import sha256_file
    from deploykit.artifact import ArtifactWriter
    from deploykit.backends.tensorrt.guard import build_problem, running_env
    from deploykit.backends.tensorrt.timing_cache import TimingCacheMeta, read_timing_cache, write_timing_cache

    parent, options, out_dir = plan_build(
        artifact, precision, batch, workspace_mb, opt_level, hardware_compat, version_compatible, out, force, tf32
    )
    serialize = serialize or tensorrt_serializer()
    env = running or running_env(purpose="deploykit build")
    problem = build_problem(options.hardware_compat, env)
    if problem:
        raise DeployKitError(f"{parent.path}: {problem}")
    meta = TimingCacheMeta(env.tensorrt, env.gpu, env.compute_capability)
    cache_in = read_timing_cache(timing_cache, meta) if timing_cache else None
    with ArtifactWriter(out_dir, force=force, reads=(parent.path,)) as writer:  # --force swaps it in whole
        source, conversion = parent.main_path, None
        if converts_to_fp16(parent.manifest, options.precision):
            source, conversion = _convert_fp16(parent, writer.dir / FP16_ONNX_NAME)
        network = check_precision(source, options.precision, where=str(source), allowed_fp32=kept_fp32(parent.manifest))
        built = serialize(source, options, timing_cache=cache_in, log_file=writer.dir / LOG_NAME, progress=progress)
        plan_path = writer.dir / PLAN_NAME
        plan_path.write_bytes(built.plan)
        record = {
            "tensorrt": env.tensorrt,
            "gpu": env.gpu,
            "compute_capability": env.compute_capability,
            "precision": options.precision,
            "tf32": options.tf32,
            "network": network.to_dict(),
            "onnx": source.name if conversion else str(parent.manifest.main_file),
            "fp16_conversion": conversion,
            "batch": {"min": options.min_batch, "opt": options.opt_batch, "max": options.max_batch},
            "profile": built.inputs,
            "flags": options.flags,
            "build_seconds": round(built.seconds, 3),
            "engine_sha256": sha256_file(plan_path),
            "onnx_sha256": sha256_file(source),
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
    "converts_to_fp16",
    "default_out",
    "engine_manifest",
    "environment_problem",
    "high_precision",
    "parse_batch",
    "plan_build",
    "quantize_profile",
    "tensorrt_serializer",
]
