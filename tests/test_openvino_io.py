"""ov_compile for a static batch: same numbers as the dynamic compile, the shape recorded, bad shapes refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from precision_models import fp32_model
from tiny_models import CLASSES, SIZE, tiny_onnx

from deploykit.errors import DeployKitError
from deploykit.openvino_io import (
    CompiledByBatch,
    compiled_config,
    declared_inputs,
    ov_compile,
    ov_read,
    static_input_shapes,
)

ov = pytest.importorskip("openvino")


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)


def _run(compiled, x: np.ndarray) -> np.ndarray:
    return np.array(compiled.create_infer_request().infer({0: x})[0])


def _qdq_model(tmp_path) -> onnx.ModelProto:
    """The tiny graph with deploykit's onnxruntime-profile Q/DQ placement (fixed ranges: milliseconds)."""
    from types import SimpleNamespace

    from deploykit.quantize.placement import apply_plan, plan_placement, prepare_model

    model = prepare_model(fp32_model(tmp_path / "fp32.onnx"))
    plan = plan_placement(model, "onnxruntime")
    stats = {t: SimpleNamespace(min=-4.0, max=4.0) for t in plan.stat_tensors}
    out = apply_plan(model, plan, stats, {t: 4.0 for t in plan.stat_tensors})
    model = out[0] if isinstance(out, tuple) else out
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    return model


@pytest.mark.parametrize("source", ["path", "proto", "bytes"])
def test_static_compile_matches_the_dynamic_one_and_records_its_shape(tmp_path, source):
    path = tiny_onnx(tmp_path / "m.onnx")
    model = {"path": path, "proto": onnx.load(str(path)), "bytes": path.read_bytes()}[source]
    x = _x(3)
    dynamic = ov_compile(model, threads=1)
    static = ov_compile(model, threads=1, batch=3)
    assert compiled_config(dynamic)["input_shape"] == f"[?,3,{SIZE},{SIZE}]"
    assert compiled_config(static)["input_shape"] == [3, 3, SIZE, SIZE]
    assert static.inputs[0].get_partial_shape().is_static
    got, want = _run(static, x), _run(dynamic, x)
    assert got.shape == (3, CLASSES)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_declared_inputs_given_by_the_caller_are_used(tmp_path):
    """The runner passes the inputs it read once; ov_compile fixes the batch of those dims."""
    path = tiny_onnx(tmp_path / "m.onnx")
    inputs = declared_inputs(ov_read(path))
    assert inputs == [("input", [None, 3, SIZE, SIZE])]
    assert compiled_config(ov_compile(path, threads=1, batch=2, inputs=inputs))["input_shape"] == [2, 3, SIZE, SIZE]
    with pytest.raises(DeployKitError, match=r"m\.onnx: input 'input' has shape \?x3x\?x8; a static"):
        ov_compile(path, threads=1, batch=2, inputs=[("input", [None, 3, None, SIZE])])


def test_static_compile_of_a_qdq_model_matches_the_dynamic_one(tmp_path):
    path = tmp_path / "qdq.onnx"
    onnx.save(_qdq_model(tmp_path), str(path))
    x = _x(2, seed=3)
    static = ov_compile(path, threads=1, batch=2)
    assert compiled_config(static)["input_shape"] == [2, 3, SIZE, SIZE]
    got, want = _run(static, x), _run(ov_compile(path, threads=1), x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_an_ir_is_reshaped_to_the_batch(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    xml = tmp_path / "m.xml"
    ov.save_model(ov.Core().read_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    x = _x(5, seed=1)
    static = ov_compile(xml, threads=1, batch=5)
    assert compiled_config(static)["input_shape"] == [5, 3, SIZE, SIZE]
    np.testing.assert_allclose(_run(static, x), _run(ov_compile(onnx_path, threads=1), x), rtol=1e-5, atol=1e-5)


def test_a_dynamic_height_is_refused_in_one_line(tmp_path):
    model = onnx.load(str(tiny_onnx(tmp_path / "m.onnx")))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    path = tmp_path / "dyn-h.onnx"
    onnx.save(model, str(path))
    ov_compile(path, threads=1)  # the dynamic compile still works
    with pytest.raises(DeployKitError, match=r"dyn-h\.onnx: input 'input' has shape \?x3x\?x8; a static") as e:
        ov_compile(path, threads=1, batch=1)
    assert "\n" not in str(e.value)


def test_a_fixed_batch_model_compiles_at_its_batch_only(tmp_path):
    path = tiny_onnx(tmp_path / "b4.onnx", batch=4)
    assert compiled_config(ov_compile(path, threads=1, batch=4))["input_shape"] == [4, 3, SIZE, SIZE]
    with pytest.raises(DeployKitError, match="fixed to batch 4, not 2"):
        ov_compile(path, threads=1, batch=2)
    with pytest.raises(DeployKitError, match="positive integer"):
        ov_compile(path, threads=1, batch=0)


def test_static_input_shapes():
    assert static_input_shapes([("a", [None, 3, 8, 8]), ("b", [None, 4])], 2) == [[2, 3, 8, 8], [2, 4]]
    with pytest.raises(DeployKitError, match="no batch dimension"):
        static_input_shapes([("a", [])], 1)


def test_the_cache_compiles_four_batches_static_and_the_rest_on_one_dynamic_compile(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    compiled_for: list[int | None] = []

    def compile_for(batch: int | None):
        compiled_for.append(batch)
        return ov_compile(path, threads=1, batch=batch)

    cache = CompiledByBatch(compile_for)
    for b in (1, 2, 3, 4, 1):
        cache.get(b)
    assert compiled_for == [1, 2, 3, 4] and not cache.dynamic
    assert cache.config["input_shape"] == [4, 3, SIZE, SIZE] or cache.shapes[4] == [4, 3, SIZE, SIZE]
    _, request = cache.get(5)  # a fifth size: the one dynamic compile, nothing evicted
    cache.get(6)
    cache.get(2)
    assert compiled_for == [1, 2, 3, 4, None] and cache.dynamic
    assert cache.batches == [1, 2, 3, 4]
    assert cache.shapes[2] == [2, 3, SIZE, SIZE]
    assert isinstance(cache.shapes[5], str) and "?" in cache.shapes[5]
    assert np.array(request.infer({0: _x(5)})[0]).shape == (5, CLASSES)
    static = np.array(cache.get(1)[1].infer({0: _x(1)})[0])
    dynamic = np.array(request.infer({0: _x(1)})[0])
    np.testing.assert_allclose(static, dynamic, rtol=1e-5, atol=1e-5)


def test_compile_properties_pass_through_but_never_override_deploykit_settings(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    compiled = ov_compile(path, threads=1, batch=1, properties={"PERF_COUNT": True})
    req = compiled.create_infer_request()
    req.infer({0: _x(1)})
    assert req.profiling_info  # per-node counters are on
    with pytest.raises(DeployKitError, match="INFERENCE_PRECISION_HINT are set by deploykit"):
        ov_compile(path, properties={"INFERENCE_PRECISION_HINT": "bf16"})
