"""Every registered model, parametrised over the registry: a new model is tested once registered."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deploykit.models import create_model, list_models
from deploykit.models.inception import GoogLeNetOutputs, InceptionOutputs
from deploykit.models.weights import load_model, save_weights

# Issue 3: parameter counts with 1000 classes (torchvision's numbers).
PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "googlenet": 6_624_904,
    "inception_v3": 27_161_264,
}
SMALL = {"inception_v3": 75}  # its minimum input; every other model runs at 64 px
NUM_CLASSES = 10
# Biggest models (by weights) only round-trip under the slow marker: ~350 MB of safetensors each.
BIG = {name for name, n in PARAMS.items() if n > 50_000_000}


def _size(name: str) -> int:
    return SMALL.get(name, 64)


def test_every_model_has_an_expected_count() -> None:
    assert set(PARAMS) == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_param_count(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no init
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


def test_inception_v3_param_count_without_aux() -> None:
    with torch.device("meta"):
        model = create_model("inception_v3", aux_logits=False)
    assert sum(p.numel() for p in model.parameters()) == 23_834_568


def test_googlenet_param_count_with_aux() -> None:
    with torch.device("meta"):
        model = create_model("googlenet", aux_logits=True)
    # torchvision's googlenet with its two aux heads
    assert sum(p.numel() for p in model.parameters()) == 13_004_888


@pytest.mark.parametrize("name", list_models())
def test_eval_forward_gives_plain_logits(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    size = _size(name)
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert type(out) is torch.Tensor  # not a NamedTuple, even for models with aux heads
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()
    # forward_features / forward_head split is the same computation
    with torch.no_grad():
        split = model.forward_head(model.forward_features(torch.randn(1, 3, size, size)))
    assert split.shape == (1, NUM_CLASSES)


def test_googlenet_training_returns_aux_outputs() -> None:
    model = create_model("googlenet", num_classes=NUM_CLASSES, aux_logits=True).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, GoogLeNetOutputs)
    assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (2, NUM_CLASSES)
    out.logits.sum().backward()  # the head trains
    model.eval()
    with torch.no_grad():
        assert type(model(torch.randn(1, 3, 64, 64))) is torch.Tensor


def test_googlenet_default_has_no_aux_in_training() -> None:
    model = create_model("googlenet", num_classes=NUM_CLASSES).train()
    assert model.aux1 is None and model.aux2 is None
    assert type(model(torch.randn(2, 3, 64, 64))) is torch.Tensor


def test_inception_v3_training_returns_aux_outputs() -> None:
    model = create_model("inception_v3", num_classes=NUM_CLASSES).train()
    # The aux head's 5x5 conv needs the 17x17 map of a full-size (>= 295 px) input.
    with torch.no_grad():
        out = model(torch.randn(2, 3, 299, 299))
    assert isinstance(out, InceptionOutputs)
    assert out.logits.shape == out.aux_logits.shape == (2, NUM_CLASSES)


def test_inception_v3_runs_at_its_minimum_size() -> None:
    model = create_model("inception_v3", num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 75, 75)).shape == (1, NUM_CLASSES)
        with pytest.raises(RuntimeError):  # below 75 px the feature map vanishes
            model(torch.randn(1, 3, 70, 70))


def test_transform_input_rescales_imagenet_input_to_minus_one_one() -> None:
    from deploykit.models.inception import _transform_input

    torch.manual_seed(0)
    a = create_model("googlenet", num_classes=NUM_CLASSES).eval()
    b = create_model("googlenet", num_classes=NUM_CLASSES, transform_input=True).eval()
    b.load_state_dict(a.state_dict())
    # An ImageNet-normalised image of pixel value 1.0 maps to 1.0 in the [-1, 1] scaling.
    ones = (torch.ones(1, 3, 1, 1) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    assert torch.allclose(_transform_input(ones), torch.ones(1, 3, 1, 1), atol=1e-6)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(b(x), a(_transform_input(x)))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in list_models()])
def test_safetensors_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    path = save_weights(model, tmp_path / f"{name}.safetensors")
    loaded = load_model(name, weights=path)  # num_classes inferred from the checkpoint
    assert loaded.data_config == model.data_config
    assert not loaded.training and loaded.weights_path == str(path)
    x = torch.randn(1, 3, _size(name), _size(name))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
