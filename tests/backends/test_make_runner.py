"""make_runner: every kind of target, and every bad input as a one-line error naming the cause."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import SIZE, tiny_artifact, tiny_module, tiny_onnx

from deploykit.backends import available_backends, backend_status, make_runner
from deploykit.backends.onnxruntime import OnnxRuntimeRunner
from deploykit.backends.torch import TorchRunner
from deploykit.errors import DeployKitError


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_available_backends_lists_installed_ones():
    names = available_backends()
    assert "torch" in names and "onnxruntime" in names
    status = backend_status()
    assert ("tensorrt" in names) == (status["tensorrt"] is None)


def test_onnx_path_and_artifact(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    r = make_runner(path, threads=1)
    assert isinstance(r, OnnxRuntimeRunner) and r.batch_profile is None
    art = tiny_artifact(tmp_path / "art")
    r = make_runner(art.path, batch_sizes=[1, 8])
    assert r.batch_profile.max == 8 and r.precision == "fp32" and r.data_config.num_classes == 5
    x = np.ones((2, 3, SIZE, SIZE), np.float32)
    with make_runner(path) as a, r:
        np.testing.assert_array_equal(a.infer({"input": x})["logits"], r.infer({"input": x})["logits"])


def test_module_on_torch_and_onnxruntime_agree():
    model = tiny_module()
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    from deploykit.harness.runners import runner_for

    with pytest.raises(DeployKitError, match="onnxruntime runs ONNX; export the model first"):
        make_runner(model, backend="ort")
    with make_runner(model, backend="torch") as t, runner_for(model, backend="ort") as o:
        assert isinstance(t, TorchRunner)
        np.testing.assert_allclose(o.infer({"input": x})["logits"], t.infer({"input": x})["logits"], atol=1e-5)


def test_unknown_backend(tmp_path):
    with pytest.raises(DeployKitError) as e:
        make_runner(tiny_onnx(tmp_path / "m.onnx"), backend="tflite")
    assert _one_line(e) == (
        "unknown backend 'tflite'; choose one of torch, onnxruntime, tensorrt, onnxruntime-cuda, onnxruntime-trt, "
        "openvino, openvino-bf16"
    )


@pytest.mark.parametrize(
    "name, provider", [("onnxruntime-cuda", "CUDAExecutionProvider"), ("ort-trt", "TensorrtExecutionProvider")]
)
def test_onnxruntime_gpu_backends(tmp_path, name, provider):
    import onnxruntime as ort

    path = tiny_onnx(tmp_path / "m.onnx")
    if provider in ort.get_available_providers():
        pytest.skip(f"this onnxruntime has {provider}; the GPU test below covers it")
    key = "onnxruntime-trt" if name == "ort-trt" else name
    assert backend_status()[key] == f"this onnxruntime build has no {provider}; pip install 'deploykit[gpu]'"
    assert key not in available_backends()
    with pytest.raises(DeployKitError) as e:
        make_runner(path, backend=name)
    assert _one_line(e) == (
        f"The {key} backend ({provider}) needs the 'onnxruntime-gpu' package, which is not "
        "installed; install it with: pip install 'deploykit[gpu]'"
    )


@pytest.mark.gpu
def test_onnxruntime_cuda_backend_runs(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    x = np.ones((2, 3, SIZE, SIZE), np.float32)
    with make_runner(path) as cpu, make_runner(path, backend="onnxruntime-cuda", device="cuda") as gpu:
        assert gpu.backend == "onnxruntime-cuda"
        np.testing.assert_allclose(gpu.infer({"input": x})["logits"], cpu.infer({"input": x})["logits"], atol=1e-4)


def test_absent_device(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(DeployKitError, match="device 'npu'") as e:
        make_runner(path, device="npu")
    _one_line(e)
    if not torch.cuda.is_available():
        with pytest.raises(DeployKitError, match="device 'cuda' requested but torch") as e:
            make_runner(tiny_module(), backend="torch", device="cuda")
        _one_line(e)


def test_tampered_artifact_is_refused(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    data = bytearray(art.main_path.read_bytes())
    data[-5] ^= 0xFF
    art.main_path.write_bytes(bytes(data))
    with pytest.raises(DeployKitError, match="model.onnx: sha256 does not match the manifest") as e:
        make_runner(art.path)
    _one_line(e)


def test_tampered_manifest_listing_is_refused(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    manifest = json.loads(art.manifest_path.read_text())
    manifest["files"]["model.onnx"]["bytes"] += 1
    art.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DeployKitError, match="size does not match the manifest"):
        make_runner(art.path)


def test_batch_outside_profile(tmp_path):
    dyn = tiny_artifact(tmp_path / "dyn")
    with pytest.raises(DeployKitError, match="batch 16 is outside its profile \\[1, 8\\]") as e:
        make_runner(dyn.path, batch_sizes=[1, 16])
    _one_line(e)
    fixed = tiny_artifact(tmp_path / "fixed", dynamic=False, batch=4)
    with pytest.raises(DeployKitError, match="batch 1 requested but it was built for batch 4 only"):
        make_runner(fixed.path, batch_sizes=[1])
    make_runner(fixed.path, batch_sizes=[4])


def test_wrong_backend_for_the_file(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(DeployKitError, match="torch backend needs a zoo model name") as e:
        make_runner(path, backend="torch")
    _one_line(e)
    with pytest.raises(DeployKitError, match="precision is fixed by the file"):
        make_runner(path, precision="fp16")
    art = tiny_artifact(tmp_path / "art")
    with pytest.raises(DeployKitError, match="artifact precision is fp32, not int8"):
        make_runner(art.path, precision="int8")


def test_missing_paths_and_unknown_names(tmp_path):
    with pytest.raises(DeployKitError, match="missing.onnx: ONNX file not found"):
        make_runner(tmp_path / "missing.onnx")
    with pytest.raises(DeployKitError, match="no such file or directory"):
        make_runner(str(tmp_path / "nothing" / "here"))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(DeployKitError, match="not an artifact directory, .onnx file or TensorRT engine"):
        make_runner(other)
    with pytest.raises(DeployKitError, match="manifest not found"):
        make_runner(tmp_path)
    with pytest.raises(DeployKitError, match="unknown model 'resnet5O'") as e:
        make_runner("resnet5O")
    _one_line(e)
    with pytest.raises(DeployKitError, match="cannot run a int"):
        make_runner(3)


def test_option_a_backend_lacks(tmp_path):
    with pytest.raises(DeployKitError, match="OnnxRuntimeRunner: .*cuda_graph"):
        make_runner(tiny_onnx(tmp_path / "m.onnx"), cuda_graph=True)


def test_weights_only_go_with_a_zoo_name(tmp_path):
    with pytest.raises(DeployKitError, match="apply to a zoo model name only"):
        make_runner(tiny_onnx(tmp_path / "m.onnx"), weights=tmp_path / "w.safetensors")
    with pytest.raises(DeployKitError, match="apply to a zoo model name only"):
        make_runner(tiny_module(), num_classes=3)
