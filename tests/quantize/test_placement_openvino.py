"""The ``openvino`` profile: TensorRT's placement with the types OpenVINO's CPU plugin runs fastest."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from deploykit.artifact import Artifact
from deploykit.quantize.calibrators import CalibConfig, calibrate
from deploykit.quantize.placement import apply_plan, plan_placement, prepare_model
from deploykit.quantize.stats import collect_stats, iter_arrays

from .graphs import concat_block, dense_block, downsample_block, nested_concat, residual_block, stem_block
from .test_placement import dq_fed, run
from .test_speed import quantize_cli

GRAPHS = {
    "residual": (residual_block, "x_res"),
    "downsample": (downsample_block, "x_res"),
    "dense": (dense_block, "x_res"),
    "concat": (concat_block, "x_cat"),
    "nested": (nested_concat, "x_cat"),
    "stem": (stem_block, "x_res"),
}


def quantise(model, profile, x, layout=None):
    model = prepare_model(model)
    plan = plan_placement(model, profile, (), layout)
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x, 8))
    th = calibrate(stats, CalibConfig("max"), asymmetric=profile != "tensorrt")
    return model, plan, stats, apply_plan(model, plan, stats, th)


@pytest.fixture()
def x_res(rng):
    return rng.normal(size=(16, 4, 8, 8)).astype(np.float32)


@pytest.fixture()
def x_cat(rng):
    return rng.normal(size=(16, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("graph", ["concat", "nested"])
def test_pairs_sit_where_the_tensorrt_profile_puts_them(graph, request):
    build, xname = GRAPHS[graph]
    x = request.getfixturevalue(xname)
    _, trt, _, _ = quantise(build(), "tensorrt", x)
    _, ov, _, _ = quantise(build(), "openvino", x)
    assert ov.edges == trt.edges
    assert {t: ov.groups[t] for t in ov.edges} == {t: trt.groups[t] for t in trt.edges}


@pytest.mark.parametrize("graph,add", [("residual", "Add_5"), ("downsample", "Add_6")])
def test_a_residual_add_reads_both_inputs_in_int8(graph, add, x_res):
    build, _ = GRAPHS[graph]
    *_, trt = quantise(build(), "tensorrt", x_res)
    *_, ov = quantise(build(), "openvino", x_res)
    assert sorted(dq_fed(trt, add)) == [False, True]  # TensorRT fuses the conv branch unquantised
    assert dq_fed(ov, add) == [True, True]


def test_a_concat_read_in_float_still_shares_one_scale_over_its_inputs(x_res):
    from deploykit.quantize.placement import group_params

    m, trt, _, _ = quantise(dense_block(), "tensorrt", x_res)
    _, ov, stats, q = quantise(dense_block(), "openvino", x_res)
    cats = [n for n in m.graph.node if n.op_type == "Concat"]
    assert cats
    for n in cats:
        ins = list(n.input)
        assert all(dq_fed(q, n.name)), n.name  # O3: INT8 into every Concat
        assert len({ov.groups[t] for t in ins if t in ov.groups}) == 1  # one scale for all of them
        assert not any((n.name, i) in trt.edges.get(t, ()) for i, t in enumerate(ins))  # T3: none there
    th = calibrate(stats, CalibConfig("max"), asymmetric=True)
    params = group_params(ov, stats, th)
    assert len({params[t] for n in cats for t in n.input if t in params}) == 1


def test_a_max_pool_takes_its_pair_on_its_input_and_runs_in_int8(x_res):
    _, trt, _, _ = quantise(stem_block(), "tensorrt", x_res)
    _, ov, _, q = quantise(stem_block(), "openvino", x_res)
    assert "p" in trt.edges and "r0" not in trt.edges  # TensorRT: behind the pool
    assert "p" not in ov.edges and any(node.startswith("MaxPool") for node, _ in ov.edges["r0"])
    pytest.importorskip("openvino")
    from deploykit.openvino_io import ov_compile

    def pool_precisions(model) -> list[str]:
        runtime = ov_compile(model, threads=1, batch=2).get_runtime_model()
        return [
            op.get_rt_info()["runtimePrecision"].astype(str)
            for op in runtime.get_ordered_ops()
            if op.get_rt_info()["layerType"].astype(str) in ("Pooling", "MaxPool")
        ]

    assert pool_precisions(q) == ["u8"]
    *_, trt_q = quantise(stem_block(), "tensorrt", x_res)
    assert pool_precisions(trt_q) == ["f32"]  # the pair behind the pool leaves it in float here


def test_the_classifier_pool_reads_int8_so_the_last_residual_conv_writes_int8(x_res):
    """O4 on GlobalAveragePool -> Flatten -> Gemm: a pair on the pool's input, its own scale (NNCF's
    placement); without it OpenVINO reorders the shortcut's INT8 output to float for the fused sum."""
    _, trt, _, _ = quantise(downsample_block(), "tensorrt", x_res)
    _, ov, _, q = quantise(downsample_block(), "openvino", x_res)
    assert "r2" not in trt.edges  # TensorRT's rule T4: the pool keeps its input's precision
    assert any(node.startswith("GlobalAveragePool") for node, _ in ov.edges["r2"])
    assert "f" in ov.edges and ov.groups["r2"] != ov.groups["f"]  # channel means keep their own scale
    pytest.importorskip("openvino")
    from deploykit.openvino_io import ov_compile

    def runtime_ops(model) -> list[tuple[str, str, str]]:
        runtime = ov_compile(model, threads=1, batch=2).get_runtime_model()
        return [
            (
                op.get_rt_info()["layerType"].astype(str),
                op.get_rt_info()["runtimePrecision"].astype(str),
                op.get_friendly_name(),
            )
            for op in runtime.get_ordered_ops()
        ]

    ops = runtime_ops(q)
    assert [p for kind, p, _ in ops if kind == "Reduce"] == ["u8"]
    assert not [name for kind, _, name in ops if kind == "Reorder" and "8_f32_" in name]
    *_, trt_q = quantise(downsample_block(), "tensorrt", x_res)
    trt_ops = runtime_ops(trt_q)
    assert [p for kind, p, _ in trt_ops if kind == "Reduce"] == ["f32"]
    assert [name for kind, _, name in trt_ops if kind == "Reorder" and "8_f32_" in name]  # what O4 saves


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_non_negative_tensors_are_uint8_and_signed_ones_int8_at_zero_point_0(graph, request):
    build, xname = GRAPHS[graph]
    x = request.getfixturevalue(xname)
    _, plan, stats, q = quantise(build(), "openvino", x)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    kinds = set()
    for n in q.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        t = n.input[1].removesuffix("_scale")
        zp = inits[n.input[2]]
        assert int(zp) == 0  # symmetric: no zero-point compensation in the kernels
        signed = any(stats[m].min < 0 for m in plan.members(t) if m in stats)
        assert zp.dtype == (np.int8 if signed else np.uint8), t
        kinds.add(zp.dtype)
    assert np.dtype(np.int8) in kinds  # the graph input is signed in every graph here
    if graph in ("residual", "dense", "downsample"):
        assert np.dtype(np.uint8) in kinds  # post-Relu tensors use all 256 levels


def test_weights_are_int8_per_channel_biases_stay_float_and_nothing_is_padded(x_cat):
    m, plan, _, q = quantise(concat_block(), "openvino", x_cat)  # a 3-channel input: ORT pads it
    inits = {i.name: i for i in q.graph.initializer}
    for lay in plan.layers:
        w = inits[f"{lay.name}.weight_int8"]
        assert w.data_type == onnx.TensorProto.INT8
        assert lay.weight not in inits
        assert f"{lay.name}.weight_scale" in inits and len(inits[f"{lay.name}.weight_scale"].dims) == 1
        assert f"{lay.name}.bias_int32" not in inits
    assert not plan.channel_pad
    assert not any(n.op_type == "Pad" for n in q.graph.node)
    _, ort_plan, _, _ = quantise(concat_block(), "onnxruntime", x_cat)
    assert ort_plan.channel_pad  # the contrast: the onnxruntime profile does pad this input


def test_relus_before_a_uint8_pair_are_dropped_without_changing_outputs(x_res):
    model = prepare_model(residual_block())
    plan = plan_placement(model, "openvino")
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x_res, 8))
    th = calibrate(stats, CalibConfig("max"), asymmetric=True)
    dropped = apply_plan(model, plan, stats, th)
    kept = apply_plan(model, plan, stats, th, drop_relus=False)
    n_relu = sum(n.op_type == "Relu" for n in dropped.graph.node)
    assert n_relu < sum(n.op_type == "Relu" for n in kept.graph.node)
    np.testing.assert_array_equal(run(dropped, x_res, "none"), run(kept, x_res, "none"))


@pytest.mark.parametrize("layout,wmax", [("vnni", 127), ("avx2", 64)])
def test_the_cpu_weight_layout_applies(layout, wmax, x_res):
    _, plan, _, q = quantise(residual_block(), "openvino", x_res, layout=layout)
    assert plan.layout == layout and plan.summary()["weight_range"] == [-wmax, wmax]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    for lay in plan.layers:
        assert np.abs(inits[f"{lay.name}.weight_int8"].astype(int)).max() == wmax


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_runs_in_onnx_runtime_close_to_fp32(graph, request):
    build, xname = GRAPHS[graph]
    x = request.getfixturevalue(xname)
    m, _, _, q = quantise(build(), "openvino", x)
    onnx.checker.check_model(q)
    ref = run(m, x)
    for level in ("none", "all"):
        rel = np.linalg.norm(run(q, x, level) - ref) / np.linalg.norm(ref)
        assert 0 < rel < 0.05, (graph, level, rel)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_openvino_runs_it_like_the_onnx_reference(graph, request):
    pytest.importorskip("openvino")
    from deploykit.openvino_io import ov_compile

    build, xname = GRAPHS[graph]
    x = request.getfixturevalue(xname)
    m, _, _, q = quantise(build(), "openvino", x)
    ref = run(m, x)
    out = ov_compile(q, precision="f32", threads=1)({0: x})[0]
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert 0 < rel < 0.05, (graph, rel)


def test_quantize_command_writes_an_openvino_artifact(fp32_artifact, tmp_path):
    out = tmp_path / "q"
    res = quantize_cli(fp32_artifact, out, "--profile", "openvino", "--no-speed-check")
    assert res.exit_code == 0, res.output
    art = Artifact.load(out)
    stage = art.manifest.stages[-1]
    params = stage["params"] if isinstance(stage, dict) else stage.params
    assert art.manifest.precision == "int8"
    assert params["profile"] == "openvino" and params["layout"] in ("vnni", "avx2")
    assert not (out / "calibration.cache").exists()  # TensorRT's implicit-calibration file only


def test_quantize_judges_an_openvino_file_on_openvino(fp32_artifact, tmp_path):
    import importlib.util

    from deploykit.quantize import quantize_artifact

    res = quantize_artifact(
        fp32_artifact.path,
        "fashion-mnist:train[:64]",
        "fashion-mnist:test[:200]",
        method="max",
        profile="openvino",
        out=tmp_path / "q",
    )
    rec = Artifact.load(res.artifact.path).manifest.results["int8_speed"]
    want = "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"
    assert rec["int8_runtime"] == want
    assert res.speed.runtime == want
