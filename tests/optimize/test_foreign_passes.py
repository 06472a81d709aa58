"""The passes for other exporters' graphs, one small graph each: what they rewrite and what they leave."""

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graphs import ops, parse, rewrites

CONV_MUL_ADD = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3,8,8] x) => (float[2,4,8,8] y) {
  c = Conv<pads = [1, 1, 1, 1]>(x, w, b)
  m = Mul(c, s)
  y = Add(m, t)
}
"""


def test_per_channel_mul_add_folds_into_conv(check):
    rng = np.random.default_rng(0)
    model = parse(
        CONV_MUL_ADD,
        w=(4, 3, 3, 3),
        b=(4,),
        s=(rng.random((4, 1, 1)) + 0.5).astype(np.float32),
        t=rng.standard_normal((1, 4, 1, 1)).astype(np.float32),
    )
    result = check(model, ["fold_affine"])
    assert rewrites(result, "fold_affine") == 2
    assert ops(result.model) == {"Conv": 1}


def test_mul_add_folds_into_conv_without_bias(check):
    model = parse(
        CONV_MUL_ADD.replace("(x, w, b)", "(x, w)"),
        w=(4, 3, 3, 3),
        s=np.full((4, 1, 1), 1.5, np.float32),
        t=np.arange(4, dtype=np.float32).reshape(4, 1, 1),
    )
    assert ops(check(model, ["fold_affine"]).model) == {"Conv": 1}


def test_mul_along_width_is_not_per_channel(check):
    # [4] against an [N, 4, 8, 8] output broadcasts along W, not C: folding it would be wrong.
    model = parse(CONV_MUL_ADD, w=(4, 3, 3, 3), b=(4,), s=(8,), t=(8,))
    result = check(model, ["fold_affine"])
    assert rewrites(result, "fold_affine") == 0
    assert ops(result.model) == {"Conv": 1, "Mul": 1, "Add": 1}


def test_mul_not_folded_when_conv_output_has_another_reader(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,3,8,8] x) => (float[1,4,6,6] y, float[1,4,6,6] z) {
          c = Conv(x, w, b)
          y = Mul(c, s)
          z = Relu(c)
        }
        """,
        w=(4, 3, 3, 3),
        b=(4,),
        s=(4, 1, 1),
    )
    result = check(model, ["fold_affine"])
    assert ops(result.model) == {"Conv": 1, "Mul": 1, "Relu": 1}


def test_two_input_sum_becomes_add_and_keeps_output_name(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4,8,8] a, float[1,4,8,8] b, float[1,4,8,8] c) => (float[1,4,8,8] y, float[1,4,8,8] z) {
          y = Sum(a, b)
          z = Sum(a, b, c)
        }
        """
    )
    result = check(model, ["sum_to_add"])
    assert rewrites(result, "sum_to_add") == 1
    assert ops(result.model) == {"Add": 1, "Sum": 1}  # three inputs: left as Sum


def _initializer_inputs_model(ir_version: int = 3) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", 1, [1, 3, 4, 4]), helper.make_tensor_value_info("w", 1, [4, 3, 1, 1])],
        [helper.make_tensor_value_info("y", 1, [1, 4, 4, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = ir_version
    return model


def test_initializer_inputs_become_constants(check):
    result = check(_initializer_inputs_model(), ["initializer_inputs"])
    assert [i.name for i in result.model.graph.input] == ["x"]
    assert result.model.ir_version == 4
    assert any("no longer graph inputs (w)" in d for r in result.reports for d in r.details)


def test_initializer_input_the_user_feeds_is_kept():
    from deploykit.optimize import optimize_model

    result = optimize_model(_initializer_inputs_model(4), ["initializer_inputs"], keep_inputs=["w"])
    assert [i.name for i in result.model.graph.input] == ["x", "w"]
    assert not result.modified


def test_view_flatten_and_matmul_add_become_flatten_gemm(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 11]>
        g (float[N,8,1,1] x) => (float[N,5] y) {
          sh = Shape(x)
          zero = Constant<value = int64 {0}>()
          n = Gather<axis = 0>(sh, zero)
          n1 = Unsqueeze<axes = [0]>(n)
          m1 = Constant<value = int64[1] {-1}>()
          target = Concat<axis = 0>(n1, m1)
          f = Reshape(x, target)
          mm = MatMul(f, w)
          y = Add(mm, b)
        }
        """,
        w=(8, 5),
        b=(5,),
    )
    result = check(model, ["classifier_head", "cleanup"])
    assert ops(result.model) == {"Flatten": 1, "Gemm": 1}


def test_reshape_to_other_shape_is_not_a_flatten(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2,8,2,2] x) => (float[4,16] y) {
          y = Reshape(x, shape)
        }
        """,
        shape=np.array([4, -1], np.int64),
    )
    assert ops(check(model, ["classifier_head"]).model) == {"Reshape": 1}


def test_constant_of_shape_weight_is_folded(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,3,8,8] x) => (float[1,4,8,8] y) {
          shape = Constant<value = int64[1] {4}>()
          b = ConstantOfShape<value = float[1] {0.25}>(shape)
          y = Conv<pads = [1, 1, 1, 1]>(x, w, b)
        }
        """,
        w=(4, 3, 3, 3),
    )
    result = check(model, ["cleanup", "constant_fold"])
    assert ops(result.model) == {"Conv": 1}


def test_lrn_is_left_alone(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4,8,8] x) => (float[1,4,8,8] y) {
          c = Conv(x, w, b)
          y = LRN<size = 3>(c)
        }
        """,
        w=(4, 4, 1, 1),
        b=(4,),
    )
    result = check(model, "default")
    assert ops(result.model) == {"Conv": 1, "LRN": 1}


AFTER_CONCAT_MUL_ADD = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,2,8,8] x1, float[1,2,8,8] x2) => (float[1,3,8,8] y) {
  cat = Concat<axis = 1>(x1, x2)
  m = Mul(cat, s)
  a = Add(m, t)
  r = Relu(a)
  y = Conv(r, w)
}
"""


def test_unabsorbed_mul_add_becomes_one_batchnorm(check):
    rng = np.random.default_rng(0)
    model = parse(
        AFTER_CONCAT_MUL_ADD,
        s=(rng.random((4, 1, 1)) + 0.5).astype(np.float32),
        t=rng.standard_normal((4, 1, 1)).astype(np.float32),
        w=(3, 4, 1, 1),
    )
    result = check(model, ["affine_to_batchnorm"])
    assert rewrites(result, "affine_to_batchnorm") == 1
    assert ops(result.model) == {"Concat": 1, "BatchNormalization": 1, "Relu": 1, "Conv": 1}


def test_mul_add_that_is_not_per_channel_stays(check):
    model = parse(AFTER_CONCAT_MUL_ADD, s=(1, 4, 8, 8), t=(4, 1, 1), w=(3, 4, 1, 1))
    result = check(model, ["affine_to_batchnorm"])
    assert ops(result.model)["Mul"] == 1 and "BatchNormalization" not in ops(result.model)
