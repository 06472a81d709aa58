"""Q/DQ placement rules on tiny graphs: what TensorRT and ONNX Runtime each need."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deploykit.errors import DeployKitError
from deploykit.quantize.calibrators import CalibConfig, calibrate
from deploykit.quantize.placement import (apply_plan, count_ops, plan_placement, prepare_model,
                                          resolve_keep)
from deploykit.quantize.stats import collect_stats, iter_arrays

from .graphs import concat_block, residual_block


def quantise(model, profile, x, keep=(), method="max"):
    model = prepare_model(model)
    plan = plan_placement(model, profile, resolve_keep(model, keep))
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x, 8))
    th = calibrate(stats, CalibConfig(method), asymmetric=profile == "onnxruntime")
    return model, plan, apply_plan(model, plan, stats, th)


def qdq_scales(q) -> dict[str, float]:
    """tensor -> scale of the QuantizeLinear reading it."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in q.graph.node
            if n.op_type == "QuantizeLinear" and inits[n.input[1]].ndim == 0}


def producer_of_input(q, node_name: str, idx: int):
    prod = {o: n for n in q.graph.node for o in n.output}
    node = next(n for n in q.graph.node if n.name == node_name)
    return prod.get(node.input[idx])


def run(model, x, level="all"):
    so = ort.SessionOptions()
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.fixture()
def x_res(rng):
    return rng.normal(size=(16, 4, 8, 8)).astype(np.float32)


@pytest.fixture()
def x_cat(rng):
    return rng.normal(size=(16, 3, 8, 8)).astype(np.float32)


def test_tensorrt_residual_add_has_qdq_on_both_inputs(x_res):
    m, plan, q = quantise(residual_block(), "tensorrt", x_res)
    add = next(n for n in m.graph.node if n.op_type == "Add").name
    for idx in (0, 1):
        dq = producer_of_input(q, add, idx)
        assert dq is not None and dq.op_type == "DequantizeLinear", f"Add input {idx} is not dequantised"
    # symmetric int8 everywhere: every zero point is 0 and int8
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear":
            zp = next(i for i in q.graph.initializer if i.name == n.input[2])
            assert zp.data_type == onnx.TensorProto.INT8
            assert not onnx.numpy_helper.to_array(zp).any()


def test_tensorrt_weighted_ops_get_weight_and_input_qdq_but_no_output_qdq(x_res):
    m, plan, q = quantise(residual_block(), "tensorrt", x_res)
    convs = [n for n in q.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(convs) == 4 and len(plan.layers) == 4
    consumers = {}
    for n in q.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n.op_type)
    for c in convs:
        assert producer_of_input(q, c.name, 0).op_type == "DequantizeLinear"
        wdq = producer_of_input(q, c.name, 1)
        assert wdq.op_type == "DequantizeLinear"
        assert any(a.name == "axis" and a.i == 0 for a in wdq.attribute)  # per output channel
        if len(c.input) > 2:  # TensorRT wants the bias in FP32
            assert producer_of_input(q, c.name, 2) is None
        # the conv's own output is not quantised (TensorRT fuses the conv with what follows),
        # except where it feeds a residual Add, whose inputs are both quantised
        if not any(n.op_type == "Add" and c.output[0] in n.input for n in m.graph.node):
            assert "QuantizeLinear" not in consumers.get(c.output[0], []), c.name


def test_tensorrt_pooling_passes_the_scale_through(x_res):
    m, plan, q = quantise(residual_block(), "tensorrt", x_res)
    scales = qdq_scales(q)
    pool = next(n for n in m.graph.node if n.op_type == "MaxPool")
    gap = next(n for n in m.graph.node if n.op_type == "GlobalAveragePool")
    flat = next(n for n in m.graph.node if n.op_type == "Flatten")
    # Gemm input (flatten output) is quantised, so the chain back through the pools shares its scale
    chain = [flat.output[0], gap.output[0], pool.output[0], pool.input[0]]
    assert all(t in scales for t in chain)
    assert len({scales[t] for t in chain}) == 1
    assert producer_of_input(q, pool.name, 0).op_type == "DequantizeLinear"


def test_tensorrt_concat_inputs_and_output_share_one_scale(x_cat):
    m, plan, q = quantise(concat_block(), "tensorrt", x_cat)
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    scales = qdq_scales(q)
    members = list(cat.input) + [cat.output[0]]
    assert all(t in scales for t in members)
    assert len({scales[t] for t in members}) == 1
    assert plan.groups[cat.input[0]] == plan.groups[cat.input[1]]
    # the average pool after it passes that same scale through
    pool = next(n for n in m.graph.node if n.op_type == "AveragePool")
    assert scales[pool.output[0]] == scales[cat.output[0]]


def test_onnxruntime_concat_keeps_each_input_range_and_fuses(x_cat):
    m, plan, q = quantise(concat_block(), "onnxruntime", x_cat)
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    scales = qdq_scales(q)
    assert all(t in scales for t in list(cat.input) + [cat.output[0]])
    assert scales[cat.input[0]] != scales[cat.input[1]]  # branch b has 5x the range: own scale
    from deploykit.quantize.placement import ort_fusion

    fused = ort_fusion(q)
    assert fused.get("QLinearConcat") == 1 and fused.get("QLinearAveragePool") == 1, fused
    assert fused.get("QLinearConv") == 2, fused  # the last conv writes the FP32 model output
    assert not any(fused.get(op, 0) for op in ("FusedConv", "AveragePool", "Relu")), fused


def test_onnxruntime_profile_layout_and_fusion(x_res, tmp_path):
    m, plan, q = quantise(residual_block(), "onnxruntime", x_res)
    inits = {i.name: i for i in q.graph.initializer}
    # weights stored as int8, activations as uint8, biases as int32
    for lay in plan.layers:
        assert inits[f"{lay.name}.weight_int8"].data_type == onnx.TensorProto.INT8
        assert inits[f"{lay.name}.bias_int32"].data_type == onnx.TensorProto.INT32
        assert lay.weight not in inits  # FP32 weight dropped: the file shrinks
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear":
            assert inits[n.input[2]].data_type == onnx.TensorProto.UINT8
    # ONNX Runtime fuses the QDQ pairs into integer kernels: measure it on the optimised graph
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops = count_ops(onnx.load(so.optimized_model_filepath))
    assert ops.get("QLinearConv", 0) == 3, ops
    assert ops.get("QLinearAdd", 0) == 1, ops
    assert ops.get("Conv", 0) == 0 and ops.get("Relu", 0) == 0, ops  # Relus absorbed by zero points
    assert ops.get("DequantizeLinear", 0) <= 1, ops


@pytest.mark.parametrize("profile", ["tensorrt", "onnxruntime"])
@pytest.mark.parametrize("graph", ["residual", "concat"])
def test_qdq_graph_runs_and_stays_close_to_fp32(profile, graph, x_res, x_cat):
    model, x = (residual_block(), x_res) if graph == "residual" else (concat_block(), x_cat)
    m, plan, q = quantise(model, profile, x)
    onnx.checker.check_model(q)
    ref = run(m, x)
    for level in ("none", "all"):
        out = run(q, x, level)
        rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
        assert rel < 0.05, (profile, graph, level, rel)
        assert rel > 0  # it really is quantised


def test_kept_layer_gets_no_qdq(x_res):
    m, plan, q = quantise(residual_block(), "onnxruntime", x_res, keep=["last"])
    gemm = next(n for n in q.graph.node if n.op_type == "Gemm")
    assert gemm.name in plan.kept
    assert producer_of_input(q, gemm.name, 0).op_type == "Flatten"  # FP32 input
    assert gemm.input[1] == "wf"  # FP32 weight
    assert all(lay.name != gemm.name for lay in plan.layers)
    m, plan, q = quantise(residual_block(), "tensorrt", x_res, keep=["first"])
    first = next(n for n in q.graph.node if n.op_type == "Conv")
    assert first.input[0] == "x" and first.input[1] == "w0"


def test_keep_pattern_matching_nothing_is_an_error():
    m = prepare_model(residual_block())
    with pytest.raises(DeployKitError, match="matches no node"):
        resolve_keep(m, ["*does-not-exist*"])


def test_old_opset_is_refused():
    m = residual_block()
    m.opset_import[0].version = 11
    with pytest.raises(DeployKitError, match="opset 11"):
        prepare_model(m)


def test_unknown_profile_is_refused():
    with pytest.raises(DeployKitError, match="profile 'tflite'"):
        plan_placement(prepare_model(residual_block()), "tflite")


def test_bias_that_would_overflow_int32_widens_the_weight_scale(x_res):
    # vanishing activations (e.g. an untrained net deep down) make x_scale * w_scale tiny, so
    # bias / (x_scale * w_scale) overflows int32: clipped, it would silently zero the logits
    x = x_res * 1e-9
    m, plan, q = quantise(residual_block(), "onnxruntime", x)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    first = plan.layers[0].name
    assert np.abs(inits[f"{first}.bias_int32"].astype(np.int64)).max() < 2**31 - 1
    ref = run(m, x)
    for level in ("none", "all"):
        out = run(q, x, level)
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.05, level
