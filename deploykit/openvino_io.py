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
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, MissingExtraError

PRECISIONS = ("f32", "bf16")
# LATENCY: one stream using every thread for one request at a time (the Predictor, bench, serve's
# stub, which runs one batch at a time). THROUGHPUT splits the cores into streams for concurrent
# requests, which only pays with several requests in flight.
HINTS = ("LATENCY", "THROUGHPUT")
DEVICE = "CPU"


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
) -> Any:
    """An ``openvino.CompiledModel`` on the CPU from an ONNX/IR path, ONNX bytes or an onnx.ModelProto.

    A model OpenVINO cannot read or compile is a one-line DeployKitError naming ``where``.
    """
    ov = import_openvino()
    precision = check_precision(precision, where or "openvino")
    config = ov_config(precision, threads, hint)
    core = ov.Core()
    with tempfile.TemporaryDirectory(prefix="deploykit-ov-") as tmp:
        if isinstance(model, (str, os.PathLike)):
            src, label = str(model), where or str(model)
            if not Path(model).is_file():
                raise DeployKitError(f"{label}: model file not found")
        elif isinstance(model, (bytes, bytearray)) or hasattr(model, "SerializeToString"):
            data = bytes(model) if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
            label = where or "in-memory model"
            src = os.path.join(tmp, "model.onnx")
            Path(src).write_bytes(data)
        else:
            raise DeployKitError(f"OpenVINO needs a model path, ONNX bytes or ModelProto, got {type(model).__name__}")
        try:
            return core.compile_model(core.read_model(src), DEVICE, config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with many lines
            from deploykit.onnx_io import first_line

            raise DeployKitError(f"{label}: OpenVINO cannot compile it ({first_line(e)})") from None


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
    return out


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
    "HINTS",
    "PRECISIONS",
    "check_precision",
    "compiled_config",
    "import_openvino",
    "ov_compile",
    "ov_config",
]
