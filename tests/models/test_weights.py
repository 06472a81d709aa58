"""Safe weights loading: every bad checkpoint gives its own one-line error; good variants load."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deploykit.errors import DeployKitError
from deploykit.models import create_model
from deploykit.models.weights import (
    checkpoint_num_classes,
    load_model,
    load_weights,
    read_checkpoint_metadata,
    read_state_dict,
    save_weights,
)

NC = 10


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", num_classes=NC).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ bad files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    with pytest.raises(DeployKitError) as e:
        load_model("resnet18", weights=path)
    assert _one_line(e) == f"{path}: weights file not found"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DeployKitError, match="is not a file"):
        read_state_dict(tmp_path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "w.onnx"
    path.write_bytes(b"\x00")
    with pytest.raises(DeployKitError, match=r"w\.onnx: unsupported weights format '\.onnx'"):
        read_state_dict(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file(suffix: str, resnet18: torch.nn.Module, tmp_path: Path) -> None:
    good = tmp_path / f"good{suffix}"
    if suffix == ".pt":
        torch.save(resnet18.state_dict(), good)
    else:
        save_weights(resnet18, good)
    data = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DeployKitError) as e:
        load_model("resnet18", weights=bad)
    msg = _one_line(e)
    assert msg.startswith(f"{bad}: cannot read") and "truncated or corrupt" in msg


def test_garbage_pt_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DeployKitError, match="junk.pth: cannot read checkpoint"):
        read_state_dict(bad)


class _Payload:
    """Unpickling this would create a file: proof of code execution if the loader ran it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(DeployKitError) as e:
        load_model("resnet18", weights=evil)
    msg = _one_line(e)
    assert msg.startswith(f"{evil}: refused to load: the pickle needs code execution")
    assert "weights_only=True" in msg and "(it imports " in msg
    assert not marker.exists()  # the payload never ran, not even on a retry


def test_wrong_architecture_names_keys(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    path = save_weights(resnet18, tmp_path / "r18.safetensors")
    with pytest.raises(DeployKitError) as e:
        load_model("resnet34", weights=path)
    msg = _one_line(e)
    assert "keys do not match resnet34" in msg and "missing (layer1.2.conv1.weight" in msg
    assert "weights for another architecture?" in msg
    assert "saved from resnet18" in msg  # the safetensors metadata names the real model


def test_unexpected_keys_named(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    sd = dict(resnet18.state_dict())
    sd["head.extra.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pt"
    torch.save(sd, path)
    with pytest.raises(DeployKitError, match=r"1 unexpected \(head\.extra\.weight\)"):
        load_weights(create_model("resnet18", num_classes=NC), path)


def test_shape_mismatch_outside_classifier(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    sd = dict(resnet18.state_dict())
    sd["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "odd.pt"
    torch.save(sd, path)
    with pytest.raises(DeployKitError) as e:
        load_model("resnet18", weights=path)
    msg = _one_line(e)
    assert "1 tensors have the wrong shape for resnet18" in msg
    assert "conv1.weight [64, 3, 3, 3] vs model [64, 3, 7, 7]" in msg and "--num-classes" not in msg


def test_classifier_mismatch_suggests_num_classes(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    path = save_weights(resnet18, tmp_path / "ft.safetensors")
    with pytest.raises(DeployKitError) as e:
        load_weights(create_model("resnet18"), path)  # built for 1000 classes
    msg = _one_line(e)
    assert msg == (
        f"{path}: the checkpoint's classifier has {NC} classes but resnet18 was built for 1000; pass --num-classes {NC}"
    )
    with pytest.raises(DeployKitError, match=f"pass --num-classes {NC}"):
        load_model("resnet18", weights=path, num_classes=5)


def test_classifier_mismatch_with_aux_heads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ft = create_model("googlenet", num_classes=NC, aux_logits=True)
    path = save_weights(ft, tmp_path / "g.safetensors")
    with pytest.raises(DeployKitError, match=f"pass --num-classes {NC}"):
        load_weights(create_model("googlenet", aux_logits=True), path)


def test_non_tensor_entry(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "optimizer": {}}, path)
    with pytest.raises(DeployKitError, match="entry 'epoch' is a int, not a tensor"):
        read_state_dict(path)


# ------------------------------------------------------------------ accepted variants


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module_prefix", "both"])
def test_wrappers_and_module_prefix(wrap: str, resnet18: torch.nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    sd = resnet18.state_dict()
    if wrap in ("module_prefix", "both"):
        sd = {f"module.{k}": v for k, v in sd.items()}
    obj = {"state_dict": sd, "epoch": 7} if wrap in ("state_dict", "both") else sd
    if wrap == "model":
        obj = {"model": sd, "optimizer": {"lr": 0.1}}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    loaded = load_model("resnet18", weights=path)
    assert loaded.data_config.num_classes == NC  # inferred from fc.weight
    assert _same_outputs(resnet18, loaded, x)


def test_googlenet_checkpoint_with_aux_loads_without_aux(x: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = create_model("googlenet", num_classes=NC, aux_logits=True).eval()
    path = save_weights(trained, tmp_path / "g.safetensors")
    assert any(k.startswith("aux1.") for k in read_state_dict(path))
    loaded = load_model("googlenet", weights=path)
    assert loaded.aux1 is None and loaded.aux2 is None
    x64 = torch.randn(1, 3, 64, 64)
    assert _same_outputs(trained, loaded, x64)
    # ...and through load_weights on a model built without aux heads
    load_weights(create_model("googlenet", num_classes=NC), path)


def test_inception_v3_checkpoint_without_aux_builds_without_aux(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = create_model("inception_v3", num_classes=NC, aux_logits=False).eval()
    path = save_weights(trained, tmp_path / "v3.safetensors")
    loaded = load_model("inception_v3", weights=path)  # default build has AuxLogits
    assert loaded.AuxLogits is None
    assert _same_outputs(trained, loaded, torch.randn(1, 3, 75, 75))


def test_legacy_torchvision_densenet_names(x: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("densenet121", num_classes=NC).eval()
    # torchvision's published DenseNet files say "norm.1" where the module is "norm1".
    # They also predate BatchNorm's num_batches_tracked buffer.
    old = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    path = tmp_path / "densenet121-old.pth"
    torch.save(old, path)
    assert _same_outputs(model, load_model("densenet121", weights=path), x)


# ------------------------------------------------------------------ metadata and data config


def test_save_writes_metadata_and_data_config(resnet18: torch.nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    labels = tuple(f"class{i}" for i in range(NC))
    model = create_model("resnet18", num_classes=NC)
    model.load_state_dict(resnet18.state_dict())
    model.data_config = model.data_config.replace(
        input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3, labels=labels
    )
    path = save_weights(model, tmp_path / "fm.safetensors", metadata={"epochs": 3})
    meta = read_checkpoint_metadata(path)
    assert meta["deploykit.model"] == "resnet18" and meta["epochs"] == "3"
    assert json.loads(meta["deploykit.data_config"])["labels"] == list(labels)
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no temp file left behind

    loaded = load_model("resnet18", weights=path)
    assert loaded.data_config == model.data_config
    assert _same_outputs(model, loaded, x)
    # overrides come last
    over = load_model("resnet18", weights=path, overrides={"image_size": (40, 48), "crop_pct": 1.0})
    assert over.data_config.input_size == (3, 40, 48) and over.data_config.crop_pct == 1.0
    assert over.data_config.labels == labels


def test_overrides_validate(tmp_path: Path) -> None:
    with pytest.raises(DeployKitError, match="unknown data-config override"):
        load_model("resnet18", overrides={"size": 3})
    with pytest.raises(DeployKitError, match="3 labels given for 1000 classes"):
        load_model("resnet18", overrides={"labels": ("a", "b", "c")})
    m = load_model("resnet18", num_classes=3, overrides={"labels": ("a", "b", "c"), "interpolation": "bicubic"})
    assert m.fc.out_features == 3 and m.data_config.labels == ("a", "b", "c")
    assert m.weights_path is None and not m.training


def test_bad_data_config_metadata(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "bad-meta.safetensors"
    save_file(
        {k: v.contiguous() for k, v in resnet18.state_dict().items()},
        path,
        metadata={"deploykit.data_config": "{not json"},
    )
    with pytest.raises(DeployKitError, match="'deploykit.data_config' metadata is not valid JSON"):
        load_model("resnet18", weights=path)


def test_save_refuses_other_suffix(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(DeployKitError, match="use a .safetensors path"):
        save_weights(resnet18, tmp_path / "w.pt")


def test_metadata_of_pt_is_empty(resnet18: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(resnet18.state_dict(), path)
    assert read_checkpoint_metadata(path) == {}
    assert checkpoint_num_classes(read_state_dict(path)) == NC
