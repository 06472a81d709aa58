"""Build a serialized TensorRT engine from ONNX: a strongly typed network, builder config, profile, build.

One path for TensorRT 10 (>= 10.8) and 11. TensorRT 11 builds strongly typed networks only and
removed the weak-typing precision flags (``BuilderFlag.FP16``, ``INT8``, ...; deprecated since
10.12, see NVIDIA's "Migrating from TensorRT 10.x to 11.x"), so the network is created with
``STRONGLY_TYPED`` (required on 10.x, accepted and ignored on 11.x) and no precision flag is ever
set: the ONNX tensor types decide each layer's precision. deploykit.build checks before building
that those types are what the label says (deploykit/build/precision_check.py). ``TF32`` is on by
default in TensorRT; it is cleared unless ``tf32`` is asked for, so FP32 layers compute in FP32.

Written against TensorRT's Python API directly (``Builder``, ``OnnxParser``,
``IBuilderConfig``, ``IProgressMonitor``, ``ITimingCache``) rather than through Polygraphy's
loaders: deploykit needs the build log in a file, a progress callback, a version-bound timing
cache and the portability flags recorded in a manifest, and doing that around Polygraphy's
loaders would add a dependency without removing much code. :class:`EngineOptions` is pure Python
so every option is validated on a machine without TensorRT.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploykit._io import atomic_write_bytes
from deploykit.backends.tensorrt import import_tensorrt
from deploykit.backends.tensorrt.guard import HARDWARE_COMPAT, HARDWARE_COMPAT_LEVELS
from deploykit.errors import DeployKitError

PRECISIONS = ("fp32", "fp16", "int8", "best")
# The oldest TensorRT the strongly typed path is meant for (deploykit's stated floor); the bindings
# contract test checks the names it uses against 10.13.3.9 and 11.4.0.106 only.
MIN_TENSORRT = (10, 8)
# progress(phase, step, steps): one call per builder step TensorRT reports.
BuildProgress = Callable[[str, int, int], None]


@dataclass
class EngineOptions:
    """Everything that shapes an engine build; validated without TensorRT."""

    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_mb: int | None = None
    opt_level: int | None = None  # TensorRT's builder_optimization_level, 0-5 (its default is 3)
    hardware_compat: str = "none"
    version_compatible: bool = False
    tf32: bool = False  # let FP32 layers use TF32 (10-bit mantissa inputs) on Ampere and newer

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise DeployKitError(f"engine precision '{self.precision}' is not one of {', '.join(PRECISIONS)}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise DeployKitError(
                f"batch profile needs 1 <= min <= opt <= max, got {self.min_batch}:{self.opt_batch}:{self.max_batch}"
            )
        if self.workspace_mb is not None and self.workspace_mb < 1:
            raise DeployKitError(f"workspace {self.workspace_mb} MB must be at least 1 MB")
        if self.opt_level is not None and not 0 <= self.opt_level <= 5:
            raise DeployKitError(f"optimisation level {self.opt_level} is not in 0-5")
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise DeployKitError(
                f"hardware compatibility '{self.hardware_compat}' is not one of {', '.join(HARDWARE_COMPAT)}"
            )

    @property
    def flags(self) -> dict[str, Any]:
        """The portability and tuning flags recorded in the engine's manifest."""
        return {
            "strongly_typed": True,
            "tf32": self.tf32,
            "workspace_mb": self.workspace_mb,
            "opt_level": self.opt_level,
            "hardware_compat": self.hardware_compat,
            "version_compatible": self.version_compatible,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuiltEngine:
    """A serialized engine, the timing cache the build left, and what TensorRT logged."""

    plan: bytes
    timing_cache: bytes | None
    seconds: float
    log: list[str] = field(default_factory=list)
    inputs: dict[str, list[list[int]]] = field(default_factory=dict)  # name -> [min, opt, max] shapes


def build_serialized(
    onnx_path: str | os.PathLike,
    options: EngineOptions,
    *,
    timing_cache: bytes | None = None,
    log_file: str | os.PathLike | None = None,
    progress: BuildProgress | None = None,
) -> BuiltEngine:
    """Parse ONNX, configure the builder from ``options`` and return the serialized engine."""
    trt = import_tensorrt("Building a TensorRT engine")
    path = Path(onnx_path)
    if not path.is_file():
        raise DeployKitError(f"{path}: ONNX file not found")
    lines: list[str] = []
    fh = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115 - closed below
    try:
        return _build(trt, path, options, timing_cache, lines, fh, log_file, progress)
    finally:
        if fh is not None:
            fh.close()


def _build(
    trt: Any,
    path: Path,
    options: EngineOptions,
    timing_cache: bytes | None,
    lines: list[str],
    fh: Any,
    log_file: Any,
    progress: BuildProgress | None,
) -> BuiltEngine:
    logger = _file_logger(trt, lines, fh)
    monitor = _progress_monitor(trt, progress) if progress else None

    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(_parser_error(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployKitError(f"{path}: TensorRT's ONNX parser failed ({errors[:300]})")

    config = builder.create_builder_config()
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; FP32 means FP32 unless --tf32
    if options.opt_level is not None:
        config.builder_optimization_level = options.opt_level
    level = HARDWARE_COMPAT_LEVELS[options.hardware_compat]
    if level is not None:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if monitor is not None:
        config.progress_monitor = monitor
    cache = config.create_timing_cache(timing_cache or b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise DeployKitError(f"{path}: TensorRT refused the timing cache; pass another --timing-cache path")

    shapes = _add_profile(builder, network, config, options, path)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise DeployKitError(_build_failure(path, options, lines, log_file))
    cache_bytes = bytes(cache.serialize())  # the builder adds its timings to the cache it was given
    return BuiltEngine(plan=bytes(serialized), timing_cache=cache_bytes, seconds=seconds, log=lines, inputs=shapes)


def _add_profile(
    builder: Any, network: Any, config: Any, options: EngineOptions, path: Path
) -> dict[str, list[list[int]]]:
    profile = builder.create_optimization_profile()
    shapes: dict[str, list[list[int]]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        if any(d < 0 for d in dims[1:]):
            raise DeployKitError(f"{path}: input '{tensor.name}' has dynamic non-batch dims {dims}")
        rest = dims[1:]
        if dims[0] < 0:
            lo, opt, hi = [options.min_batch, *rest], [options.opt_batch, *rest], [options.max_batch, *rest]
        else:
            if options.min_batch != dims[0] or options.max_batch != dims[0]:
                raise DeployKitError(
                    f"{path}: input '{tensor.name}' has a fixed batch of {dims[0]}; "
                    f"use --batch {dims[0]}:{dims[0]}:{dims[0]}"
                )
            lo = opt = hi = dims
        profile.set_shape(tensor.name, lo, opt, hi)
        shapes[tensor.name] = [list(lo), list(opt), list(hi)]
    config.add_optimization_profile(profile)
    return shapes


def _parser_error(error: Any) -> str:
    """One parser error as "node: description" (the node is empty for file-level errors)."""
    node = str(error.node_name() or "")
    return f"{node}: {error.desc()}" if node else str(error.desc())


def _build_failure(path: Path, options: EngineOptions, lines: list[str], log_file: Any) -> str:
    errors = [ln for ln in lines if ln.startswith(("[E]", "[F]"))]
    last = errors[0][4:] if errors else "no error logged"  # the first error is the cause; later ones follow from it
    text = " ".join(errors).lower()
    hint = "see the build log" + (f" {log_file}" if log_file else "")
    if options.workspace_mb and ("memory" in text or "workspace" in text or "tactic" in text):
        hint = f"the {options.workspace_mb} MB workspace is probably too small; raise --workspace"
    return f"{path}: TensorRT could not build an engine ({last[:200]}); {hint}"


def _file_logger(trt: Any, lines: list[str], fh: Any) -> Any:
    """An ILogger that keeps INFO and above, one line per message, and appends them to ``fh``."""
    sev = trt.ILogger.Severity
    tags = {sev.INTERNAL_ERROR: "F", sev.ERROR: "E", sev.WARNING: "W", sev.INFO: "I", sev.VERBOSE: "V"}

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.file = fh

        def log(self, severity: Any, msg: str) -> None:
            if severity == sev.VERBOSE:
                return
            line = f"[{tags.get(severity, '?')}] {' '.join(str(msg).split())}"
            lines.append(line)
            if self.file is not None and not self.file.closed:  # TensorRT may log after the build
                self.file.write(line + "\n")
                self.file.flush()

    return _Logger()


def _progress_monitor(trt: Any, progress: BuildProgress) -> Any:
    """An IProgressMonitor that forwards each finished step to ``progress`` (never cancels)."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = int(num_steps)
            progress(phase_name, 0, int(num_steps))

        def step_complete(self, phase_name: str, step: int) -> bool:
            progress(phase_name, int(step) + 1, self.steps.get(phase_name, 0))
            return True

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

    return _Monitor()


def build_engine(
    onnx_path: str | os.PathLike,
    precision: str = "fp16",
    min_batch: int = 1,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    workspace_mb: int | None = None,
) -> bytes:
    """Parse ONNX (its tensor types set the precision), add one batch profile, return the serialized engine.

    ``precision`` only labels the build here; deploykit.build checks the label against the graph.
    """
    import_tensorrt("Building a TensorRT engine")
    max_batch = max_batch or max(min_batch, opt_batch or min_batch)
    opt_batch = opt_batch or max_batch
    options = EngineOptions(
        precision=precision, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_mb=workspace_mb
    )
    return build_serialized(onnx_path, options).plan


def write_engine(onnx_path: str | os.PathLike, out_path: str | os.PathLike, **kwargs) -> Path:
    """Build an engine and write it atomically."""
    return atomic_write_bytes(out_path, build_engine(onnx_path, **kwargs))
