"""export_onnx: names, symbolic batch, metadata, checker, opset range, external data, fallbacks."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from deploykit.errors import DeployKitError
from deploykit.export import to_onnx
from deploykit.export.to_onnx import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    check_opset,
    export_onnx,
    get_metadata,
)
from deploykit.parity import check_gate, compare_outputs, parity_inputs


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_dynamic_batch_export_runs_at_any_batch(tiny, tmp_path, run_ort, run_torch):
    path = tmp_path / "m.onnx"
    info = export_onnx(tiny, tiny.data_config, path)
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert dims(model.graph.input[0]) == ["batch", 3, 16, 16]
    assert dims(model.graph.output[0]) == ["batch", 5]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.opset_import[0].version == DEFAULT_OPSET == info.opset
    assert info.exporter == "torchscript" and info.batch.dynamic
    assert info.inputs[0].shape == ["batch", 3, 16, 16] and info.outputs[0].shape == ["batch", 5]
    for batch in (1, 3):
        x = parity_inputs(tiny.data_config, batch, seed=batch)
        r = compare_outputs(run_torch(tiny, x), run_ort(path, x))
        assert check_gate(r, "fp32") == [], r


def test_metadata_props(tiny, tmp_path):
    import deploykit

    path = tmp_path / "m.onnx"
    export_onnx(tiny, tiny.data_config, path, model_name="tinynet")
    meta = get_metadata(onnx.load(str(path)))
    assert meta["deploykit.model"] == "tinynet"
    assert meta["deploykit.version"] == deploykit.__version__
    assert meta["deploykit.precision"] == "fp32"
    assert json.loads(meta["deploykit.data_config"]) == tiny.data_config.to_dict()


def test_fixed_batch_and_static_default(tiny, tmp_path, run_ort):
    fixed = tmp_path / "b4.onnx"
    info = export_onnx(tiny, tiny.data_config, fixed, batch=4)
    assert dims(onnx.load(str(fixed)).graph.input[0]) == [4, 3, 16, 16]
    assert not info.batch.dynamic and info.batch.max == 4
    assert run_ort(fixed, parity_inputs(tiny.data_config, 4)).shape == (4, 5)
    static = tmp_path / "b1.onnx"
    export_onnx(tiny, tiny.data_config, static, dynamic_batch=False)
    assert dims(onnx.load(str(static)).graph.input[0]) == [1, 3, 16, 16]


def test_passes_full_checker_and_strict_shape_inference(tiny, tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(tiny, tiny.data_config, path, opset=MIN_OPSET)
    onnx.checker.check_model(str(path), full_check=True)
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    assert inferred.opset_import[0].version == MIN_OPSET


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1, 7, 99])
def test_opset_out_of_range_is_a_one_line_error(tiny, tmp_path, opset):
    with pytest.raises(DeployKitError) as e:
        export_onnx(tiny, tiny.data_config, tmp_path / "m.onnx", opset=opset)
    msg = str(e.value)
    assert f"opset {opset} is out of range" in msg and "\n" not in msg
    assert not list(tmp_path.iterdir())


def test_check_opset_values():
    assert check_opset(None) == DEFAULT_OPSET
    assert check_opset(MAX_OPSET) == MAX_OPSET
    with pytest.raises(DeployKitError, match="not an integer"):
        check_opset("17")  # type: ignore[arg-type]


def test_external_data_when_over_the_limit(tiny, tmp_path, monkeypatch, run_ort, run_torch):
    monkeypatch.setattr(to_onnx, "EXTERNAL_DATA_THRESHOLD", 0)  # pretend the model is > 2 GB
    path = tmp_path / "model.onnx"
    info = export_onnx(tiny, tiny.data_config, path)
    assert info.external_data == "model.onnx.data"
    data = tmp_path / "model.onnx.data"
    assert data.is_file() and data.stat().st_size > 1000
    from onnx.external_data_helper import uses_external_data

    inits = onnx.load(str(path), load_external_data=False).graph.initializer
    assert any(uses_external_data(t) for t in inits)  # the big weights left the protobuf
    assert all(uses_external_data(t) or t.ByteSize() < 1100 for t in inits)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    x = parity_inputs(tiny.data_config, 2)
    assert check_gate(compare_outputs(run_torch(tiny, x), run_ort(path, x)), "fp32") == []


def test_falls_back_to_dynamo_when_torchscript_fails(tiny, tmp_path, monkeypatch, run_ort, run_torch):
    def broken(*a, **k):
        raise RuntimeError("legacy exporter removed")

    monkeypatch.setattr(to_onnx, "_export_torchscript", broken)
    path = tmp_path / "m.onnx"
    info = export_onnx(tiny, tiny.data_config, path)
    assert info.exporter == "dynamo"
    model = onnx.load(str(path))
    assert dims(model.graph.input[0]) == ["batch", 3, 16, 16]
    assert [o.name for o in model.graph.output] == ["logits"]
    x = parity_inputs(tiny.data_config, 3)
    assert check_gate(compare_outputs(run_torch(tiny, x), run_ort(path, x)), "fp32") == []


def test_exporter_failure_names_the_model(tiny, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(to_onnx, "_export_torchscript", broken)
    monkeypatch.setattr(to_onnx, "_export_dynamo", broken)
    with pytest.raises(DeployKitError) as e:
        export_onnx(tiny, tiny.data_config, tmp_path / "m.onnx", model_name="tinynet")
    msg = str(e.value)
    assert msg.startswith("ONNX export of tinynet failed") and "torchscript" in msg and "dynamo" in msg
    assert "\n" not in msg and "second line" not in msg
    assert not list(tmp_path.iterdir())  # the exporter's scratch directory is gone


def test_multi_output_model_is_refused(tmp_path):
    class Two(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    from deploykit.data.config import DataConfig

    cfg = DataConfig(input_size=(3, 8, 8), num_classes=3)
    with pytest.raises(DeployKitError, match="expected one input 'input' and one output 'logits'"):
        export_onnx(Two(), cfg, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_num_classes_mismatch_is_refused(tiny, tmp_path):
    cfg = tiny.data_config.replace(num_classes=7)
    with pytest.raises(DeployKitError, match=r"output shape \['batch', 5\] does not match .* 7 classes"):
        export_onnx(tiny, cfg, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())  # the file that failed its check is removed


def test_missing_output_folder(tiny, tmp_path):
    with pytest.raises(DeployKitError, match="cannot write the ONNX file there"):
        export_onnx(tiny, tiny.data_config, tmp_path / "no" / "m.onnx")


def test_bad_batch_and_exporter(tiny, tmp_path):
    with pytest.raises(DeployKitError, match="batch 0"):
        export_onnx(tiny, tiny.data_config, tmp_path / "m.onnx", batch=0)
    with pytest.raises(DeployKitError, match="exporter 'jit'"):
        export_onnx(tiny, tiny.data_config, tmp_path / "m.onnx", exporter="jit")


def test_bn_is_folded_and_output_still_matches(tiny, tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(tiny, tiny.data_config, path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 2
    assert np.isfinite(parity_inputs(tiny.data_config, 1)).all()


def test_batch_profile_defaults_and_limits():
    from deploykit.export.to_onnx import DEFAULT_MAX_BATCH, batch_profile

    p = batch_profile(None, True)
    assert (p.min, p.opt, p.max, p.dynamic) == (1, 1, DEFAULT_MAX_BATCH, True)
    p = batch_profile(None, True, opt_batch=8, max_batch=256)
    assert (p.min, p.opt, p.max, p.dynamic) == (1, 8, 256, True)
    p = batch_profile(4, False)
    assert (p.min, p.opt, p.max, p.dynamic) == (4, 4, 4, False)
    with pytest.raises(DeployKitError, match="opt batch 64 is larger than max batch 16"):
        batch_profile(None, True, opt_batch=64, max_batch=16)
    with pytest.raises(DeployKitError, match="apply to a dynamic batch"):
        batch_profile(4, False, max_batch=8)
    with pytest.raises(DeployKitError, match="max batch 0 must be a positive integer"):
        batch_profile(None, True, max_batch=0)
