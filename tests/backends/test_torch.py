"""Torch runner: eager outputs, options that need CUDA refuse clearly, CUDA paths run where there is a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import CLASSES, SIZE, tiny_module

from deploykit.backends.base import RunnerError
from deploykit.backends.torch import TorchRunner
from deploykit.errors import DeployKitError

NO_CUDA = not torch.cuda.is_available()


def test_infer_matches_eager():
    model = tiny_module()
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    with TorchRunner(model, threads=1) as r:
        assert r.input_names == ["input"] and r.output_names == ["logits"]
        assert r.input_metadata()["input"][1] == ("batch", 3, SIZE, SIZE)
        out = r.infer({"input": x})["logits"]
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    assert out.shape == (2, CLASSES)
    assert r.describe()["threads"] == 1


def test_channels_last_on_cpu_gives_same_answers():
    model = tiny_module()
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    with TorchRunner(model) as a:
        ref = a.infer({"input": x})["logits"]
    with TorchRunner(model, channels_last=True) as b:
        np.testing.assert_allclose(b.infer({"input": x})["logits"], ref, rtol=1e-5, atol=1e-6)


def test_wrong_shape_is_refused():
    with TorchRunner(tiny_module()) as r, pytest.raises(RunnerError, match="dim 1 must be 3"):
        r.infer({"input": np.zeros((1, 1, SIZE, SIZE), np.float32)})


def test_not_a_module():
    with pytest.raises(DeployKitError, match="needs a torch.nn.Module"):
        TorchRunner("resnet50")


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is present")
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "cuda"}, "device 'cuda' requested but torch .* sees no CUDA GPU"),
        ({"precision": "fp16"}, "fp16 with the torch backend needs a CUDA device"),
        ({"cuda_graph": True}, "CUDA-graph replay needs a CUDA device"),
        ({"precision": "int8"}, "precision 'int8' is not one of fp32, fp16"),
        ({"device": "tpu"}, "device 'tpu' is not one of cpu, cuda"),
    ],
)
def test_cuda_options_without_cuda_are_one_line_errors(kwargs, message):
    with pytest.raises(DeployKitError, match=message) as info:
        TorchRunner(tiny_module(), **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "kwargs", [{}, {"precision": "fp16", "channels_last": True}, {"precision": "fp16", "cuda_graph": True}]
)
def test_cuda_variants_match_cpu(kwargs):
    model = tiny_module()
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    with TorchRunner(model) as cpu:
        ref = cpu.infer({"input": x})["logits"]
    with TorchRunner(tiny_module(), device="cuda", **kwargs) as gpu:
        for _ in range(2):  # second call replays the captured graph
            out = gpu.infer({"input": x})["logits"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-2 if kwargs.get("precision") == "fp16" else 1e-4)


def test_thread_setting_is_restored_after_use():
    before = torch.get_num_threads()
    with TorchRunner(tiny_module(), threads=1) as r:
        assert torch.get_num_threads() == 1
        r.infer({"input": np.zeros((1, 3, SIZE, SIZE), np.float32)})
    assert torch.get_num_threads() == before


def test_callers_model_is_left_as_it_was():
    model = tiny_module()
    with TorchRunner(model, channels_last=True) as r:
        r.infer({"input": np.zeros((1, 3, SIZE, SIZE), np.float32)})
    weight = next(model.parameters())
    assert weight.dtype == torch.float32 and weight.device.type == "cpu"
    assert weight.is_contiguous()  # not switched to channels-last in place
