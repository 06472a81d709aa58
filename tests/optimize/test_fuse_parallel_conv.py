"""Horizontal fusion of parallel 1x1 convs: fires on Inception-style heads, nowhere else."""

from .graphs import ops, parse, rewrites

HEADS = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,8,6,6] x) => (float[1,14,6,6] y) {
  a = Conv(x, wa, ba)
  ra = Relu(a)
  b = Conv(x, wb, bb)
  rb = Relu(b)
  c = Conv(x, wc)
  rc = Relu(c)
  b3 = Conv<pads = [1, 1, 1, 1]>(rb, w3)
  y = Concat<axis = 1>(ra, b3, rc)
}
"""
WEIGHTS = dict(wa=(4, 8, 1, 1), ba=(4,), wb=(6, 8, 1, 1), bb=(6,), wc=(2, 8, 1, 1), w3=(8, 6, 3, 3))


def test_three_heads_fuse_with_their_relu(check):
    result = check(parse(HEADS, **WEIGHTS), ["fuse_parallel_conv"])
    assert rewrites(result, "fuse_parallel_conv") == 1
    assert ops(result.model) == {"Conv": 2, "Relu": 1, "Split": 1, "Concat": 1}
    assert "[4, 6, 2]" in result.reports[0].details[0]


def test_relu_kept_per_branch_when_not_all_branches_apply_it(check):
    text = HEADS.replace("rc = Relu(c)", "rc = Sigmoid(c)")
    result = check(parse(text, **WEIGHTS), ["fuse_parallel_conv"])
    # a and b (both ReLU) fuse with the ReLU; c stays alone with its Sigmoid.
    assert rewrites(result, "fuse_parallel_conv") == 1
    assert ops(result.model) == {"Conv": 3, "Relu": 1, "Split": 1, "Sigmoid": 1, "Concat": 1}


def test_heads_without_activation_fuse_to_conv_and_split(check):
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,8,6,6] x) => (float[1,4,6,6] p, float[1,6,6,6] q) {
      p = Conv(x, wa, ba)
      q = Conv(x, wb, bb)
    }
    """
    result = check(parse(text, wa=(4, 8, 1, 1), ba=(4,), wb=(6, 8, 1, 1), bb=(6,)), ["fuse_parallel_conv"])
    assert rewrites(result, "fuse_parallel_conv") == 1
    assert ops(result.model) == {"Conv": 1, "Split": 1}


UNTOUCHED = {
    "different strides": "b = Conv<strides = [2, 2]>(x, wb)",
    "different input": "b = Conv(x2, wb)",
    "3x3 kernel": "b = Conv<pads = [1, 1, 1, 1]>(x, wb3)",
    "grouped": "b = Conv<group = 2>(x, wbg)",
    "different pads": "b = Conv<pads = [1, 1, 1, 1]>(x, wb)",
}


def _pair(second: str) -> str:
    return f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,8,6,6] x, float[1,8,6,6] x2) => (float[1,4,6,6] a, float[1,6,?,?] b) {{
      a = Conv(x, wa)
      {second}
    }}
    """


def test_does_not_fire_on_mismatched_pairs(check):
    weights = dict(wa=(4, 8, 1, 1), wb=(6, 8, 1, 1), wb3=(6, 8, 3, 3), wbg=(6, 4, 1, 1))
    for why, second in UNTOUCHED.items():
        result = check(parse(_pair(second), **weights), ["fuse_parallel_conv"])
        assert rewrites(result, "fuse_parallel_conv") == 0, why
        assert ops(result.model) == {"Conv": 2}, why


def test_weights_from_graph_inputs_are_not_fused(check):
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,8,6,6] x, float[4,8,1,1] wa) => (float[1,4,6,6] a, float[1,6,6,6] b) {
      a = Conv(x, wa)
      b = Conv(x, wb)
    }
    """
    result = check(parse(text, wb=(6, 8, 1, 1)), ["fuse_parallel_conv"])
    assert rewrites(result, "fuse_parallel_conv") == 0
