"""Concat fusion: nested and single-input Concats, Split->Concat round trips, affine push-through."""

import numpy as np

from .graphs import ops, parse, rewrites

HEAD = '<ir_version: 8, opset_import: ["" : 17]>'


def test_nested_concats_on_the_same_axis_flatten(check):
    text = (
        HEAD
        + """
    g (float[1,2,4,4] a, float[1,3,4,4] b, float[1,1,4,4] c) => (float[1,6,4,4] y) {
      ab = Concat<axis = 1>(a, b)
      y = Concat<axis = 1>(ab, c)
    }
    """
    )
    result = check(text, ["fuse_concat"])
    assert rewrites(result, "fuse_concat") == 1
    assert ops(result.model) == {"Concat": 1}
    assert list(result.model.graph.node[0].input) == ["a", "b", "c"]


def test_nested_concat_on_another_axis_or_shared_is_kept(check):
    text = (
        HEAD
        + """
    g (float[1,2,4,4] a, float[1,2,4,4] b) => (float[1,4,8,4] y, float[1,2,8,4] ab) {
      ab = Concat<axis = 2>(a, b)
      y = Concat<axis = 1>(ab, ab)
    }
    """
    )
    result = check(text, ["fuse_concat"])
    assert rewrites(result, "fuse_concat") == 0
    assert ops(result.model) == {"Concat": 2}


def test_single_input_concat_is_removed(check):
    text = (
        HEAD
        + """
    g (float[1,2,4,4] a) => (float[1,2,4,4] y) {
      r = Relu(a)
      c = Concat<axis = 1>(r)
      y = Sigmoid(c)
    }
    """
    )
    result = check(text, ["fuse_concat"])
    assert rewrites(result, "fuse_concat") == 1
    assert ops(result.model) == {"Relu": 1, "Sigmoid": 1}


def test_split_concatenated_back_in_order_is_removed(check):
    text = (
        HEAD
        + """
    g (float[1,6,4,4] x) => (float[1,6,4,4] y) {
      r = Relu(x)
      p, q, s = Split<axis = 1>(r, sizes)
      y = Concat<axis = 1>(p, q, s)
    }
    """
    )
    result = check(parse(text, sizes=np.array([1, 2, 3], np.int64)), ["fuse_concat", "cleanup"])
    assert ops(result.model) == {"Relu": 1}
    assert rewrites(result, "fuse_concat") == 2  # Split undone, then the 1-input Concat dropped


def test_split_concatenated_out_of_order_is_kept(check):
    text = (
        HEAD
        + """
    g (float[1,6,4,4] x) => (float[1,6,4,4] y) {
      p, q, s = Split<axis = 1>(x, sizes)
      y = Concat<axis = 1>(q, p, s)
    }
    """
    )
    result = check(parse(text, sizes=np.array([1, 2, 3], np.int64)), ["fuse_concat"])
    assert rewrites(result, "fuse_concat") == 0
    assert ops(result.model) == {"Split": 1, "Concat": 1}


def test_split_on_another_axis_is_kept(check):
    text = (
        HEAD
        + """
    g (float[1,6,4,4] x) => (float[1,6,4,4] y) {
      p, q = Split<axis = 2>(x, sizes)
      y = Concat<axis = 1>(p, q)
    }
    """.replace("float[1,6,4,4] y", "float[1,12,2,4] y")
    )
    result = check(parse(text, sizes=np.array([2, 2], np.int64)), ["fuse_concat"])
    assert ops(result.model) == {"Split": 1, "Concat": 1}


def test_per_channel_mul_is_pushed_through_concat(check):
    text = (
        HEAD
        + """
    g (float[1,2,4,4] a, float[1,3,4,4] b) => (float[1,5,4,4] y) {
      ma = Mul(a, sa)
      mb = Mul(b, sb)
      y = Concat<axis = 1>(ma, mb)
    }
    """
    )
    model = parse(text, sa=(2, 1, 1), sb=(1, 3, 1, 1))
    result = check(model, ["fuse_concat"])
    assert rewrites(result, "fuse_concat") == 1
    assert ops(result.model) == {"Concat": 1, "Mul": 1}


def test_spatially_varying_mul_is_not_pushed(check):
    text = (
        HEAD
        + """
    g (float[1,2,4,4] a, float[1,3,4,4] b) => (float[1,5,4,4] y) {
      ma = Mul(a, sa)
      mb = Mul(b, sb)
      y = Concat<axis = 1>(ma, mb)
    }
    """
    )
    result = check(parse(text, sa=(2, 4, 4), sb=(3, 1, 1)), ["fuse_concat"])
    assert rewrites(result, "fuse_concat") == 0
    assert ops(result.model) == {"Concat": 1, "Mul": 2}
