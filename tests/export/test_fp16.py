"""FP16 conversion: float16 weights, float32 I/O kept by default, runs on ONNX Runtime CPU, passes the gate."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from deploykit.errors import DeployKitError
from deploykit.export.fp16 import convert_to_fp16, is_fp16
from deploykit.export.to_onnx import export_onnx
from deploykit.parity import check_gate, compare_outputs, parity_inputs

F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture
def fp32_model(tiny, tmp_path):
    path = tmp_path / "fp32.onnx"
    export_onnx(tiny, tiny.data_config, path)
    return onnx.load(str(path))


def io_types(model: onnx.ModelProto) -> tuple[int, int]:
    return (model.graph.input[0].type.tensor_type.elem_type, model.graph.output[0].type.tensor_type.elem_type)


def test_keeps_float32_io_and_passes_the_fp16_gate(tiny, fp32_model, tmp_path, run_ort, run_torch):
    half = convert_to_fp16(fp32_model)
    onnx.checker.check_model(half, full_check=True)
    assert io_types(half) == (F32, F32)
    assert is_fp16(half) and not is_fp16(fp32_model)
    assert all(t.data_type != F32 for t in half.graph.initializer)
    ops = [n.op_type for n in half.graph.node]
    assert ops[0] == "Cast" and ops[-1] == "Cast"  # casts only at the boundaries
    assert ops.count("Cast") == 2
    path = tmp_path / "fp16.onnx"
    onnx.save(half, str(path))
    weight_bytes = lambda m: sum(len(t.raw_data) for t in m.graph.initializer)  # noqa: E731
    assert weight_bytes(half) == pytest.approx(weight_bytes(fp32_model) / 2, abs=16)
    x = parity_inputs(tiny.data_config, 8)
    out = run_ort(path, x)
    assert out.dtype == np.float32
    r = compare_outputs(run_torch(tiny, x), out)
    assert check_gate(r, "fp16") == [], r
    assert r.max_abs > 0  # it really computed in half precision


def test_fp16_io_option(tiny, fp32_model, tmp_path, run_ort, run_torch):
    half = convert_to_fp16(fp32_model, keep_io_types=False)
    assert io_types(half) == (F16, F16)
    assert "Cast" not in [n.op_type for n in half.graph.node]
    path = tmp_path / "fp16io.onnx"
    onnx.save(half, str(path))
    x = parity_inputs(tiny.data_config, 4)
    out = run_ort(path, x.astype(np.float16))
    assert out.dtype == np.float16
    assert check_gate(compare_outputs(run_torch(tiny, x), out.astype(np.float32)), "fp16") == []


def test_input_model_is_not_modified(fp32_model):
    before = fp32_model.SerializeToString()
    convert_to_fp16(fp32_model)
    assert fp32_model.SerializeToString() == before


def test_converting_twice_is_refused(fp32_model):
    half = convert_to_fp16(fp32_model)
    with pytest.raises(DeployKitError, match="already float16"):
        convert_to_fp16(half)


def test_op_block_list_keeps_ops_in_float32(fp32_model):
    half = convert_to_fp16(fp32_model, op_block_list=["Gemm"])
    gemm = next(n for n in half.graph.node if n.op_type == "Gemm")
    weights = {t.name: t.data_type for t in half.graph.initializer}
    assert all(weights[i] == F32 for i in gemm.input if i in weights)
