"""The package surface: light import, every public entry point resolves, every command loads."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

import deploykit
from deploykit.cli import COMMANDS, cli


def test_import_is_light() -> None:
    code = "import sys, deploykit; print('torch' in sys.modules, 'onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", sorted(deploykit._LAZY))
def test_public_entry_point_resolves(name: str) -> None:
    assert callable(getattr(deploykit, name))


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError):
        deploykit.not_a_thing  # noqa: B018


def test_version_and_every_command_listed() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and deploykit.__version__ in result.output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_unknown_command_fails() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code != 0
    assert "No such command" in result.output
