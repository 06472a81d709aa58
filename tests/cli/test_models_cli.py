"""``deploykit list`` and ``deploykit info`` through click's CliRunner: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.models import create_model, list_models
from deploykit.models.weights import save_weights


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), terminal_width=200)


def test_list_shows_every_model_with_params_and_macs() -> None:
    result = _run("list")
    assert result.exit_code == 0, result.output
    for name in list_models():
        assert name in result.output
    assert "25,557,032" in result.output  # resnet50 params
    assert "4.09" in result.output  # resnet50 GMACs at 224
    assert "3x299x299" in result.output  # inception_v3 input size
    assert "(resnext50)" in result.output  # alias shown


def test_list_family_filters() -> None:
    result = _run("list", "--family", "inception")
    assert result.exit_code == 0, result.output
    assert "googlenet" in result.output and "inception_v3" in result.output
    assert "resnet50" not in result.output and "densenet121" not in result.output
    assert "1.50" in result.output and "5.71" in result.output  # GMACs


def test_list_unknown_family_suggests() -> None:
    result = _run("list", "--family", "densnet")
    assert result.exit_code == 1
    assert "Error: unknown model family 'densnet'; did you mean densenet" in result.output


def test_info_resnet50() -> None:
    result = _run("info", "resnet50")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "resnet50 (family: resnet)" in out
    assert "25,557,032" in out
    assert "4,089,184,256" in out  # MACs at 3x224x224
    assert "layer3" in out and "6 x Bottleneck" in out
    assert "0.485, 0.456, 0.406" in out and "bilinear" in out


def test_info_alias_and_overrides() -> None:
    result = _run("info", "resnext50", "--num-classes", "10", "--input-size", "128")
    assert result.exit_code == 0, result.output
    assert "resnext50_32x4d" in result.output and "aliases: resnext50" in result.output
    assert "3x128x128" in result.output
    assert "classes:        10" in result.output


def test_info_densenet_shows_dense_blocks() -> None:
    result = _run("info", "densenet121")
    assert result.exit_code == 0, result.output
    assert "features.denseblock3" in result.output and "24 x _DenseLayer" in result.output
    assert "7,978,856" in result.output


def test_info_with_fine_tuned_weights(tmp_path: Path) -> None:
    model = create_model("resnet18", num_classes=3)
    model.data_config = model.data_config.replace(labels=("cat", "dog", "eel"))
    path = save_weights(model, tmp_path / "ft.safetensors")
    result = _run("info", "resnet18", "--weights", str(path))
    assert result.exit_code == 0, result.output
    assert "classes:        3 (cat, dog, eel)" in result.output
    assert str(path) in result.output


def test_info_unknown_model_suggests() -> None:
    result = _run("info", "resnet5")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: unknown model 'resnet5'; did you mean resnet50, resnext50, resnet152?"


def test_info_bad_weights_one_line_error(tmp_path: Path) -> None:
    result = _run("info", "resnet18", "--weights", str(tmp_path / "missing.pt"))
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'missing.pt'}: weights file not found"


def test_info_input_too_small() -> None:
    result = _run("info", "inception_v3", "--input-size", "64")
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: inception_v3: a 64x64 input is too small for this network; it needs at least 75x75"
    )
