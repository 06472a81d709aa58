"""Parameter and MAC counts and the stage summary that ``deploykit info`` prints."""

from __future__ import annotations

import pytest
import torch

from deploykit.errors import DeployKitError
from deploykit.models import create_model
from deploykit.models.info import block_summary, count_macs, count_params


def _meta(name: str, **kw) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


@pytest.mark.parametrize(
    "name, gmacs",
    [
        # Published MAC counts (torchvision's "GFLOPS" column is multiply-accumulates).
        ("resnet18", 1.81),
        ("resnet50", 4.09),
        ("resnext50_32x4d", 4.23),
        ("resnext101_32x8d", 16.41),
        ("densenet121", 2.83),
        ("googlenet", 1.50),
        ("inception_v3", 5.71),
    ],
)
def test_macs_match_published(name: str, gmacs: float) -> None:
    model = _meta(name)
    assert round(count_macs(model, model.data_config.input_size) / 1e9, 2) == gmacs


def test_meta_count_equals_real_count_and_leaves_model_alone() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    macs = count_macs(model, (3, 64, 64))
    assert macs == count_macs(_meta("resnet18", num_classes=10), (3, 64, 64))
    assert model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    # MACs scale with the number of output pixels: 2x the side -> ~4x the convolution work.
    assert 3.9 < count_macs(model, (3, 128, 128)) / macs < 4.1


def test_too_small_input_is_a_user_error() -> None:
    with pytest.raises(DeployKitError, match=r"inception_v3 cannot run on a 3x64x64 input"):
        count_macs(_meta("inception_v3"), (3, 64, 64))


def test_count_params() -> None:
    assert count_params(_meta("resnet18")) == 11_689_512
    assert count_params(torch.nn.Linear(3, 2)) == 8


def test_block_summary_resnet50() -> None:
    rows = {s.name: s for s in block_summary(_meta("resnet50"))}
    assert [rows[f"layer{i}"].describe() for i in range(1, 5)] == [
        "3 x Bottleneck",
        "4 x Bottleneck",
        "6 x Bottleneck",
        "3 x Bottleneck",
    ]
    assert rows["fc"].describe() == "Linear" and rows["fc"].params == 2048 * 1000 + 1000
    assert sum(s.params for s in rows.values()) == 25_557_032


def test_block_summary_opens_densenet_features() -> None:
    rows = {s.name: s.describe() for s in block_summary(_meta("densenet169"))}
    assert rows["features.denseblock4"] == "32 x _DenseLayer"
    assert rows["features.transition3"] == "_Transition"
    assert "features" not in rows


def test_block_summary_inception_v3() -> None:
    rows = {s.name: s.describe() for s in block_summary(_meta("inception_v3"))}
    assert rows["Mixed_5b"] == "InceptionA" and rows["Mixed_6e"] == "InceptionC"
    assert rows["Mixed_7c"] == "InceptionE" and rows["AuxLogits"] == "InceptionAux"


def test_zoo_summary() -> None:
    from deploykit.models.info import zoo_summary

    rows = {r["name"]: r for r in zoo_summary("inception")}
    assert set(rows) == {"googlenet", "inception_v3"}
    assert rows["inception_v3"]["params"] == 27_161_264
    assert rows["inception_v3"]["input_size"] == [3, 299, 299]
    assert round(rows["googlenet"]["macs"] / 1e9, 2) == 1.50
    with pytest.raises(DeployKitError, match="unknown model family 'resnets'; did you mean resnet"):
        zoo_summary("resnets")


@pytest.mark.parametrize("name, size, smallest", [("inception_v3", 64, 75), ("densenet121", 16, 29)])
def test_too_small_input_names_the_smallest_that_works(name, size, smallest):
    from deploykit.models.info import check_input_size
    from deploykit.models.registry import create_model

    model = create_model(name, num_classes=10, **({"aux_logits": False} if name == "inception_v3" else {}))
    with pytest.raises(
        DeployKitError,
        match=f"{name}: a {size}x{size} input is too small for this network; it needs at least {smallest}x{smallest}",
    ) as e:
        check_input_size(model, (3, size, size))
    assert "\n" not in str(e.value)
    check_input_size(model, (3, smallest, smallest))  # the size it names really runs
    assert model.training, "the check left the model's mode as it found it"
