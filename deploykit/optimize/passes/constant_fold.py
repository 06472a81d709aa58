"""Constant folding, delegated to onnxscript's optimizer (subgraphs of constants become initialisers)."""

from __future__ import annotations

import collections
import math

import onnx_ir as ir
from onnxscript.optimizer import fold_constants

from deploykit.optimize.passes._base import DEFAULT_DOMAINS, GraphPass

# Anything bigger stays a computation: folding it would bloat the file for no speed gain.
_OUTPUT_LIMIT = 1 << 20


def _should_fold(node: ir.Node) -> bool | None:
    """Only standard ops are evaluated (a custom-domain op is never guessed at); None = the library's rule.

    The library keeps ``ConstantOfShape`` to keep files small; old converters make weights (a zero
    bias) with it, and a weight that is not a constant blocks every fold into the Conv, so a
    small one is folded.
    """
    if node.domain not in DEFAULT_DOMAINS:
        return False
    if node.op_type == "ConstantOfShape" and node.inputs and node.inputs[0] is not None:
        shape = node.inputs[0].const_value
        if shape is not None and math.prod(int(d) for d in shape.numpy().reshape(-1)) <= _OUTPUT_LIMIT:
            return True
    return None


class ConstantFoldPass(GraphPass):
    """Evaluate nodes whose inputs are all known now rather than at every inference."""

    name = "constant_fold"
    description = "fold constant subgraphs (onnxscript optimizer)"

    def run(self, model: ir.Model) -> None:
        before = collections.Counter(n.op_type for n in model.graph)
        result = fold_constants(
            model,
            onnx_shape_inference=False,
            output_size_limit=_OUTPUT_LIMIT,
            should_fold=_should_fold,
        )
        if not result.modified:
            return
        after = collections.Counter(n.op_type for n in model.graph)
        gone = before - after
        if gone:  # a pure re-annotation (no node gone) is not a structural change
            self.log("folded " + ", ".join(f"{k}x{op}" for op, k in sorted(gone.items())))
