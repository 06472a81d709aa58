"""The registry: the one list of models, refusing duplicates, resolving aliases and typos."""

from __future__ import annotations

import pytest
from torch import nn

from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError
from deploykit.models import create_model, get_spec, list_families, list_models, registry, resolve_name

ZOO = {
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "googlenet",
    "inception_v3",
}


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register test models into copies, so the real registry is untouched afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))


def test_zoo_is_registered() -> None:
    assert set(list_models()) == ZOO
    assert list_families() == ["densenet", "inception", "resnet", "resnext"]
    assert list_models("densenet") == ["densenet121", "densenet161", "densenet169", "densenet201"]
    assert list_models("nope") == []


def test_duplicate_name_refused(scratch_registry: None) -> None:
    def resnet18(**kw):  # same name as a zoo model
        return nn.Identity()

    with pytest.raises(ValueError, match="'resnet18' is already registered"):
        registry.register_model("resnet")(resnet18)


def test_duplicate_alias_refused(scratch_registry: None) -> None:
    def tiny_net(**kw):
        return nn.Identity()

    with pytest.raises(ValueError, match="'resnext50' is already registered"):
        registry.register_model("test", aliases=("resnext50",))(tiny_net)
    assert "tiny_net" not in list_models()


def test_new_model_is_listed_and_buildable(scratch_registry: None) -> None:
    @registry.register_model("test", data_config=DataConfig(input_size=(3, 32, 32)), aliases=("tiny",))
    def tiny_net(num_classes: int = 1000) -> nn.Module:
        return nn.Linear(4, num_classes)

    assert "tiny_net" in list_models("test")
    model = create_model("tiny", num_classes=3)
    assert model.model_name == "tiny_net"
    assert model.out_features == 3
    assert model.data_config.input_size == (3, 32, 32) and model.data_config.num_classes == 3


def test_alias_resolves() -> None:
    assert resolve_name("resnext50") == "resnext50_32x4d"
    assert resolve_name("ResNeXt50") == "resnext50_32x4d"  # case forgiven
    assert get_spec("resnext50").name == "resnext50_32x4d"
    assert "resnext50" in get_spec("resnext50_32x4d").aliases


@pytest.mark.parametrize(
    "typo, suggestion",
    [
        ("resnet5", "resnet50"),
        ("densenet12", "densenet121"),
        ("inception-v3", None),  # a dash is normalised: this is a hit, not a typo
        ("googlenett", "googlenet"),
    ],
)
def test_unknown_name_suggests_close_match(typo: str, suggestion: str | None) -> None:
    if suggestion is None:
        assert resolve_name(typo) == "inception_v3"
        return
    with pytest.raises(DeployKitError, match=f"unknown model '{typo}'; did you mean .*{suggestion}"):
        resolve_name(typo)


def test_far_off_name_points_to_list() -> None:
    with pytest.raises(DeployKitError, match="deploykit list"):
        get_spec("vit_huge")


def test_data_configs() -> None:
    v3 = get_spec("inception_v3").data_config
    assert v3.input_size == (3, 299, 299)
    assert v3.crop_pct == 0.875 and v3.interpolation == "bilinear"
    for name in ZOO - {"inception_v3"}:
        cfg = get_spec(name).data_config
        assert cfg.input_size == (3, 224, 224), name
        assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
        assert cfg.num_classes == 1000


def test_create_model_carries_data_config() -> None:
    model = create_model("googlenet", num_classes=7)
    assert model.model_name == "googlenet"
    assert model.data_config.num_classes == 7 and model.fc.out_features == 7
    assert model.data_config.input_size == (3, 224, 224)
    with pytest.raises(AttributeError):  # frozen: a stage cannot change it behind others' backs
        model.data_config.num_classes = 3  # type: ignore[misc]


def test_auxiliary_prefixes() -> None:
    assert get_spec("googlenet").auxiliary_prefixes == ("aux1.", "aux2.")
    assert get_spec("inception_v3").auxiliary_prefixes == ("AuxLogits.",)
    assert get_spec("resnet50").auxiliary_prefixes == ()
