"""Fold inference BatchNormalization into the Conv/Gemm before it; an unfoldable BN may become Mul+Add."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import RewriteRuleSet
from onnxscript.rewriter.rules.common import _fuse_batchnorm

from deploykit.optimize.passes._base import (
    GraphPass,
    add_initializer,
    const_array,
    is_op,
    node_label,
    replace_value,
)


def _inference_only(batchnorm_out: ir.Value) -> bool:
    node = batchnorm_out.producer()
    mode = node.attributes.get("training_mode")
    if mode is not None and mode.as_int():
        return False
    return not any(o.uses() or o.is_graph_output() for o in node.outputs[1:])


class _IntoConv(_fuse_batchnorm.FuseBatchNormIntoConv):
    def check(self, context, x, inbound_out, batchnorm_out):
        result = super().check(context, x, inbound_out, batchnorm_out)
        return result if not result or _inference_only(batchnorm_out) else result.fail("training BN")


class _IntoGemm(_fuse_batchnorm.FuseBatchNormIntoGemm):
    def check(self, context, x, inbound_out, batchnorm_out):
        result = super().check(context, x, inbound_out, batchnorm_out)
        return result if not result or _inference_only(batchnorm_out) else result.fail("training BN")


# onnxscript's rules match BN(Conv(x)) / BN(Gemm(x)) only when the Conv/Gemm output has no other
# reader (its matcher refuses to delete a value still used outside the pattern).
_RULES = RewriteRuleSet([_IntoConv().rule(), _IntoGemm().rule()])


class FoldBatchNormPass(GraphPass):
    """Inference BN is a per-channel affine map: merge it into the weights that produced its input.

    A BN nothing can absorb (DenseNet's BN-ReLU-Conv after a Concat) is kept by default: ORT CPU
    runs BN+ReLU as one blocked-layout op, and measured slower with the Mul+Add form (which
    ``unfoldable="affine"`` or the ``batchnorm_to_affine`` pass produce for other runtimes).
    """

    name = "fold_batchnorm"
    description = "BatchNormalization into the preceding Conv/Gemm; unfoldable BN to per-channel Mul+Add"

    def __init__(self, unfoldable: str = "keep") -> None:
        super().__init__()
        if unfoldable not in ("keep", "affine"):
            raise ValueError(f"unfoldable must be 'keep' or 'affine', not {unfoldable!r}")
        self.unfoldable = unfoldable

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        bns = {node_label(n): n for n in graph if is_op(n, "BatchNormalization")}
        producers = {
            label: (n.inputs[0].producer().op_type if n.inputs[0].producer() else "input") for label, n in bns.items()
        }
        if _RULES.apply_to_model(model):
            remaining = {node_label(n) for n in graph if is_op(n, "BatchNormalization")}
            for label in bns:
                if label not in remaining:
                    self.log(f"folded {label} into its {producers[label]}")
        if self.unfoldable == "affine":
            for node in list(graph):
                if is_op(node, "BatchNormalization"):
                    self._to_affine(graph, node)

    def _to_affine(self, graph: ir.Graph, node: ir.Node) -> None:
        """Rewrite BN(x) as x * scale + shift with per-channel constants (inference mode only)."""
        if len(node.outputs) > 1 and any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            return  # training outputs in use
        if node.attributes.get("training_mode") is not None and node.attributes["training_mode"].as_int():
            return
        x = node.inputs[0]
        params = [const_array(v) for v in node.inputs[1:5]]
        rank = x.shape.rank() if x.shape is not None else None
        if any(p is None for p in params) or rank is None or rank < 2:
            return
        gamma, beta, mean, var = (p.astype(np.float64) for p in params)
        eps = node.attributes["epsilon"].as_float() if "epsilon" in node.attributes else 1e-5
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        dtype = params[0].dtype
        bshape = (-1,) + (1,) * (rank - 2)
        base = node.name or "bn"
        s = add_initializer(graph, f"{base}_scale", scale.astype(dtype).reshape(bshape))
        b = add_initializer(graph, f"{base}_shift", shift.astype(dtype).reshape(bshape))
        mul = ir.node("Mul", [x, s], name=f"{base}_mul")
        add = ir.node("Add", [mul.outputs[0], b], name=f"{base}_add")
        add.outputs[0].type, add.outputs[0].shape = node.outputs[0].type, node.outputs[0].shape
        mul.outputs[0].type, mul.outputs[0].shape = x.type, x.shape
        graph.insert_before(node, [mul, add])
        replace_value(node.outputs[0], add.outputs[0])
        graph.remove(node, safe=True)
        self.log(f"{node_label(node)} -> per-channel Mul+Add")
