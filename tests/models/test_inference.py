"""The one PyTorch inference loop: chunking, output selection, eval mode, dtype and progress."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import CLASSES, SIZE, tiny_module

from deploykit.errors import DeployKitError
from deploykit.models.inference import run_model, to_numpy, to_tensor


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def _eager(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


class Calls(torch.nn.Module):
    """Records the batch sizes and training flag it was called with; returns (logits, aux)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_module()
        self.sizes: list[int] = []
        self.modes: list[bool] = []
        self.grad: list[bool] = []

    def forward(self, x):
        self.sizes.append(len(x))
        self.modes.append(self.training)
        self.grad.append(torch.is_grad_enabled())
        y = self.inner(x)
        return y, 2.0 * y


@pytest.mark.parametrize(("n", "batch"), [(10, 3), (10, 10), (10, 16), (1, 1), (1, 4), (7, None)])
def test_chunked_output_equals_one_shot(n, batch):
    model = Calls().eval()
    x = _x(n)
    out = run_model(model, x, batch)
    np.testing.assert_allclose(out, _eager(model.inner, x), rtol=1e-6, atol=1e-6)
    assert out.shape == (n, CLASSES) and out.dtype == np.float32
    step = batch or n
    assert model.sizes == [min(step, n - i) for i in range(0, n, step)]
    assert not any(model.grad)  # inference mode, no autograd


def test_iterable_of_batches_is_rechunked_and_joined_in_order():
    model = Calls().eval()
    x = _x(9)
    out = run_model(model, iter([x[:5], x[5:]]), batch_size=2)
    np.testing.assert_allclose(out, _eager(model.inner, x), rtol=1e-6, atol=1e-6)
    assert model.sizes == [2, 2, 1, 2, 2]


def test_first_output_is_the_logits_and_all_gives_every_output():
    model = Calls().eval()
    x = _x(5)
    ref = _eager(model.inner, x)
    np.testing.assert_allclose(run_model(model, x, 2), ref, rtol=1e-6, atol=1e-6)
    logits, aux = run_model(model, x, 2, outputs="all")
    np.testing.assert_allclose(logits, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(aux, 2.0 * ref, rtol=1e-6, atol=1e-6)


def test_eval_mode_for_the_call_and_training_flag_restored():
    model = Calls().train()
    run_model(model, _x(4), 2)
    assert model.modes == [False, False] and model.training and model.inner.training
    model.eval()
    run_model(model, _x(2))
    assert not model.training
    model.train()
    run_model(model, _x(2), eval_mode=False)
    assert model.modes[-1] is True and model.training


def test_training_flag_restored_when_the_forward_fails():
    class Boom(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        run_model(model, _x(2))
    assert model.training


def test_progress_callback_counts_images():
    calls = []
    run_model(tiny_module(), _x(7), 3, progress=lambda label, done, total: calls.append((label, done, total)))
    assert calls == [("running PyTorch", 3, 7), ("running PyTorch", 6, 7), ("running PyTorch", 7, 7)]
    calls.clear()
    run_model(tiny_module(), iter([_x(2), _x(3)]), progress=lambda *a: calls.append(a), label="ref")
    assert calls == [("ref", 2, None), ("ref", 5, None)]


def test_dtype_channels_last_and_autocast():
    model = tiny_module()
    x = _x(3)
    ref = _eager(model, x)
    seen = {}

    def spy(mod, args):
        seen["dtype"], seen["cl"] = args[0].dtype, args[0].is_contiguous(memory_format=torch.channels_last)

    handle = model.register_forward_pre_hook(spy)
    try:
        out = run_model(model.to(memory_format=torch.channels_last), x, channels_last=True)
        assert seen == {"dtype": torch.float32, "cl": True}
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
        out = run_model(model.double(), x, dtype=torch.float64)
        assert seen["dtype"] == torch.float64 and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
        model.float()
        out = run_model(model, x, autocast=torch.bfloat16)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=0.05, atol=0.05)  # bf16 matmul: ~3 significant digits
        assert not np.array_equal(out, ref)  # the Linear really ran in bfloat16
    finally:
        handle.remove()


def test_empty_array_runs_once_and_keeps_the_output_shape():
    model = Calls().eval()
    out = run_model(model, _x(0), 4)
    assert out.shape == (0, CLASSES) and model.sizes == [0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch size 0 must be at least 1"),
        ({"outputs": "last"}, "outputs 'last' is not one of first, all"),
        ({"inputs": iter([])}, "no batches"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
    args = {"inputs": _x(2), **kwargs}
    with pytest.raises(DeployKitError, match=message):
        run_model(tiny_module(), **args)


def test_non_tensor_outputs_are_errors():
    class Words(torch.nn.Module):
        def forward(self, x):
            return "logits"

    with pytest.raises(DeployKitError, match="model returned str, expected tensor"):
        run_model(Words(), _x(1))
    with pytest.raises(DeployKitError, match="model returned NoneType, expected tensor"):
        to_numpy((torch.zeros(1), None), outputs="all")


def test_mapping_outputs_keep_their_order():
    y = {"logits": torch.ones(2, 3), "aux": torch.zeros(2, 3, dtype=torch.float16)}
    first = to_numpy(y)
    both = to_numpy(y, outputs="all")
    assert np.array_equal(first, np.ones((2, 3))) and [a.dtype for a in both] == [np.float32, np.float32]
    assert np.array_equal(both[1], np.zeros((2, 3)))


def test_to_tensor_casts_and_changes_memory_format_only_when_asked():
    x = _x(2)
    t = to_tensor(x)
    assert t.dtype == torch.float32 and t.is_contiguous() and t.data_ptr() == torch.from_numpy(x).data_ptr()
    h = to_tensor(x, dtype=torch.float16, channels_last=True)
    assert h.dtype == torch.float16 and h.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
def test_cuda_device_and_half_inputs_match_cpu():
    model = tiny_module()
    x = _x(5)
    ref = run_model(model, x)
    gpu = tiny_module().cuda()
    np.testing.assert_allclose(run_model(gpu, x, 2, device="cuda"), ref, atol=1e-4)
    out = run_model(gpu.half(), x, 2, device="cuda", dtype=torch.float16, channels_last=True)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-2)
