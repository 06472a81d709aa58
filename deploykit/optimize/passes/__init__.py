"""Graph passes, one per file; ``PASSES`` maps each name to its class in the default order."""

from __future__ import annotations

from deploykit.optimize.passes._base import GraphPass
from deploykit.optimize.passes.affine_to_batchnorm import AffineToBatchNormPass
from deploykit.optimize.passes.batchnorm_to_affine import BatchNormToAffinePass
from deploykit.optimize.passes.classifier_head import ClassifierHeadPass
from deploykit.optimize.passes.cleanup import CleanupPass
from deploykit.optimize.passes.constant_fold import ConstantFoldPass
from deploykit.optimize.passes.fold_affine import FoldAffinePass
from deploykit.optimize.passes.fold_batchnorm import FoldBatchNormPass
from deploykit.optimize.passes.fuse_concat import FuseConcatPass
from deploykit.optimize.passes.fuse_parallel_conv import FuseParallelConvPass
from deploykit.optimize.passes.initializer_inputs import InitializerInputsPass
from deploykit.optimize.passes.pool_before_conv import PoolBeforeConvPass
from deploykit.optimize.passes.sum_to_add import SumToAddPass

PASSES: dict[str, type[GraphPass]] = {
    p.name: p
    for p in (
        CleanupPass,
        InitializerInputsPass,
        ConstantFoldPass,
        SumToAddPass,
        FoldBatchNormPass,
        FoldAffinePass,
        AffineToBatchNormPass,
        ClassifierHeadPass,
        FuseParallelConvPass,
        FuseConcatPass,
        PoolBeforeConvPass,
        BatchNormToAffinePass,
    )
}

__all__ = ["PASSES", "GraphPass"]
