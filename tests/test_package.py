"""The package surface: light import, every public entry point resolves, every command loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

import deploykit
from deploykit.cli import COMMANDS, cli


def test_import_is_light() -> None:
    code = "import sys, deploykit; print('torch' in sys.modules, 'onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", sorted(deploykit._LAZY))
def test_public_entry_point_is_the_stage_function_with_type_hints(name: str) -> None:
    """``deploykit.X`` is the stage's own object (not a copy), documented and annotated."""
    import importlib
    import inspect

    obj = getattr(deploykit, name)
    assert obj is getattr(importlib.import_module(deploykit._LAZY[name]), name)
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if inspect.isfunction(obj):
        sig = inspect.signature(obj)
        assert sig.return_annotation is not inspect.Signature.empty, f"{name} has no return type"
        assert all(
            p.annotation is not inspect.Parameter.empty
            for p in sig.parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ), f"{name} has unannotated parameters"


def test_entry_points_do_what_they_say() -> None:
    model = deploykit.create_model("resnet18", num_classes=3)
    assert "resnet50" in deploykit.list_models() and model.data_config.num_classes == 3


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


def test_library_entry_point_without_torch_names_the_extra() -> None:
    code = textwrap.dedent("""
        import importlib.abc, sys

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Absent())
        import deploykit
        from deploykit.errors import MissingExtraError

        try:
            deploykit.export_model
        except MissingExtraError as e:
            print(e.extra, e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "pipeline deploykit.export_model needs the 'torch' package, which is not installed; "
        "install it with: pip install 'deploykit[pipeline]'"
    )
