"""Rewrite a BatchNormalization that nothing absorbed as an explicit per-channel Mul+Add (opt-in)."""

from __future__ import annotations

import onnx_ir as ir

from deploykit.optimize.passes._base import GraphPass, is_op
from deploykit.optimize.passes.fold_batchnorm import FoldBatchNormPass


class BatchNormToAffinePass(GraphPass):
    """For runtimes without an inference BN kernel; ORT CPU is faster with BN kept (it fuses BN+ReLU)."""

    name = "batchnorm_to_affine"
    description = "remaining inference BatchNormalization -> per-channel Mul+Add (opt-in)"

    def run(self, model: ir.Model) -> None:
        folder = FoldBatchNormPass(unfoldable="affine")
        for node in list(model.graph):
            if is_op(node, "BatchNormalization"):
                folder._to_affine(model.graph, node)
        self.rewrites.extend(folder.rewrites)
