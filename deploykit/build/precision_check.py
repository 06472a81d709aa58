"""What precision an ONNX graph computes in under TensorRT's strong typing, read on CPU without TensorRT.

A strongly typed TensorRT network (the only kind TensorRT 11 builds) takes every tensor's type
from the graph: initializer dtypes, Cast targets, and Q/DQ scale dtypes (a DequantizeLinear outputs
its scale's type). No builder flag changes that, so an engine label is only true when the graph
says it. This module reads the dtype flowing into each Conv/ConvTranspose/Gemm/MatMul (the layers
that carry nearly all the arithmetic of a classic CNN) and whether Q/DQ pairs feed it, derives the
precision the engine will really have, and refuses a label that differs in one line.

* ``fp32``: every compute layer takes float32; no float16/bfloat16 tensor anywhere, no Q/DQ;
* ``fp16``: every compute layer takes float16; no Q/DQ (float32 graph I/O behind Casts is fine);
* ``int8``: Q/DQ pairs feed compute layers; everything outside them is float32 (scales included);
* ``best``: Q/DQ pairs feed compute layers; everything outside them (activation scales included) is
  float16. Two exceptions keep it honest without losing accuracy: weights may be dequantised with
  float32 per-channel scales and then Cast to float16 (many per-channel scales are below float16's
  smallest normal), and layers the quantiser kept in float32 because float16 would overflow are
  allowed when the artifact's manifest names them (``allowed_fp32``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_LOW = ("float16", "bfloat16")


@dataclass
class NetworkTypes:
    """The tensor types that decide an engine's precision under strong typing."""

    compute: dict[str, str] = field(default_factory=dict)  # compute node -> "int8" or the float dtype it takes
    qdq_scales: Counter = field(default_factory=Counter)  # Q/DQ scale dtype -> count
    activation_scales: Counter = field(default_factory=Counter)  # the same, Q/DQ of activations only
    initializers: Counter = field(default_factory=Counter)  # float initializer dtype -> count (scales excluded)
    casts: Counter = field(default_factory=Counter)  # Cast target dtype -> count
    float_values: set[str] = field(default_factory=set)  # every float dtype any tensor of the graph has

    @property
    def fp32_layers(self) -> list[str]:
        """Compute layers that take float32 (in ``best``: the ones kept out of float16)."""
        return sorted(k for k, t in self.compute.items() if t == "float32")

    @property
    def counts(self) -> Counter:
        return Counter(self.compute.values())

    @property
    def precision(self) -> str:
        """fp32, fp16, int8, best, or what else the graph holds (bf16, mixed, int8+mixed, none)."""
        counts = self.counts
        floats = {t for t in counts if t != "int8"}
        if not counts:
            return "none"
        if counts["int8"]:
            outside = floats | set(self.activation_scales)
            if outside <= {"float32"} and not self.float_values & set(_LOW):
                return "int8"
            if set(self.activation_scales) <= {"float16"} and "float16" in outside and floats <= {"float16", "float32"}:
                return "best"  # float32 layers here must be ones the manifest kept for range (check_precision)
            return "int8+mixed"
        if self.qdq_scales:
            return "mixed"  # Q/DQ that feeds no compute layer: not a layout TensorRT runs in INT8
        if floats == {"float32"} and not self.float_values & set(_LOW):
            return "fp32"
        if floats == {"float16"}:
            return "fp16"
        if floats == {"bfloat16"}:
            return "bf16"
        return "mixed"

    def describe(self) -> str:
        """e.g. "12 of 12 compute layers INT8 Q/DQ, outside them float32 (scales float32)"."""
        counts = self.counts
        n = sum(counts.values())
        parts = [f"{c} {'INT8 Q/DQ' if t == 'int8' else t}" for t, c in sorted(counts.items())]
        text = f"{n} Conv/Gemm/MatMul layers: {', '.join(parts) or 'none'}"
        if self.qdq_scales:
            text += f"; Q/DQ scales {', '.join(sorted(self.qdq_scales))}"
        low = sorted(self.float_values & set(_LOW))
        if low and not any(t in low for t in counts):
            text += f"; {', '.join(low)} tensors elsewhere"
        return text

    def to_dict(self) -> dict[str, Any]:
        """What the engine manifest records of the graph it was built from."""
        return {
            "precision": self.precision,
            "compute_layers": dict(sorted(self.counts.items())),
            "qdq_scale_dtypes": dict(sorted(self.qdq_scales.items())),
            "initializer_dtypes": dict(sorted(self.initializers.items())),
            "cast_targets": dict(sorted(self.casts.items())),
        }


def _dtype_name(elem_type: int) -> str:
    """ONNX's element type as a dtype name: float32, float16, bfloat16, int8, ..."""
    import onnx

    try:
        name = onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type{elem_type}"
    return {"float": "float32", "double": "float64"}.get(name, name)


def network_types(model: Any) -> NetworkTypes:
    """Read the precision-deciding types of an ``onnx.ModelProto`` (type inference, no weights needed)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is best effort; the graph's own annotations remain
        inferred = model
    g = inferred.graph
    types: dict[str, int] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    producer: dict[str, Any] = {}
    for node in g.node:
        for out in node.output:
            producer[out] = node
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            types.setdefault(node.output[0], node.attribute[0].t.data_type)

    # Weights: constants, and a QuantizeLinear of a constant (weights stored in float, quantised in the graph).
    constants = {i.name for i in g.initializer} | {n.output[0] for n in g.node if n.op_type == "Constant"}
    constants |= {n.output[0] for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in constants}
    scales: set[str] = set()
    result = NetworkTypes()
    for node in g.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 1:
            scales.add(node.input[1])
            if node.input[1] in types:
                dtype = _dtype_name(types[node.input[1]])
                result.qdq_scales[dtype] += 1
                if node.input[0] not in constants:  # an activation's Q/DQ
                    result.activation_scales[dtype] += 1
        elif node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), 0)
            result.casts[_dtype_name(to)] += 1
    for init in g.initializer:
        name = _dtype_name(init.data_type)
        if init.name not in scales and name.startswith(("float", "bfloat")):
            result.initializers[name] += 1
    for t in types.values():
        name = _dtype_name(t)
        if name.startswith(("float", "bfloat")):
            result.float_values.add(name)
    for i, node in enumerate(g.node):
        if node.op_type not in COMPUTE_OPS or len(node.input) < 2:
            continue
        key = node.name or f"{node.op_type}#{i}"
        fed = [_through_cast(producer, producer.get(x)) for x in node.input[:2]]
        if all(p is not None and p.op_type == "DequantizeLinear" for p in fed):
            result.compute[key] = "int8"
        else:
            t = types.get(node.input[0])
            result.compute[key] = _dtype_name(t) if t else "unknown"
    return result


def _through_cast(producer: dict[str, Any], node: Any) -> Any:
    """A DequantizeLinear behind one Cast (a weight dequantised in float32, then cast) counts as the DQ."""
    if node is not None and node.op_type == "Cast" and node.input:
        behind = producer.get(node.input[0])
        if behind is not None and behind.op_type == "DequantizeLinear":
            return behind
    return node


_NAMES = {
    "fp32": "FP32",
    "fp16": "FP16",
    "int8": "INT8 Q/DQ with float32 outside",
    "best": "INT8 Q/DQ with float16 outside",
}


def check_precision(
    onnx_path: str | os.PathLike,
    label: str,
    where: str | None = None,
    fix: str | None = None,
    allowed_fp32: Any = (),
) -> NetworkTypes:
    """The graph's types when they are what ``label`` says; otherwise a one-line DeployKitError.

    ``allowed_fp32``: for ``best``, the layers the quantiser recorded as kept in float32 (overflow).
    """
    import onnx

    path = Path(onnx_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - a damaged file: one line naming it
        raise DeployKitError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
    found = network_types(model)
    if found.precision != label:
        unknown = found.counts.get("unknown", 0)
        hint = f" ({unknown} layer input types could not be inferred)" if unknown else ""
        msg = (
            f"{where or path}: --precision {label} needs {_NAMES.get(label, label)} layers, and under TensorRT's "
            f"strong typing this network computes as {found.precision} ({found.describe()}){hint}"
        )
        raise DeployKitError(msg + (f"; {fix}" if fix else ""))
    stray = [n for n in found.fp32_layers if n not in set(allowed_fp32)] if label == "best" else []
    if stray:
        raise DeployKitError(
            f"{where or path}: --precision best needs float16 outside the Q/DQ pairs, and {len(stray)} layer(s) "
            f"take float32 that the quantiser did not keep for range ({', '.join(stray[:3])})"
            + (f"; {fix}" if fix else "")
        )
    return found


__all__ = ["COMPUTE_OPS", "NetworkTypes", "check_precision", "network_types"]
