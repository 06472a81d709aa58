"""Tiny ONNX graphs (ONNX text) exercising each placement rule, with random weights."""

from __future__ import annotations

import numpy as np


def _conv_w(rng, cout: int, cin: int, k: int = 3) -> np.ndarray:
    return (rng.normal(size=(cout, cin, k, k)) * (2.0 / (cin * k * k)) ** 0.5).astype(np.float32)


def build(text: str, weights: dict[str, np.ndarray]):
    """Parse ONNX text and attach the given initializers; the model is checked."""
    import onnx
    from onnx import numpy_helper

    model = onnx.parser.parse_model(text)
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in weights.items())
    onnx.checker.check_model(model, full_check=True)
    return model


def residual_block(seed: int = 0):
    """conv-relu -> conv -> Add(identity) -> relu -> maxpool -> GAP -> flatten -> gemm."""
    rng = np.random.default_rng(seed)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    resblock (float[N, 4, 8, 8] x) => (float[N, 5] y) {
        c0 = Conv <pads = [1, 1, 1, 1]> (x, w0, b0)
        r0 = Relu (c0)
        c1 = Conv <pads = [1, 1, 1, 1]> (r0, w1, b1)
        r1 = Relu (c1)
        c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2)
        s = Add (c2, r0)
        r2 = Relu (s)
        p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r2)
        g = GlobalAveragePool (p)
        f = Flatten (g)
        y = Gemm <transB = 1> (f, wf, bf)
    }
    """
    w = {
        "w0": _conv_w(rng, 8, 4),
        "b0": rng.normal(size=8).astype(np.float32) * 0.1,
        "w1": _conv_w(rng, 8, 8),
        "b1": rng.normal(size=8).astype(np.float32) * 0.1,
        "w2": _conv_w(rng, 8, 8),
        "b2": rng.normal(size=8).astype(np.float32) * 0.1,
        "wf": rng.normal(size=(5, 8)).astype(np.float32) * 0.3,
        "bf": np.zeros(5, np.float32),
    }
    return build(text, w)


_CONCAT_BODY = """
        a = Conv <pads = [1, 1, 1, 1]> (x, wa, ba)
        ra = Relu (a)
        b = Conv (x, wb, bb)
        rb = Relu (b)
        cat = Concat <axis = 1> (ra, rb)
        p = AveragePool <kernel_shape = [2, 2], strides = [2, 2]> (cat)
        y = Conv <pads = [1, 1, 1, 1]> (p, wc, bc)
"""


def _concat_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "wa": _conv_w(rng, 4, 3),
        "ba": np.zeros(4, np.float32),
        "wb": _conv_w(rng, 4, 3, 1) * 5.0,
        "bb": np.zeros(4, np.float32),  # a wider range than branch a
        "wc": _conv_w(rng, 6, 8),
        "bc": np.zeros(6, np.float32),
    }


def concat_block(seed: int = 0):
    """Two conv branches of different range concatenated, then a conv and an average pool."""
    text = (
        '<ir_version: 8, opset_import: ["" : 17]>\n'
        "concat (float[N, 3, 8, 8] x) => (float[N, 6, 4, 4] y) {" + _CONCAT_BODY + "}"
    )
    return build(text, _concat_weights(seed))


def concat_with_shared_branch(seed: int = 0):
    """concat_block, but branch a is also read by a pooled side output (two readers)."""
    text = (
        '<ir_version: 8, opset_import: ["" : 17]>\n'
        "concat2 (float[N, 3, 8, 8] x) => (float[N, 6, 4, 4] y, float[N, 4, 1, 1] side) {"
        + _CONCAT_BODY
        + "        side = GlobalAveragePool (ra)\n}"
    )
    return build(text, _concat_weights(seed))


def nested_concat(seed: int = 0):
    """Inception-v3's split branch: Concat(a, Concat(b, c)), each branch a conv+relu."""
    rng = np.random.default_rng(seed)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    nested (float[N, 3, 8, 8] x) => (float[N, 6, 4, 4] y) {
        a = Conv <pads = [1, 1, 1, 1]> (x, wa, ba)
        ra = Relu (a)
        b = Conv (x, wb, bb)
        rb = Relu (b)
        c = Conv <pads = [1, 1, 1, 1]> (x, wc, bc)
        rc = Relu (c)
        inner = Concat <axis = 1> (rb, rc)
        cat = Concat <axis = 1> (ra, inner)
        p = AveragePool <kernel_shape = [2, 2], strides = [2, 2]> (cat)
        y = Conv <pads = [1, 1, 1, 1]> (p, wy, by)
    }
    """
    w = {
        "wa": _conv_w(rng, 4, 3),
        "ba": np.zeros(4, np.float32),
        "wb": _conv_w(rng, 2, 3, 1) * 5.0,
        "bb": np.zeros(2, np.float32),
        "wc": _conv_w(rng, 2, 3),
        "bc": np.zeros(2, np.float32),
        "wy": _conv_w(rng, 6, 8),
        "by": np.zeros(6, np.float32),
    }
    return build(text, w)


def downsample_block(seed: int = 0):
    """ResNet's projection block: conv-relu-conv main branch + a 1x1 conv shortcut, then Add-relu."""
    rng = np.random.default_rng(seed)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    downsample (float[N, 4, 8, 8] x) => (float[N, 5] y) {
        c0 = Conv <pads = [1, 1, 1, 1]> (x, w0, b0)
        r0 = Relu (c0)
        c1 = Conv <pads = [1, 1, 1, 1]> (r0, w1, b1)
        r1 = Relu (c1)
        c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2)
        sc = Conv (r0, wd, bd)
        s = Add (c2, sc)
        r2 = Relu (s)
        g = GlobalAveragePool (r2)
        f = Flatten (g)
        y = Gemm <transB = 1> (f, wf, bf)
    }
    """
    w = {
        "w0": _conv_w(rng, 8, 4),
        "b0": rng.normal(size=8).astype(np.float32) * 0.1,
        "w1": _conv_w(rng, 8, 8),
        "b1": rng.normal(size=8).astype(np.float32) * 0.1,
        "w2": _conv_w(rng, 8, 8),
        "b2": rng.normal(size=8).astype(np.float32) * 0.1,
        "wd": _conv_w(rng, 8, 8, 1),
        "bd": rng.normal(size=8).astype(np.float32) * 0.1,
        "wf": rng.normal(size=(5, 8)).astype(np.float32) * 0.3,
        "bf": np.zeros(5, np.float32),
    }
    return build(text, w)


def dense_block(seed: int = 0):
    """DenseNet's layer: Concat(features, new conv features) -> BatchNorm -> Relu -> conv."""
    rng = np.random.default_rng(seed)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    dense (float[N, 4, 8, 8] x) => (float[N, 6, 8, 8] y) {
        c0 = Conv <pads = [1, 1, 1, 1]> (x, w0, b0)
        r0 = Relu (c0)
        a = Conv <pads = [1, 1, 1, 1]> (r0, wa, ba)
        cat = Concat <axis = 1> (r0, a)
        bn = BatchNormalization (cat, g1, be1, m1, v1)
        r1 = Relu (bn)
        y = Conv <pads = [1, 1, 1, 1]> (r1, wy, by)
    }
    """
    w = {
        "w0": _conv_w(rng, 8, 4),
        "b0": rng.normal(size=8).astype(np.float32) * 0.1,
        "wa": _conv_w(rng, 4, 8),
        "ba": np.zeros(4, np.float32),
        "g1": (1 + 0.1 * rng.normal(size=12)).astype(np.float32),
        "be1": (0.1 * rng.normal(size=12)).astype(np.float32),
        "m1": (0.1 * rng.normal(size=12)).astype(np.float32),
        "v1": (1 + 0.1 * rng.random(12)).astype(np.float32),
        "wy": _conv_w(rng, 6, 12),
        "by": np.zeros(6, np.float32),
    }
    return build(text, w)


def stem_block(seed: int = 0):
    """ResNet's stem and first readers: conv-relu -> maxpool -> two convs (main and shortcut)."""
    rng = np.random.default_rng(seed)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    stem (float[N, 4, 8, 8] x) => (float[N, 12, 4, 4] y) {
        c0 = Conv <pads = [1, 1, 1, 1]> (x, w0, b0)
        r0 = Relu (c0)
        p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r0)
        c1 = Conv <pads = [1, 1, 1, 1]> (p, w1, b1)
        c2 = Conv (p, w2, b2)
        y = Concat <axis = 1> (c1, c2)
    }
    """
    w = {
        "w0": _conv_w(rng, 8, 4),
        "b0": rng.normal(size=8).astype(np.float32) * 0.1,
        "w1": _conv_w(rng, 8, 8),
        "b1": rng.normal(size=8).astype(np.float32) * 0.1,
        "w2": _conv_w(rng, 4, 8, 1),
        "b2": rng.normal(size=4).astype(np.float32) * 0.1,
    }
    return build(text, w)
