"""ONNX graphs in the styles other toolchains write, built here (no downloads).

- ``zoo_export``: a deploykit zoo model through the TorchScript exporter at opset 9 or 11 with the
  initializers also listed as graph inputs and BatchNorm kept (no constant folding at export).
- ``legacy_style``: rewrite such an export the way older converters (Caffe2, MXNet) spell it:
  BatchNorm as ``Unsqueeze`` + ``Mul`` + ``Add`` over ``Constant`` nodes, residual ``Add`` as ``Sum``,
  the classifier as ``Reshape`` (shape from ``Shape``/``Gather``/``Concat``) + ``MatMul`` + ``Add``.
- ``hand_built``: a small opset-9, IR-3 graph with ``ConstantOfShape`` and ``Reshape``-made weights,
  Mul/Add BatchNorm, a ``Sum`` residual, an ``LRN`` and a MatMul head.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT = "data"
OUTPUT = "prob"


def zoo_export(name: str, size: int = 64, opset: int = 9, seed: int = 0) -> onnx.ModelProto:
    """A zoo model exported the legacy way: opset 9/11, initializers as inputs, BatchNorm kept."""
    import torch

    from deploykit.models.registry import create_model
    from deploykit.optimize.verify import randomise_batchnorm

    torch.manual_seed(seed)
    kwargs = {"aux_logits": False} if name in ("googlenet", "inception_v3") else {}
    model = create_model(name, **kwargs).eval()
    randomise_batchnorm(model, seed)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            model,
            torch.randn(1, 3, size, size),
            buf,
            dynamo=False,
            keep_initializers_as_inputs=True,
            opset_version=opset,
            training=torch.onnx.TrainingMode.EVAL,
            do_constant_folding=False,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "N"}, OUTPUT: {0: "N"}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name = "pytorch-legacy-test"
    return proto


def legacy_style(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same network spelled as an old converter writes it (see the module docstring)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes: list[onnx.NodeProto] = []
    k = 0

    def const(arr: np.ndarray, base: str) -> str:
        nonlocal k
        k += 1
        name = f"{base}_const{k}"
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name)))
        return name

    used: set[str] = set()
    for node in g.node:
        if node.op_type == "BatchNormalization":
            gamma, beta, mean, var = (inits[n] for n in node.input[1:5])
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            scale = (gamma / np.sqrt(var + eps)).astype(np.float32)
            shift = (beta - mean * scale).astype(np.float32)
            s = const(scale, node.output[0])
            b = const(shift, node.output[0])
            su, bu = s + "_u", b + "_u"
            nodes.append(helper.make_node("Unsqueeze", [s], [su], axes=[1, 2]))
            nodes.append(helper.make_node("Unsqueeze", [b], [bu], axes=[1, 2]))
            nodes.append(helper.make_node("Mul", [node.input[0], su], [node.output[0] + "_mul"]))
            nodes.append(helper.make_node("Add", [node.output[0] + "_mul", bu], [node.output[0]]))
        elif node.op_type == "Add" and not any(i in inits for i in node.input):
            nodes.append(helper.make_node("Sum", list(node.input), list(node.output), name=node.name))
        elif node.op_type == "Flatten":
            x = node.input[0]
            shape, idx, n, n1 = (f"{x}_{s}" for s in ("shape", "idx", "n", "n1"))
            nodes.append(helper.make_node("Shape", [x], [shape]))
            nodes.append(helper.make_node("Gather", [shape, const(np.array(0, np.int64), x)], [n], axis=0))
            nodes.append(helper.make_node("Unsqueeze", [n], [n1], axes=[0]))
            cat = f"{x}_target"
            nodes.append(helper.make_node("Concat", [n1, const(np.array([-1], np.int64), x)], [cat], axis=0))
            nodes.append(helper.make_node("Reshape", [x, cat], list(node.output)))
        elif node.op_type == "Gemm":
            w, b = inits[node.input[1]], inits[node.input[2]]
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            wt = const(np.ascontiguousarray(w.T if trans_b else w), node.output[0])
            mm = node.output[0] + "_mm"
            nodes.append(helper.make_node("MatMul", [node.input[0], wt], [mm]))
            nodes.append(helper.make_node("Add", [mm, const(b, node.output[0])], list(node.output)))
        else:
            nodes.append(node)
            used.update(node.input)
    keep = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(keep)
    keep_inputs = [i for i in g.input if i.name == INPUT or i.name in used]
    del g.input[:]
    g.input.extend(keep_inputs)
    del g.value_info[:]
    model.producer_name = "legacy-converter-test"
    onnx.checker.check_model(model)
    return model


def hand_built(seed: int = 0, classes: int = 10) -> onnx.ModelProto:
    """Opset 9, IR 3: weights made by ConstantOfShape/Reshape/Unsqueeze, Sum residual, LRN, MatMul head."""
    rng = np.random.default_rng(seed)
    c = 8
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []

    def constant(name: str, arr: np.ndarray) -> None:
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name + "_v")))

    def init(name: str, arr: np.ndarray) -> None:
        inits.append(numpy_helper.from_array(arr, name))

    # conv1: weight = Reshape(flat Constant), bias = ConstantOfShape(zeros) + BN as Unsqueeze/Mul/Add
    constant("w1_flat", rng.standard_normal(c * 3 * 9).astype(np.float32) * 0.3)
    constant("w1_shape", np.array([c, 3, 3, 3], np.int64))
    nodes.append(helper.make_node("Reshape", ["w1_flat", "w1_shape"], ["w1"]))
    constant("c_shape", np.array([c], np.int64))
    nodes.append(
        helper.make_node(
            "ConstantOfShape", ["c_shape"], ["b1"], value=numpy_helper.from_array(np.array([0.1], np.float32))
        )
    )
    nodes.append(helper.make_node("Conv", [INPUT, "w1", "b1"], ["conv1"], pads=[1, 1, 1, 1], name="conv1"))
    constant("s1", (rng.random(c) + 0.5).astype(np.float32))
    constant("t1", (rng.standard_normal(c) * 0.1).astype(np.float32))
    nodes.append(helper.make_node("Unsqueeze", ["s1"], ["s1u"], axes=[1, 2]))
    nodes.append(helper.make_node("Unsqueeze", ["t1"], ["t1u"], axes=[1, 2]))
    nodes.append(helper.make_node("Mul", ["conv1", "s1u"], ["bn1m"]))
    nodes.append(helper.make_node("Add", ["bn1m", "t1u"], ["bn1"]))
    nodes.append(helper.make_node("Relu", ["bn1"], ["relu1"]))
    # conv2 (initializer weights, also graph inputs) + BatchNormalization, then a Sum residual
    init("w2", rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.2)
    nodes.append(helper.make_node("Conv", ["relu1", "w2"], ["conv2"], pads=[1, 1, 1, 1], name="conv2"))
    for name, arr in (
        ("g2", rng.random(c) + 0.5),
        ("be2", rng.standard_normal(c) * 0.1),
        ("m2", rng.standard_normal(c) * 0.1),
        ("v2", rng.random(c) + 0.5),
    ):
        init(name, arr.astype(np.float32))
    nodes.append(helper.make_node("BatchNormalization", ["conv2", "g2", "be2", "m2", "v2"], ["bn2"], epsilon=1e-5))
    nodes.append(helper.make_node("Sum", ["bn2", "relu1"], ["res"]))
    nodes.append(helper.make_node("Relu", ["res"], ["relu2"]))
    nodes.append(helper.make_node("LRN", ["relu2"], ["lrn"], size=3, alpha=1e-4, beta=0.75, bias=1.0))
    nodes.append(helper.make_node("GlobalAveragePool", ["lrn"], ["pool"]))
    # head: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) -> MatMul -> Add
    nodes.append(helper.make_node("Shape", ["pool"], ["pshape"]))
    constant("zero", np.array(0, np.int64))
    nodes.append(helper.make_node("Gather", ["pshape", "zero"], ["n"], axis=0))
    nodes.append(helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]))
    constant("minus1", np.array([-1], np.int64))
    nodes.append(helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0))
    nodes.append(helper.make_node("Reshape", ["pool", "target"], ["flat"]))
    constant("fc_wt", rng.standard_normal((classes, c)).astype(np.float32))
    nodes.append(helper.make_node("Transpose", ["fc_wt"], ["fc_w"], perm=[1, 0]))
    nodes.append(helper.make_node("MatMul", ["flat", "fc_w"], ["fc"]))
    init("fc_b", (rng.standard_normal(classes) * 0.1).astype(np.float32))
    nodes.append(helper.make_node("Add", ["fc", "fc_b"], [OUTPUT]))

    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, 32, 32])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(
        nodes, "legacy", inputs, [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", classes])], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], producer_name="hand-built-test")
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Node count per op type."""
    out: dict[str, int] = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def batchnorms(model: onnx.ModelProto) -> int:
    """BatchNorms in either spelling: BatchNormalization nodes, plus Mul+Add pairs over per-channel constants."""
    counts = op_counts(model)
    return counts.get("BatchNormalization", 0) + _affine_pairs(model)


def _affine_pairs(model: onnx.ModelProto) -> int:
    """Mul nodes (by a constant) whose only reader is an Add of a constant: BN's unfused spelling."""
    consts = {t.name for t in model.graph.initializer} | {
        o for n in model.graph.node if n.op_type in ("Constant", "Unsqueeze", "ConstantOfShape") for o in n.output
    }
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    count = 0
    for n in model.graph.node:
        if n.op_type != "Mul" or not any(i in consts for i in n.input):
            continue
        r = readers.get(n.output[0], [])
        if len(r) == 1 and r[0].op_type == "Add" and any(i in consts for i in r[0].input):
            count += 1
    return count
