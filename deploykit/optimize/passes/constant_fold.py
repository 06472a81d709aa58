"""Constant folding, delegated to onnxscript's optimizer (subgraphs of constants become initialisers)."""

from __future__ import annotations

import collections

import onnx_ir as ir
from onnxscript.optimizer import fold_constants

from deploykit.optimize.passes._base import DEFAULT_DOMAINS, GraphPass

# Anything bigger stays a computation: folding it would bloat the file for no speed gain.
_OUTPUT_LIMIT = 1 << 20


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
            # Only standard ops are evaluated; a custom-domain op is never guessed at.
            should_fold=lambda node: None if node.domain in DEFAULT_DOMAINS else False,
        )
        if not result.modified:
            return
        after = collections.Counter(n.op_type for n in model.graph)
        gone = before - after
        if gone:  # a pure re-annotation (no node gone) is not a structural change
            self.log("folded " + ", ".join(f"{k}x{op}" for op, k in sorted(gone.items())))
