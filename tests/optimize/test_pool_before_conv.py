"""AvgPool moved before a pointwise Conv (DenseNet transitions); refused where it is not exact."""

from .graphs import ops, parse, rewrites

TRANSITION = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,8,8,8] x) => (float[1,4,4,4] y) {
  r = Relu(x)
  c = Conv(r, w)
  y = AveragePool<kernel_shape = [2, 2], strides = [2, 2]>(c)
}
"""


def test_transition_conv_runs_after_the_pool(check):

    result = check(parse(TRANSITION, w=(4, 8, 1, 1)), ["pool_before_conv"])
    assert rewrites(result, "pool_before_conv") == 1
    assert [n.op_type for n in result.model.graph.node] == ["Relu", "AveragePool", "Conv"]


def test_bias_is_fine_without_padding(check):
    result = check(parse(TRANSITION.replace("(r, w)", "(r, w, b)"), w=(4, 8, 1, 1), b=(4,)), ["pool_before_conv"])
    assert rewrites(result, "pool_before_conv") == 1


def test_bias_with_zero_padded_pool_is_kept(check):
    text = (
        TRANSITION.replace("(r, w)", "(r, w, b)")
        .replace("strides = [2, 2]>", "strides = [2, 2], pads = [1, 1, 1, 1], count_include_pad = 1>")
        .replace("float[1,4,4,4] y", "float[1,4,5,5] y")
    )
    result = check(parse(text, w=(4, 8, 1, 1), b=(4,)), ["pool_before_conv"])
    assert rewrites(result, "pool_before_conv") == 0


def test_stride_one_pool_and_3x3_conv_are_kept(check):
    stride1 = TRANSITION.replace(
        "kernel_shape = [2, 2], strides = [2, 2]", "kernel_shape = [3, 3], pads = [1, 1, 1, 1]"
    )
    stride1 = stride1.replace("float[1,4,4,4] y", "float[1,4,8,8] y")
    result = check(parse(stride1, w=(4, 8, 1, 1)), ["pool_before_conv"])
    assert rewrites(result, "pool_before_conv") == 0
    conv3 = TRANSITION.replace("c = Conv(r, w)", "c = Conv<pads = [1, 1, 1, 1]>(r, w)")
    result = check(parse(conv3, w=(4, 8, 3, 3)), ["pool_before_conv"])
    assert rewrites(result, "pool_before_conv") == 0
    assert ops(result.model) == {"Relu": 1, "Conv": 1, "AveragePool": 1}
