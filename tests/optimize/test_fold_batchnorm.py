"""BatchNorm folding: into the Conv/Gemm before it, never when that output has another reader."""

import pytest

from .graphs import bn_params, ops, parse, rewrites

CONV_BN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,3,8,8] x) => (float[1,4,8,8] y) {
  c = Conv<pads = [1, 1, 1, 1]>(x, w, b)
  y = BatchNormalization<epsilon = 0.001>(c, s, bb, m, v)
}
"""


def test_bn_folds_into_conv(check):
    model = parse(CONV_BN, w=(4, 3, 3, 3), b=(4,), **bn_params(4))
    result = check(model, ["fold_batchnorm"])
    assert rewrites(result, "fold_batchnorm") == 1
    assert ops(result.model) == {"Conv": 1}


def test_bn_folds_into_conv_without_bias(check):
    model = parse(CONV_BN.replace("(x, w, b)", "(x, w)"), w=(4, 3, 3, 3), **bn_params(4))
    result = check(model, ["fold_batchnorm"])
    assert ops(result.model) == {"Conv": 1}


def test_bn_folds_into_gemm(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2,6] x) => (float[2,4] y) {
          f = Gemm<transB = 1>(x, w, b)
          y = BatchNormalization(f, s, bb, m, v)
        }
        """,
        w=(4, 6),
        b=(4,),
        **bn_params(4),
    )
    result = check(model, ["fold_batchnorm"])
    assert rewrites(result, "fold_batchnorm") == 1
    assert ops(result.model) == {"Gemm": 1}


def test_bn_not_folded_when_conv_output_has_two_readers(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,3,8,8] x) => (float[1,4,8,8] y, float[1,4,8,8] z) {
          c = Conv<pads = [1, 1, 1, 1]>(x, w, b)
          y = BatchNormalization(c, s, bb, m, v)
          z = Relu(c)
        }
        """,
        w=(4, 3, 3, 3),
        b=(4,),
        **bn_params(4),
    )
    result = check(model, ["fold_batchnorm"])
    assert rewrites(result, "fold_batchnorm") == 0
    assert ops(result.model) == {"Conv": 1, "BatchNormalization": 1, "Relu": 1}


# DenseNet: BN-ReLU-Conv after a Concat; nothing before the BN can absorb it.
AFTER_CONCAT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,2,8,8] x1, float[1,2,8,8] x2) => (float[1,3,8,8] y) {
  cat = Concat<axis = 1>(x1, x2)
  n = BatchNormalization(cat, s, bb, m, v)
  r = Relu(n)
  y = Conv(r, w)
}
"""


def test_unfoldable_bn_is_kept_by_default(check):
    model = parse(AFTER_CONCAT, w=(3, 4, 1, 1), **bn_params(4))
    result = check(model, ["fold_batchnorm"])
    assert ops(result.model)["BatchNormalization"] == 1
    assert not result.modified


def test_unfoldable_bn_becomes_per_channel_mul_add(check):
    import onnx
    import onnx_ir as ir

    from deploykit.optimize.passes.fold_batchnorm import FoldBatchNormPass

    model = parse(AFTER_CONCAT, w=(3, 4, 1, 1), **bn_params(4))
    ir_model = ir.serde.deserialize_model(onnx.shape_inference.infer_shapes(model))
    p = FoldBatchNormPass(unfoldable="affine")
    assert p(ir_model).modified and len(p.rewrites) == 1
    out = ir.serde.serialize_model(ir_model)
    onnx.checker.check_model(out, full_check=True)
    assert ops(out) == {"Concat": 1, "Mul": 1, "Add": 1, "Relu": 1, "Conv": 1}
    check(out, ["cleanup"])  # runs and compares; the real comparison is below
    from deploykit.optimize.verify import check_parity

    assert check_parity(model, out).max_rel < 1e-6


def test_training_mode_bn_is_untouched():
    from deploykit.optimize import optimize_model

    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2,3,8,8] x) => (float[2,4,8,8] y) {
          c = Conv<pads = [1, 1, 1, 1]>(x, w, b)
          y, rm, rv = BatchNormalization<training_mode = 1>(c, s, bb, m, v)
        }
        """,
        w=(4, 3, 3, 3),
        b=(4,),
        **bn_params(4),
    )
    result = optimize_model(model, ["fold_batchnorm"])
    assert ops(result.model)["BatchNormalization"] == 1
    assert not result.modified


def test_bad_unfoldable_mode_is_refused():
    from deploykit.optimize.passes.fold_batchnorm import FoldBatchNormPass

    with pytest.raises(ValueError):
        FoldBatchNormPass(unfoldable="guess")


def test_batchnorm_to_affine_pass_by_name(check):
    model = parse(AFTER_CONCAT, w=(3, 4, 1, 1), **bn_params(4))
    result = check(model, ["batchnorm_to_affine", "cleanup"])
    assert rewrites(result, "batchnorm_to_affine") == 1
    assert ops(result.model) == {"Concat": 1, "Mul": 1, "Add": 1, "Relu": 1, "Conv": 1}
    assert len(result.model.graph.initializer) == 3  # w, scale, shift: the BN statistics are gone
