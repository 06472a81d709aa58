"""``best``: an INT8 Q/DQ model whose layers outside the Q/DQ pairs run in FP16.

Under TensorRT's strong typing the Q/DQ scales' type is the type every unquantised layer runs
in: FP32 scales keep the rest of the network in FP32, FP16 scales (opset >= 19) put it in FP16,
which is what ``build --precision best`` means. The conversion upgrades the opset, converts with
onnxconverter-common (the converter deploykit's FP16 export uses) and keeps in FP32:

- the weights' own Q/DQ (FP32 scales, a Cast to FP16 after the DequantizeLinear): per-channel
  weight scales are often far below FP16's smallest normal number (``weight_qdq_nodes``);

- every node that writes or reads a tensor whose calibrated range comes within
  ``FP16_HEADROOM`` of FP16's largest finite value (65504), so nothing that calibration saw can
  overflow, with headroom for images brighter than the calibration set's;
- the nodes writing the graph outputs (the logits: FP16 keeps about 3 significant digits, which
  can swap two close classes) and op types without exact FP16 kernels (Softmax, the converter's
  default list).

Inputs and outputs stay float32 (Casts at the boundary), so callers feed the same tensors as to
the FP32 and INT8 artifacts.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from deploykit.errors import DeployKitError

HIGH_PRECISION = ("fp32", "fp16")
FP16_OPSET = 19  # QuantizeLinear/DequantizeLinear take float16 scales from opset 19
FP16_MAX = 65504.0
FP16_HEADROOM = 4.0  # keep FP32 where the calibrated |x| exceeds FP16_MAX / FP16_HEADROOM
FP32_OPS = ("Softmax", "LogSoftmax")


def check_high_precision(dtype: str, profile: str) -> str:
    """``dtype`` validated: fp16 only exists for the tensorrt profile (ONNX Runtime's CPU QDQ
    kernels take float32 scales)."""
    if dtype not in HIGH_PRECISION:
        raise DeployKitError(f"high precision '{dtype}' is not one of {', '.join(HIGH_PRECISION)}")
    if dtype == "fp16" and profile != "tensorrt":
        raise DeployKitError("high precision fp16 needs --profile tensorrt (TensorRT runs the FP16 layers)")
    return dtype


def overflow_nodes(model, stats: dict[str, Any], limit: float = FP16_MAX / FP16_HEADROOM) -> list[str]:
    """Nodes that write or read a tensor whose calibrated |x| exceeds ``limit``: they stay in
    FP32 (a QuantizeLinear reading one too: it would see the float16 cast's inf)."""
    big = {t for t, st in stats.items() if st.count and st.amax > limit}
    return [n.name for n in model.graph.node if big.intersection(n.output) or big.intersection(n.input)]


def weight_qdq_nodes(model) -> list[str]:
    """The Q/DQ nodes of constant weights. Their scales stay float32 (a Cast to float16 follows the
    DequantizeLinear): per-channel weight scales of BN-folded convs fall far below float16's
    smallest normal (6.1e-5; measured on a Fashion-MNIST ResNet-50: half of them, some below 1e-7),
    where float16 keeps few or no significant bits and whole channels would be mis-scaled."""
    const = {i.name for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and all((not t) or t in const for t in n.input):
            const.update(n.output)
            out.append(n.name)
    return out


def output_nodes(model) -> list[str]:
    """Nodes that write a graph output (the logits)."""
    outs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if any(o in outs for o in n.output)]


def upgrade_opset(model, opset: int = FP16_OPSET):
    """``model`` at opset >= ``opset`` (onnx.version_converter), unchanged when already there."""
    import onnx
    from onnx import version_converter

    cur = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if cur >= opset:
        return model
    try:
        out = version_converter.convert_version(model, opset)
    except Exception as e:  # the converter raises bare RuntimeErrors for unsupported adapters
        raise DeployKitError(f"cannot upgrade the INT8 model from opset {cur} to {opset}: {e}") from None
    onnx.checker.check_model(out)
    return out


def to_fp16_outside_qdq(model, stats: dict[str, Any], keep_fp32: Iterable[str] = ()) -> tuple[Any, list[str]]:
    """The Q/DQ model with FP16 scales and FP16 layers outside the pairs; returns it and the
    names of the nodes kept in FP32 (overflow, logits, ``keep_fp32``)."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise DeployKitError(
            "FP16 conversion needs onnxconverter-common, a dependency of deploykit that is "
            "missing here; reinstall deploykit"
        ) from None
    from deploykit.export.fp16 import MAX_FINITE, MIN_POSITIVE

    m = upgrade_opset(model)
    kept = list(dict.fromkeys([*overflow_nodes(m, stats), *output_nodes(m), *keep_fp32]))
    blocked = kept + [n for n in weight_qdq_nodes(m) if n not in kept]
    _unshare_constants(m, set(blocked))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per clamped weight
        out = float16.convert_float_to_float16(
            m,
            min_positive_val=MIN_POSITIVE,
            max_finite_val=MAX_FINITE,
            keep_io_types=True,
            op_block_list=sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS)),
            node_block_list=blocked,
        )
    _float32_outputs(out)
    return out, kept


def _unshare_constants(model, nodes: set[str]) -> None:
    """Give the ``nodes`` staying in FP32 their own copy of every initializer they share with a
    node going to FP16 (a Q/DQ pair shares its scale): the converter gives a shared initializer
    one type, which breaks the other reader."""
    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, set[str]] = {}
    for n in model.graph.node:
        for t in n.input:
            if t in inits:
                readers.setdefault(t, set()).add(n.name)
    for n in model.graph.node:
        if n.name not in nodes:
            continue
        for i, t in enumerate(n.input):
            if t in inits and readers[t] - nodes:
                copy = type(inits[t])()
                copy.CopyFrom(inits[t])
                copy.name = f"{t}_fp32_{n.name}"
                model.graph.initializer.append(copy)
                n.input[i] = copy.name


def _float32_outputs(model) -> None:
    """Make every graph output float32 again. onnxconverter-common's keep_io_types casts a
    blocked (FP32) node's output to float16 and declares the graph output float16: drop that
    Cast; any output still computed in float16 gets a Cast to float32 instead."""
    from onnx import TensorProto, helper

    nodes = list(model.graph.node)
    for vi in model.graph.output:
        tt = vi.type.tensor_type
        if tt.elem_type != TensorProto.FLOAT16:
            continue
        prod = next(n for n in nodes if vi.name in n.output)
        to = next((a.i for a in prod.attribute if a.name == "to"), None)
        src = next((n for n in nodes if prod.op_type == "Cast" and prod.input[0] in n.output), None)
        if prod.op_type == "Cast" and to == TensorProto.FLOAT16 and src is not None and src.name in _blocked(model):
            src.output[list(src.output).index(prod.input[0])] = vi.name
            nodes.remove(prod)
        else:
            half = f"{vi.name}_fp16"
            prod.output[list(prod.output).index(vi.name)] = half
            nodes.append(
                helper.make_node("Cast", [half], [vi.name], name=f"{vi.name}_to_float32", to=TensorProto.FLOAT)
            )
        tt.elem_type = TensorProto.FLOAT
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _blocked(model) -> set[str]:
    """Nodes the converter left in float32: those whose inputs it casts to float32."""
    casts = {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "Cast" and any(a.name == "to" and a.i == 1 for a in n.attribute)
    }
    return {n.name for n in model.graph.node if n.op_type != "Cast" and any(t in casts for t in n.input)}
