"""``best``: INT8 Q/DQ with FP16 outside the pairs, FP32 kept where FP16 would overflow."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deploykit.artifact import Artifact
from deploykit.errors import DeployKitError
from deploykit.quantize import QuantizeOptions, quantize_artifact
from deploykit.quantize.calibrators import CalibConfig, calibrate
from deploykit.quantize.fp16 import FP16_MAX, overflow_nodes, to_fp16_outside_qdq
from deploykit.quantize.placement import apply_plan, plan_placement, prepare_model
from deploykit.quantize.stats import collect_stats, iter_arrays

from .graphs import residual_block


def _run(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _int8(model, x):
    m = prepare_model(model)
    plan = plan_placement(m, "tensorrt")
    names = [o for n in m.graph.node for o in n.output]
    stats = collect_stats(m, list(dict.fromkeys(plan.stat_tensors + names)), iter_arrays(x, 8))
    return m, apply_plan(m, plan, stats, calibrate(stats, CalibConfig("max"))), stats


def _dtypes(model) -> dict[str, int]:
    inits = {i.name: i.data_type for i in model.graph.initializer}
    return {n.name: inits[n.input[1]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}


def test_fp16_outside_has_fp16_scales_opset_19_and_float32_io(rng):
    x = rng.normal(size=(16, 4, 8, 8)).astype(np.float32)
    m, q, stats = _int8(residual_block(), x)
    q16, kept = to_fp16_outside_qdq(q, stats)
    onnx.checker.check_model(q16)
    assert max(o.version for o in q16.opset_import if o.domain in ("", "ai.onnx")) >= 19
    scales = _dtypes(q16)
    weights = {n for n in scales if ".weight_" in n}
    assert weights and {scales[n] for n in weights} == {onnx.TensorProto.FLOAT}  # weight scales stay FP32
    assert {scales[n] for n in set(scales) - weights} == {onnx.TensorProto.FLOAT16}  # activation scales
    prod = {o: n for n in q16.graph.node for o in n.output}
    conv = next(n for n in q16.graph.node if n.op_type == "Conv")
    assert prod[conv.input[1]].op_type == "Cast"  # FP16 weights into the FP16 conv
    for vi in list(q16.graph.input) + list(q16.graph.output):
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # the runtime contract holds
    gemm = next(n.name for n in m.graph.node if n.op_type == "Gemm")
    assert kept == [gemm]  # the logits stay FP32; nothing here comes near FP16's range
    convs = [n for n in q16.graph.node if n.op_type == "Conv"]
    inits = {i.name: i.data_type for i in q16.graph.initializer}
    assert all(inits[c.input[2]] == onnx.TensorProto.FLOAT16 for c in convs)  # FP16 layers
    ref, out = _run(q, x), _run(q16, x)
    assert np.abs(out - ref).max() < 2e-2 * np.abs(ref).max()


def test_activation_beyond_fp16_range_stays_fp32(rng):
    x = rng.normal(size=(16, 4, 8, 8)).astype(np.float32)
    model = residual_block()
    for init in model.graph.initializer:  # the middle conv writes ~1e5: beyond FP16's 65504
        if init.name == "w1":
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * 3e4, "w1"))
        if init.name == "w2":
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) / 3e4, "w2"))
    m, q, stats = _int8(model, x)
    c1 = next(n for n in m.graph.node if n.output[0] == "c1")
    assert stats["c1"].amax > FP16_MAX  # the test really plants an overflow
    assert c1.name in overflow_nodes(q, stats)
    q16, kept = to_fp16_outside_qdq(q, stats)
    assert c1.name in kept
    out = _run(q16, x)
    assert np.isfinite(out).all()
    ref = _run(q, x)
    assert np.abs(out - ref).max() < 5e-2 * np.abs(ref).max()


def test_high_precision_fp16_needs_the_tensorrt_profile():
    with pytest.raises(DeployKitError, match="needs --profile tensorrt"):
        QuantizeOptions(profile="onnxruntime", high_precision_dtype="fp16").checked()
    with pytest.raises(DeployKitError, match="not one of"):
        QuantizeOptions(profile="tensorrt", high_precision_dtype="bf16").checked()


def test_best_artifact_is_int8_with_fp16_outside_and_gated(fp32_artifact, tmp_path):
    out = quantize_artifact(
        fp32_artifact.path,
        "fashion-mnist:train[:128]",
        "fashion-mnist:test[:600]",
        out=tmp_path / "best",
        profile="tensorrt",
        method="max",
        num_images=128,
        min_images=16,
        high_precision_dtype="fp16",
    )
    art = Artifact.load(out.path)
    m = art.manifest
    assert m.precision == "int8" and m.opset >= 19  # the contract: still an INT8 artifact
    stage = m.stages[-1]
    assert stage["params"]["high_precision_dtype"] == "fp16" and stage["params"]["profile"] == "tensorrt"
    hp = m.results["quantize"]["high_precision"]
    assert hp["dtype"] == "fp16" and hp["passed"]
    acc = m.results["accuracy"]
    assert acc["top1"] == hp["top1"] and acc["passed"]
    assert acc["top1"] >= 0.995 * acc["fp32_top1"]
    q = onnx.load(str(art.main_path))
    assert onnx.TensorProto.FLOAT16 in set(_dtypes(q).values())
    assert q.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
