"""The one OpenVINO layer: compile a model with one set of options, for every stage that runs one.

Beside :mod:`deploykit.onnx_io` (ONNX Runtime sessions) and in the same role: the runner, the
Predictor, ``serve`` and the benchmarks all compile here, so what is timed is what deploys.

Inference precision is always explicit. OpenVINO's CPU plugin runs floating-point layers in
bfloat16 by default on CPUs that have it (``INFERENCE_PRECISION_HINT`` reads ``bf16`` on Zen 4),
which would run an artifact labelled fp32 in bf16. deploykit asks for ``f32`` unless ``bf16`` is
named, and bf16 only where the CPU has it natively (:func:`deploykit.machine.bf16_refusal`).

``openvino`` is the ``openvino`` extra, imported only when a model is compiled.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, MissingExtraError

PRECISIONS = ("f32", "bf16")
# LATENCY: one stream using every thread for one request at a time (the Predictor, bench, serve's
# stub, which runs one batch at a time). THROUGHPUT splits the cores into streams for concurrent
# requests, which only pays with several requests in flight.
HINTS = ("LATENCY", "THROUGHPUT")
DEVICE = "CPU"
# Static compiles per runner / Predictor (one per batch size fed); further sizes share one dynamic compile.
MAX_COMPILED = 4


def import_openvino(purpose: str = "The openvino backend") -> Any:
    """The openvino package, or a one-line MissingExtraError naming the extra."""
    try:
        import openvino
    except ImportError:
        raise MissingExtraError("openvino", "openvino", purpose) from None
    return openvino


def check_precision(precision: str, where: str = "openvino") -> str:
    """``f32`` or ``bf16``; bf16 only on a CPU with native bfloat16 arithmetic (one-line refusal elsewhere)."""
    p = {"fp32": "f32", "float32": "f32", "bfloat16": "bf16"}.get(precision, precision)
    if p not in PRECISIONS:
        raise DeployKitError(f"{where}: inference precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if p == "bf16":
        from deploykit.machine import bf16_refusal

        why = bf16_refusal()
        if why:
            raise DeployKitError(f"{where}: bf16 refused: {why}")
    return p


def ov_config(precision: str = "f32", threads: int | None = None, hint: str = "LATENCY") -> dict[str, Any]:
    """The compile properties deploykit uses: hint, threads (default: the usable cores), precision."""
    from deploykit.machine import usable_cores

    if hint not in HINTS:
        raise DeployKitError(f"OpenVINO performance hint '{hint}' is not one of {', '.join(HINTS)}")
    if threads is not None and threads < 1:
        raise DeployKitError(f"threads must be at least 1, got {threads}")
    return {
        "PERFORMANCE_HINT": hint,
        "INFERENCE_NUM_THREADS": int(threads or usable_cores()),
        "INFERENCE_PRECISION_HINT": precision,
    }


def ov_compile(
    model: str | os.PathLike | bytes | Any,
    *,
    precision: str = "f32",
    threads: int | None = None,
    hint: str = "LATENCY",
    where: str | None = None,
    batch: int | None = None,
    properties: dict[str, Any] | None = None,
    inputs: list[tuple[str, list[int | None]]] | None = None,
) -> Any:
    """An ``openvino.CompiledModel`` on the CPU from an ONNX/IR path, ONNX bytes or an onnx.ModelProto.

    ``batch``: compile for that batch only, every input's leading dim fixed to it and the other dims
    as the model declares them (static in deploykit artifacts; a dynamic one is refused). Why: the
    CPU plugin picks kernels and memory plans for the exact shapes, and OpenVINO's docs advise static
    shapes for CPU speed. Measured on Zen 4 (2 threads, LATENCY, f32, batch 1, 224x224): deploykit's
    INT8 Q/DQ DenseNet-121 runs 30.7 ms compiled dynamic, 15.9 ms compiled static; ResNet-50 INT8
    11.49 vs 11.21 ms. An ONNX source gets the shape at conversion (``convert_model(input=...)``):
    ``read_model`` then ``reshape`` then ``compile_model`` segfaults on a Q/DQ DenseNet-121 (OpenVINO
    2026.4), so that path is used for an IR (.xml) only, where it is fine. ``batch=None`` compiles
    the model as declared (a dynamic batch stays dynamic). ``properties``: further compile
    properties (``PERF_COUNT`` for per-node counters), never the precision, hint or threads.
    ``inputs``: the (name, dims) of the model's inputs as declared, from a caller that has read the
    model already (``declared_inputs(ov_read(...))``); without it an ONNX source is read once more
    by OpenVINO to find them. Never through the ``onnx`` package: the torch-free runtime with the
    ``openvino`` extra has no ``onnx``.

    A model OpenVINO cannot read or compile is a one-line DeployKitError naming ``where``.
    """
    ov = import_openvino()
    precision = check_precision(precision, where or "openvino")
    config = ov_config(precision, threads, hint)
    clash = set(properties or {}) & set(config)
    if clash:
        names = ", ".join(sorted(clash))
        raise DeployKitError(f"{where or 'openvino'}: {names} are set by deploykit, not as properties")
    config.update(properties or {})
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise DeployKitError(f"{where or 'openvino'}: batch must be a positive integer, got {batch!r}")
    core = ov.Core()
    with tempfile.TemporaryDirectory(prefix="deploykit-ov-") as tmp:
        src, label = _source(model, tmp, where)
        from deploykit.onnx_io import first_line

        is_ir = src.lower().endswith(".xml")
        try:
            if batch is None:
                ov_model = core.read_model(src)
            elif is_ir:
                ov_model = core.read_model(src)
                shapes = static_input_shapes(inputs or declared_inputs(ov_model), batch, label)
                ov_model.reshape({i: ov.PartialShape(s) for i, s in enumerate(shapes)})
            else:
                declared = inputs or declared_inputs(core.read_model(src))
                shapes = static_input_shapes(declared, batch, label)
                ov_model = ov.convert_model(src, input=[(n, s) for (n, _), s in zip(declared, shapes)])
            return core.compile_model(ov_model, DEVICE, config)
        except DeployKitError:
            raise
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with many lines
            raise DeployKitError(f"{label}: OpenVINO cannot compile it ({first_line(e)})") from None


def ov_read(model: str | os.PathLike | bytes | Any, where: str | None = None) -> Any:
    """The ``openvino.Model`` as declared, read but not compiled (names, types and shapes for a runner)."""
    ov = import_openvino()
    with tempfile.TemporaryDirectory(prefix="deploykit-ov-") as tmp:
        src, label = _source(model, tmp, where)
        try:
            return ov.Core().read_model(src)
        except Exception as e:
            from deploykit.onnx_io import first_line

            raise DeployKitError(f"{label}: OpenVINO cannot compile it ({first_line(e)})") from None


def _source(model: Any, tmp: str, where: str | None) -> tuple[str, str]:
    """(file path, label for errors); in-memory models are written to ``tmp``."""
    if isinstance(model, (str, os.PathLike)):
        label = where or str(model)
        if not Path(model).is_file():
            raise DeployKitError(f"{label}: model file not found")
        return str(model), label
    if isinstance(model, (bytes, bytearray)) or hasattr(model, "SerializeToString"):
        data = bytes(model) if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        src = os.path.join(tmp, "model.onnx")
        Path(src).write_bytes(data)
        return src, where or "in-memory model"
    raise DeployKitError(f"OpenVINO needs a model path, ONNX bytes or ModelProto, got {type(model).__name__}")


def static_input_shapes(
    declared: list[tuple[str, list[int | None]]], batch: int, where: str = "openvino"
) -> list[list[int]]:
    """Each input's shape with the leading dim set to ``batch``; a dynamic non-batch dim is refused in one line."""
    out = []
    for name, dims in declared:
        if not dims:
            raise DeployKitError(f"{where}: input '{name}' has no batch dimension to fix to {batch}")
        rest = dims[1:]
        if any(d is None for d in rest):
            shown = "x".join("?" if d is None else str(d) for d in dims)
            raise DeployKitError(
                f"{where}: input '{name}' has shape {shown}; a static compile needs every dim but the batch fixed"
            )
        if dims[0] is not None and dims[0] != batch:
            raise DeployKitError(f"{where}: input '{name}' is fixed to batch {dims[0]}, not {batch}")
        out.append([batch, *rest])  # type: ignore[list-item]
    return out


def _dims(shape: Any) -> list[int | None]:
    if shape.rank.is_dynamic:
        return []
    return [d.get_length() if d.is_static else None for d in shape]


def _port_name(port: Any, index: int) -> str:
    try:
        return port.get_any_name()
    except Exception:  # an IR input without a tensor name
        return f"#{index}"


def declared_inputs(ov_model: Any) -> list[tuple[str, list[int | None]]]:
    """(name, dims) of an ``openvino.Model``'s inputs, None for a dynamic dim (what ``ov_compile(inputs=)`` takes)."""
    return [(_port_name(p, i), _dims(p.get_partial_shape())) for i, p in enumerate(ov_model.inputs)]


def compiled_by_batch(
    model: str | os.PathLike | bytes | Any,
    *,
    precision: str = "f32",
    threads: int | None = None,
    hint: str = "LATENCY",
    where: str | None = None,
    declared: Any = None,
) -> CompiledByBatch:
    """A :class:`CompiledByBatch` of ``model``: each batch size fed compiled static by :func:`ov_compile`.

    The inputs are read once, from ``declared`` (the ``openvino.Model`` a caller read already with
    :func:`ov_read`) or read here, and every compile reuses them instead of reading the file again.
    """
    inputs = declared_inputs(declared if declared is not None else ov_read(model, where=where))

    def compile_for(batch: int | None) -> Any:
        return ov_compile(
            model, precision=precision, threads=threads, hint=hint, where=where, batch=batch, inputs=inputs
        )

    return CompiledByBatch(compile_for)


class CompiledByBatch:
    """Static compiles of one model, one per batch size fed, each with its infer request.

    Compiled lazily on the first call at a new batch (a bench warm-up call, never a timed one).
    The first ``size`` batch sizes each get a static compile; any further size runs on one
    dynamic-batch compile, made once and kept. Nothing is ever evicted: a server fed many batch
    sizes would otherwise recompile (seconds for a DenseNet) in the middle of a request. Not
    thread-safe: callers that share one (the Predictor) hold their own lock.
    """

    def __init__(self, compile_for: Callable[[int | None], Any], size: int = MAX_COMPILED) -> None:
        if size < 1:
            raise DeployKitError(f"compiled-model cache size must be at least 1, got {size}")
        self._compile_for = compile_for  # batch -> static compile; None -> the dynamic-batch compile
        self.size = size
        self._entries: dict[int, tuple[Any, Any]] = {}
        self._dynamic: tuple[Any, Any] | None = None
        #: compiled_config() of the latest compile, and every batch -> input shape it runs on
        self.config: dict[str, Any] = {}
        self.shapes: dict[int, Any] = {}

    def get(self, batch: int) -> tuple[Any, Any]:
        """(compiled model, infer request) for ``batch``, compiling it now if it is not cached."""
        if batch in self._entries:
            return self._entries[batch]
        if batch in self.shapes:  # fed before, beyond the static ones: the dynamic compile, as recorded
            return self._dynamic  # type: ignore[return-value]
        if len(self._entries) < self.size:
            compiled = self._compile_for(batch)
            entry = self._entries[batch] = (compiled, compiled.create_infer_request())
        else:
            if self._dynamic is None:
                compiled = self._compile_for(None)
                self._dynamic = (compiled, compiled.create_infer_request())
            entry = self._dynamic
        self.config = compiled_config(entry[0])
        self.shapes[batch] = self.config.get("input_shape")
        return entry

    @property
    def batches(self) -> list[int]:
        """Batch sizes with a static compile, in the order they were first fed."""
        return list(self._entries)

    @property
    def dynamic(self) -> bool:
        """Whether the dynamic-batch compile exists (more than ``size`` batch sizes were fed)."""
        return self._dynamic is not None


def compiled_config(compiled: Any) -> dict[str, Any]:
    """What the compiled model actually runs with, read back from OpenVINO (recorded with every figure)."""
    out: dict[str, Any] = {"device": DEVICE}
    for key in ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS"):
        try:
            value = compiled.get_property(key)
        except Exception:  # a property this OpenVINO version does not report
            continue
        out[key.lower()] = _plain(value)
    out["precision"] = _precision_name(out.get("inference_precision_hint"))
    shapes = {_port_name(p, i): _shape_record(p.get_partial_shape()) for i, p in enumerate(compiled.inputs)}
    if shapes:
        # the shape it was compiled for: [1, 3, 224, 224] when static, "[?,3,224,224]" when not
        out["input_shape"] = next(iter(shapes.values())) if len(shapes) == 1 else shapes
    return out


def _shape_record(shape: Any) -> list[int] | str:
    return [d.get_length() for d in shape] if shape.is_static else str(shape)


def _plain(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)):
        return value
    text = str(value)
    for prefix in ("PerformanceMode.", "<Type: '", "'>"):
        text = text.replace(prefix, "")
    return text


def _precision_name(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    return {"float32": "f32", "f32": "f32", "bfloat16": "bf16", "bf16": "bf16", "float16": "f16"}.get(text, text)


__all__ = [
    "DEVICE",
    "MAX_COMPILED",
    "CompiledByBatch",
    "HINTS",
    "PRECISIONS",
    "check_precision",
    "compiled_by_batch",
    "compiled_config",
    "import_openvino",
    "ov_compile",
    "ov_config",
    "ov_read",
    "static_input_shapes",
]
