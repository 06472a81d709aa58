"""OpenVINO in serving: Triton's OpenVINO backend config, and serve's stub running the Predictor on OpenVINO."""

from __future__ import annotations

import dataclasses
import json
import sys
import types

import numpy as np
import pytest
from tiny_models import tiny_artifact

from deploykit.errors import DeployKitError
from deploykit.machine import bf16_refusal
from deploykit.runtime import Predictor
from deploykit.serve.triton_repo import model_config, write_model_repository


def test_triton_openvino_bf16_config(tmp_path):
    art = tiny_artifact(tmp_path / "a")
    model = write_model_repository(art, tmp_path / "repo", backend="openvino-bf16")
    text = model.config_path.read_text()
    assert 'backend: "openvino"' in text and 'default_model_filename: "model.onnx"' in text
    assert "platform:" not in text
    for key, value in (("HINT_BF16", "YES"), ("PERFORMANCE_HINT", "LATENCY"), ("NUM_STREAMS", "1")):
        assert f'key: "{key}"\n  value: {{ string_value: "{value}" }}' in text
    assert (model.version_dir / "model.onnx").is_file()
    assert "instance_group" in text and "KIND_CPU" in text


def test_triton_openvino_refuses_a_float_artifact_it_cannot_pin_to_f32(tmp_path):
    art = tiny_artifact(tmp_path / "a")
    with pytest.raises(DeployKitError, match="cannot pin f32") as e:
        model_config(art.manifest, "tiny", backend="openvino")
    assert "\n" not in str(e.value)
    int8 = dataclasses.replace(art.manifest, precision="int8")
    text, _ = model_config(int8, "tiny", backend="openvino")
    assert 'backend: "openvino"' in text and "HINT_BF16" not in text
    with pytest.raises(DeployKitError, match="CPU instances"):
        model_config(int8, "tiny", backend="openvino", kind="gpu")
    with pytest.raises(DeployKitError, match="not one of"):
        model_config(int8, "tiny", backend="tvm")


def _ov_params(text: str) -> tuple[object, dict[str, str]]:
    """The parameters of a config, parsed by Triton's own model-config protobuf."""
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    return cfg, {k: v.string_value for k, v in cfg.parameters.items()}


def test_triton_openvino_runs_one_static_batch_it_never_errs_on(tmp_path):
    """Triton's OpenVINO backend compiles max_batch_size as a static batch and fails any other batch
    unless padding is on: the default is batch 1 (no batcher), a larger one pads and batches to it."""
    art = tiny_artifact(tmp_path / "a")
    int8 = dataclasses.replace(art.manifest, precision="int8")
    assert int8.batch.dynamic and int8.batch.max > 1
    text, top = model_config(int8, "tiny", backend="openvino")
    cfg, params = _ov_params(text)
    assert top == cfg.max_batch_size == 1
    assert not cfg.HasField("dynamic_batching") and "ENABLE_BATCH_PADDING" not in params
    assert list(cfg.input[0].dims) == list(int8.inputs[0].shape[1:])

    text, top = model_config(int8, "tiny", backend="openvino", max_batch=8, max_queue_delay_us=500)
    cfg, params = _ov_params(text)
    assert top == cfg.max_batch_size == 8 and params["ENABLE_BATCH_PADDING"] == "YES"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    cfg, params = _ov_params(model_config(int8, "tiny", backend="openvino", max_batch=8, preferred_batch=(8,))[0])
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8]
    cfg, params = _ov_params(model_config(int8, "tiny", backend="openvino", max_batch=8, dynamic_batching=False)[0])
    assert not cfg.HasField("dynamic_batching") and params["ENABLE_BATCH_PADDING"] == "YES"
    with pytest.raises(DeployKitError, match="runs batch 8 only") as e:
        model_config(int8, "tiny", backend="openvino", max_batch=8, preferred_batch=(4, 8))
    assert "\n" not in str(e.value)
    # ONNX Runtime's backend takes any batch: its default stays the artifact's profile maximum
    cfg, params = _ov_params(model_config(int8, "tiny")[0])
    assert cfg.max_batch_size == int8.batch.max and cfg.HasField("dynamic_batching")
    assert "ENABLE_BATCH_PADDING" not in params


@pytest.fixture
def pb_utils(monkeypatch):
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = lambda name, array: types.SimpleNamespace(name=name, as_numpy=lambda: array)
    mod.InferenceResponse = lambda output_tensors, error=None: types.SimpleNamespace(
        output_tensors=output_tensors, error=error
    )
    mod.TritonError = str
    mod.get_input_tensor_by_name = lambda r, name: types.SimpleNamespace(as_numpy=lambda: r[name])
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", mod)
    return mod


def test_serve_stub_runs_the_predictor_on_openvino(pb_utils, tmp_path):
    pytest.importorskip("openvino")
    from deploykit.serve.python_model import TritonPythonModel

    art = tiny_artifact(tmp_path / "a")
    m = TritonPythonModel()
    params = {
        k: {"string_value": v} for k, v in {"artifact": str(art.path), "threads": "1", "backend": "openvino"}.items()
    }
    m.initialize({"model_config": json.dumps({"parameters": params})})
    assert m.predictor.backend == "openvino" and m.predictor.runtime_config["precision"] == "f32"
    ref = Predictor.from_artifact(art.path)
    x = np.random.default_rng(0).standard_normal((3, *ref.input_shape)).astype(np.float32)
    (resp,) = m.execute([{ref.input_name: x}])
    np.testing.assert_allclose(resp.output_tensors[0].as_numpy(), ref.infer(x), rtol=1e-4, atol=1e-4)
    m.finalize()


def test_server_passes_the_backend_to_the_stub(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("pytriton")
    from deploykit.serve.server import Server

    art = tiny_artifact(tmp_path / "a")
    server = Server([art.path], backend="openvino")  # the Predictor is checked on OpenVINO here
    repo = server._write_repository()
    text = (repo / "tiny" / "config.pbtxt").read_text()
    assert 'key: "backend"\n  value: { string_value: "openvino" }' in text
    if bf16_refusal() is not None:
        with pytest.raises(DeployKitError, match="bf16 refused"):
            Server([art.path], backend="openvino-bf16")


def test_triton_cli_backend(tmp_path):
    from click.testing import CliRunner

    from deploykit.cli import cli

    art = tiny_artifact(tmp_path / "a")
    res = CliRunner().invoke(cli, ["triton", str(art.path), "--repo", str(tmp_path / "r"), "--backend", "openvino"])
    assert res.exit_code != 0 and "cannot pin f32" in res.output
    assert not (tmp_path / "r" / "tiny").exists()  # nothing half-written
    res = CliRunner().invoke(
        cli, ["triton", str(art.path), "--repo", str(tmp_path / "r"), "--backend", "openvino-bf16"]
    )
    assert res.exit_code == 0, res.output
    assert 'backend: "openvino"' in (tmp_path / "r" / "tiny" / "config.pbtxt").read_text()
    assert "max_batch_size 1)" in res.output and "one static batch size: 1" in res.output
    res = CliRunner().invoke(
        cli,
        ["triton", str(art.path), "--repo", str(tmp_path / "r2"), "--backend", "openvino-bf16", "--max-batch", "4"],
    )
    assert res.exit_code == 0, res.output
    assert "padded with zeros to 4" in res.output and "the dynamic batcher waits" in res.output
    res = CliRunner().invoke(
        cli,
        ["triton", str(art.path), "--repo", str(tmp_path / "r4"), "--backend", "openvino-bf16", "--max-batch", "4"]
        + ["--no-dynamic-batching"],
    )
    assert res.exit_code == 0 and "no batcher fills it" in res.output, res.output
    res = CliRunner().invoke(cli, ["triton", str(art.path), "--repo", str(tmp_path / "r3")])
    assert res.exit_code == 0 and "static batch" not in res.output  # ONNX Runtime's backend: no such note


def test_serve_backend_openvino_end_to_end(fmnist_artifact, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("pytriton.triton")
    httpclient = pytest.importorskip("tritonclient.http")
    from serving import serving

    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with serving(fmnist_artifact.path, "resnet18", tmp_path, ("--backend", "openvino")) as s:
        c = httpclient.InferenceServerClient(f"127.0.0.1:{s.http}", network_timeout=30)
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = c.infer("resnet18", [inp]).as_numpy("logits")
    with Predictor.from_artifact(fmnist_artifact.path, backend="openvino", threads=1) as p:
        assert p.input_shape == (3, 32, 32)
        np.testing.assert_allclose(got, p.infer(x), rtol=1e-5, atol=1e-5)
