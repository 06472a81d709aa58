"""Q/DQ placement rules on tiny graphs: what TensorRT and ONNX Runtime each need."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deploykit.errors import DeployKitError
from deploykit.quantize.calibrators import CalibConfig, calibrate
from deploykit.quantize.placement import apply_plan, count_ops, plan_placement, prepare_model, resolve_keep
from deploykit.quantize.stats import collect_stats, iter_arrays

from .graphs import (
    concat_block,
    concat_with_shared_branch,
    dense_block,
    downsample_block,
    nested_concat,
    residual_block,
)


def quantise(model, profile, x, keep=(), method="max"):
    model = prepare_model(model)
    plan = plan_placement(model, profile, resolve_keep(model, keep))
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x, 8))
    th = calibrate(stats, CalibConfig(method), asymmetric=profile == "onnxruntime")
    return model, plan, apply_plan(model, plan, stats, th)


def qdq_scales(q) -> dict[str, float]:
    """tensor -> scale of the QuantizeLinear reading it."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    return {
        n.input[0]: float(inits[n.input[1]])
        for n in q.graph.node
        if n.op_type == "QuantizeLinear" and inits[n.input[1]].ndim == 0
    }


def producer_of_input(q, node_name: str, idx: int):
    prod = {o: n for n in q.graph.node for o in n.output}
    node = next(n for n in q.graph.node if n.name == node_name)
    return prod.get(node.input[idx])


def fused_model(q):
    """The graph ONNX Runtime's CPU provider runs for ``q`` (extended optimisation level)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        so.optimized_model_filepath = os.path.join(tmp, "fused.onnx")
        ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath)


def concat_copies(fused) -> list[bool]:
    """Per input of the (single) QLinearConcat: True where its scale and zero point equal the
    output's, which ORT's kernel runs as a memcpy rather than a lookup-table requantisation."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in fused.graph.initializer}
    node = next(n for n in fused.graph.node if n.op_type == "QLinearConcat")
    y_scale, y_zp = inits[node.input[0]], inits[node.input[1]]
    triples = [node.input[i : i + 3] for i in range(2, len(node.input), 3)]
    return [bool(inits[s] == y_scale and inits[z] == y_zp) for _, s, z in triples]


def run(model, x, level="all"):
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[level]
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.fixture()
def x_res(rng):
    return rng.normal(size=(16, 4, 8, 8)).astype(np.float32)


@pytest.fixture()
def x_cat(rng):
    return rng.normal(size=(16, 3, 8, 8)).astype(np.float32)


def dq_fed(q, node_name: str) -> list[bool]:
    """Per input of a node: whether a DequantizeLinear writes it."""
    prod = {o: n for n in q.graph.node for o in n.output}
    node = next(n for n in q.graph.node if n.name == node_name)
    return [t in prod and prod[t].op_type == "DequantizeLinear" for t in node.input]


def test_tensorrt_residual_add_quantises_the_identity_input_only(x_res):
    m, plan, q = quantise(residual_block(), "tensorrt", x_res)
    add = next(n for n in m.graph.node if n.op_type == "Add")
    # input 0 is the conv branch, which TensorRT fuses into the conv (Conv+Add+ReLU): no Q/DQ,
    # else the conv writes INT8 and the fusion breaks; input 1 is the identity (r0)
    assert dq_fed(q, add.name) == [False, True]
    assert producer_of_input(q, add.name, 0).op_type == "Conv"
    # symmetric int8 everywhere: every zero point is 0 and int8
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear":
            zp = next(i for i in q.graph.initializer if i.name == n.input[2])
            assert zp.data_type == onnx.TensorProto.INT8
            assert not onnx.numpy_helper.to_array(zp).any()


def test_tensorrt_projection_shortcut_is_quantised_and_the_main_branch_fused(rng):
    x = rng.normal(size=(16, 4, 8, 8)).astype(np.float32)
    m, plan, q = quantise(downsample_block(), "tensorrt", x)
    add = next(n for n in m.graph.node if n.op_type == "Add")
    # both inputs are conv outputs: the main branch (c2, farther from the common ancestor r0)
    # is fused into its conv, the 1x1 shortcut conv writes INT8 for the Add's second input
    assert dq_fed(q, add.name) == [False, True]
    assert producer_of_input(q, add.name, 0).name == next(n.name for n in m.graph.node if n.output[0] == "c2")
    # swapping the Add's inputs swaps the decision: it follows the graph, not the input order
    swapped = onnx.ModelProto()
    swapped.CopyFrom(downsample_block())
    sw_add = next(n for n in swapped.graph.node if n.op_type == "Add")
    sw_add.input[0], sw_add.input[1] = sw_add.input[1], sw_add.input[0]
    m2, _, q2 = quantise(swapped, "tensorrt", x)
    assert dq_fed(q2, next(n for n in m2.graph.node if n.op_type == "Add").name) == [True, False]


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
        # no conv output is quantised, the residual branch included (TensorRT fuses what follows)
        assert "QuantizeLinear" not in consumers.get(c.output[0], []), c.name


def test_tensorrt_pooling_gets_no_pair_of_its_own(x_res):
    m, plan, q = quantise(residual_block(), "tensorrt", x_res)
    pool = next(n for n in m.graph.node if n.op_type == "MaxPool")
    gap = next(n for n in m.graph.node if n.op_type == "GlobalAveragePool")
    flat = next(n for n in m.graph.node if n.op_type == "Flatten")
    quantised = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    # relu -> maxpool -> GAP -> flatten -> gemm: only the Gemm's input carries a pair; one on a
    # pool's input would only add a reformat (nothing else reads the relu in INT8 here)
    assert flat.output[0] in quantised
    assert not quantised & {pool.input[0], pool.output[0], gap.output[0]}
    assert producer_of_input(q, pool.name, 0).op_type == "Relu"


def test_tensorrt_pool_shares_the_scale_of_a_quantised_input(x_cat):
    # Concat -> AveragePool -> Conv: the Concat is read in INT8 (through the pool), so its inputs
    # are quantised at one scale, and the pool's output takes that same scale (no requantisation)
    m, plan, q = quantise(concat_block(), "tensorrt", x_cat)
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    pool = next(n for n in m.graph.node if n.op_type == "AveragePool")
    scales = qdq_scales(q)
    members = list(cat.input) + [pool.output[0]]
    assert all(t in scales for t in members)
    assert len({scales[t] for t in members}) == 1
    assert cat.output[0] not in scales  # the Concat of dequantised inputs needs no pair of its own
    assert plan.groups[cat.input[0]] == plan.groups[cat.input[1]] == plan.groups[pool.output[0]]


def test_tensorrt_dense_block_concat_feeding_batchnorm_gets_no_qdq(rng):
    x = rng.normal(size=(16, 4, 8, 8)).astype(np.float32)
    m, plan, q = quantise(dense_block(), "tensorrt", x)
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    # BatchNormalization reads the Concat in float: INT8 inputs would only add reformats
    assert dq_fed(q, cat.name) == [False, False]
    quantised = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert cat.output[0] not in quantised
    # the conv after BN -> Relu still reads INT8, and the first conv's output r0 is quantised
    # for the second conv, while the Concat reads r0 itself
    last = [n for n in m.graph.node if n.op_type == "Conv"][-1]
    assert dq_fed(q, last.name)[:2] == [True, True]
    assert producer_of_input(q, cat.name, 0).op_type == "Relu"


def test_tensorrt_nested_concat_shares_the_outer_scale(x_cat):
    m, plan, q = quantise(nested_concat(), "tensorrt", x_cat)
    inner, outer = [n for n in m.graph.node if n.op_type == "Concat"]
    scales = qdq_scales(q)
    members = [t for t in list(inner.input) + list(outer.input) if t != inner.output[0]]
    assert all(t in scales for t in members)
    assert len({scales[t] for t in members}) == 1
    # the inner Concat's output is already on that grid: a pair there would change nothing
    assert inner.output[0] not in scales and dq_fed(q, outer.name) == [True, False]


def test_onnxruntime_concat_inputs_written_for_it_alone_take_its_scale(x_cat):
    m, plan, q = quantise(concat_block(), "onnxruntime", x_cat)
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    scales = qdq_scales(q)
    members = list(cat.input) + [cat.output[0]]
    assert all(t in scales for t in members)
    # both branches are conv+relu read only by the Concat: the convs write at its scale
    assert len({scales[t] for t in members}) == 1
    assert plan.anchors == {cat.output[0]}
    fused = fused_model(q)
    ops = count_ops(fused)
    assert ops.get("QLinearConcat") == 1 and ops.get("QLinearAveragePool") == 1, ops
    assert ops.get("QLinearConv") == 2, ops  # the last conv writes the FP32 model output
    assert not any(ops.get(op, 0) for op in ("FusedConv", "AveragePool", "Relu")), ops
    assert concat_copies(fused) == [True, True]  # QLinearConcat copies instead of requantising


def test_onnxruntime_shared_scale_comes_from_the_concat_output_alone(x_cat):
    """The group's range is the Concat output's calibrated range, not the union of its members'."""
    from deploykit.quantize.calibrators import asymmetric_params

    model = prepare_model(concat_block())
    plan = plan_placement(model, "onnxruntime")
    cat = next(n for n in model.graph.node if n.op_type == "Concat")
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x_cat, 8))
    th = calibrate(stats, CalibConfig("percentile", percentile=90.0), asymmetric=True)
    q = apply_plan(model, plan, stats, th)
    y = cat.output[0]
    expected, _ = asymmetric_params(max(stats[y].min, -th[y]), min(stats[y].max, th[y]))
    union, _ = asymmetric_params(0.0, max(min(stats[t].max, th[t]) for t in plan.members(y)))
    assert expected != pytest.approx(union)  # the test can tell the two rules apart
    assert all(qdq_scales(q)[t] == pytest.approx(expected) for t in list(cat.input) + [y])


def test_onnxruntime_concat_input_with_another_reader_keeps_its_own_scale(x_cat):
    m, plan, q = quantise(concat_with_shared_branch(), "onnxruntime", x_cat)
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    ra, rb = cat.input
    scales = qdq_scales(q)
    assert scales[rb] == scales[cat.output[0]]  # branch b is read by the Concat alone
    assert scales[ra] != scales[cat.output[0]]  # branch a also feeds the side output
    assert concat_copies(fused_model(q)) == [False, True]
    np.testing.assert_allclose(run(q, x_cat[:4]), run(m, x_cat[:4]), atol=0.25)


def test_onnxruntime_nested_concat_shares_the_outer_scale(x_cat):
    m, plan, q = quantise(nested_concat(), "onnxruntime", x_cat)
    inner, outer = [n for n in m.graph.node if n.op_type == "Concat"]
    scales = qdq_scales(q)
    members = list(inner.input) + list(outer.input)
    assert inner.output[0] in outer.input
    assert len({scales[t] for t in members + [outer.output[0]]}) == 1
    assert plan.anchors == {outer.output[0]}
    fused = fused_model(q)
    assert count_ops(fused).get("QLinearConcat") == 2
    np.testing.assert_allclose(run(q, x_cat[:4]), run(m, x_cat[:4]), atol=0.25)


def test_tensorrt_profile_has_no_anchors(x_cat):
    _, plan, _ = quantise(concat_block(), "tensorrt", x_cat)
    assert plan.anchors == set()


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


@pytest.mark.parametrize(
    ("profile", "graph"),
    [(p, g) for p in ("tensorrt", "onnxruntime") for g in ("residual", "concat")]
    + [("tensorrt", g) for g in ("downsample", "dense", "nested")],
)
def test_qdq_graph_runs_and_stays_close_to_fp32(profile, graph, x_res, x_cat):
    model, x = {
        "residual": (residual_block(), x_res),
        "concat": (concat_block(), x_cat),
        "downsample": (downsample_block(), x_res),
        "dense": (dense_block(), x_res),
        "nested": (nested_concat(), x_cat),
    }[graph]
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


def test_onnxruntime_pads_a_three_channel_input_to_four_without_changing_outputs(x_cat):
    """VNNI multiplies 4 bytes at a time: the stem conv reads a zero-padded 4-channel input."""
    import dataclasses

    model = prepare_model(concat_block())  # input x is [N, 3, 8, 8], read by two convs
    plan = plan_placement(model, "onnxruntime")
    assert plan.channel_pad == {"x": 4}
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x_cat, 8))
    th = calibrate(stats, CalibConfig("max"), asymmetric=True)
    padded = apply_plan(model, plan, stats, th)
    plain = apply_plan(model, dataclasses.replace(plan, channel_pad={}), stats, th)
    pad = next(n for n in padded.graph.node if n.op_type == "Pad")
    assert pad.input[0] == "x"
    readers = [n.op_type for n in padded.graph.node if pad.output[0] in n.input]
    assert readers == ["QuantizeLinear"]  # the padded input is what gets quantised, and nothing else reads it
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in padded.graph.initializer}
    convs_w = [inits[n] for n in inits if n.endswith(".weight_int8") and inits[n].ndim == 4 and inits[n].shape[1] == 4]
    assert len(convs_w) == 2 and all((w[:, 3] == 0).all() for w in convs_w)
    np.testing.assert_array_equal(run(padded, x_cat), run(plain, x_cat))
    assert count_ops(fused_model(padded)).get("QLinearConv") == 2


def test_channel_padding_is_left_out_where_it_does_not_apply(x_res):
    model = prepare_model(residual_block())  # a 4-channel input: already a multiple of 4
    assert plan_placement(model, "onnxruntime").channel_pad == {}
    assert plan_placement(prepare_model(concat_block()), "tensorrt").channel_pad == {}
    model = prepare_model(concat_block())
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    kept = plan_placement(model, "onnxruntime", keep=[first_conv])
    assert kept.channel_pad == {"x": 4}  # the other conv still reads the quantised input
    both = [n.name for n in model.graph.node if n.op_type == "Conv"][:2]
    assert plan_placement(model, "onnxruntime", keep=both).channel_pad == {}  # x is not quantised


def test_channel_padding_needs_a_declared_4d_input():
    model = prepare_model(concat_block())
    model.graph.input[0].type.tensor_type.ClearField("shape")  # rank unknown
    assert plan_placement(model, "onnxruntime").channel_pad == {}


def _cpu(flags: str):
    from deploykit.machine import parse_cpuinfo

    return parse_cpuinfo(
        f"vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: {flags}\n"
    )


@pytest.mark.parametrize(
    "flags, layout",
    [
        ("fpu sse2 avx avx2 fma f16c", "avx2"),  # Zen 1-3: vpmaddubsw saturates, reduced range
        ("avx2 fma avx512f avx512bw avx512_vnni avx512_bf16", "vnni"),  # Zen 4
        ("avx2 fma avx_vnni", "vnni"),  # Alder Lake's AVX-VNNI
        ("", "avx2"),  # unknown: the layout that is exact everywhere
    ],
)
def test_layout_follows_the_cpu(flags, layout):
    from deploykit.quantize.placement import default_layout

    assert default_layout(_cpu(flags)) == layout


@pytest.mark.parametrize("layout, wmax", [("vnni", 127), ("avx2", 64)])
def test_layout_sets_the_weight_range_on_any_cpu(layout, wmax, x_res):
    model = prepare_model(residual_block())
    plan = plan_placement(model, "onnxruntime", layout=layout)
    assert plan.layout == layout and plan.summary()["weight_range"] == [-wmax, wmax]
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x_res, 8))
    q = apply_plan(model, plan, stats, calibrate(stats, CalibConfig("max"), asymmetric=True))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    for lay in plan.layers:  # each output channel's largest weight lands exactly on the range edge
        w = inits[f"{lay.name}.weight_int8"].astype(np.int32)
        per_channel = np.abs(w).reshape(w.shape[0], -1).max(axis=1) if lay.weight_axis == 0 else np.abs(w).max()
        assert (per_channel == wmax).all(), (lay.name, per_channel)
    assert count_ops(fused_model(q)).get("QLinearConv", 0) == 3  # both layouts fuse alike


def test_reduced_range_is_exact_where_full_range_pairs_saturate(x_cat):
    """On the avx2 layout, zero-padding the stem cannot change a result on any CPU."""
    import dataclasses

    model = prepare_model(concat_block())
    plan = plan_placement(model, "onnxruntime", layout="avx2")
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x_cat, 8))
    th = calibrate(stats, CalibConfig("max"), asymmetric=True)
    padded = apply_plan(model, plan, stats, th)
    plain = apply_plan(model, dataclasses.replace(plan, channel_pad={}), stats, th)
    np.testing.assert_array_equal(run(padded, x_cat), run(plain, x_cat))


def test_unknown_layout_is_refused():
    with pytest.raises(DeployKitError, match="INT8 layout 'u8u8'"):
        plan_placement(prepare_model(residual_block()), "onnxruntime", layout="u8u8")


def test_tensorrt_concat_with_a_kept_reader_is_not_quantised(x_cat):
    # the conv after the pool returns to FP32: it must read the float Concat, not quantised inputs
    m, plan, q = quantise(concat_block(), "tensorrt", x_cat, keep=["last"])
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    assert dq_fed(q, cat.name) == [False, False]
    quantised = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert not quantised & {*cat.input, cat.output[0]}


def test_tensorrt_global_average_pool_keeps_its_own_scale(x_res):
    m, plan, q = quantise(residual_block(), "tensorrt", x_res)
    flat = next(n for n in m.graph.node if n.op_type == "Flatten")
    gap = next(n for n in m.graph.node if n.op_type == "GlobalAveragePool")
    assert plan.groups[flat.output[0]] != plan.groups.get(gap.input[0], gap.input[0])
