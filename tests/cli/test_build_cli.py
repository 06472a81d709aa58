"""``deploykit build``: help documents every option; mistakes are one line; no TensorRT -> the extra."""

from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner
from tiny_models import tiny_artifact

from deploykit.cli import cli

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def run(*args: str):
    return CliRunner().invoke(cli, ["build", *args])


def test_help_documents_the_options():
    r = run("--help")
    assert r.exit_code == 0
    for opt in (
        "--precision",
        "fp32|fp16|int8|best",
        "--batch",
        "MIN:OPT:MAX",
        "--workspace",
        "--timing-cache",
        "--opt-level",
        "--hardware-compat",
        "none|ampere+",
        "--version-compatible",
        "--out",
        "--force",
        "--quiet",
        "deploykit[tensorrt]",
    ):
        assert opt in r.output, opt


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_without_tensorrt_one_line_names_the_extra(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    r = run(str(art.path))
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "Error: deploykit build needs the 'tensorrt' package, which is not installed; "
        "install it with: pip install 'deploykit[tensorrt]'"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--batch", "8:4:16"], "needs 1 <= MIN <= OPT <= MAX"),
        (["--batch", "1:x:8"], "is not MIN:OPT:MAX"),
        (["--opt-level", "7"], "0<=x<=5"),
        (["--precision", "int4"], "'int4' is not one of"),
        (["--hardware-compat", "turing+"], "'turing+' is not one of"),
        (["--workspace", "0"], "x>=1"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, args, words):
    r = run(str(tmp_path), *args)
    assert r.exit_code == 2 and words in r.output, r.output


def test_input_mistakes_are_one_line_before_tensorrt(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    for args, words in [
        ([str(art.path), "--batch", "1:8:16"], "batch 16 is outside its profile [1, 8]"),
        ([str(art.path), "--precision", "int8"], "is a fp32 artifact and --precision int8 needs an INT8 one"),
        ([str(tmp_path / "nope")], "artifact directory not found"),
    ]:
        r = run(*args)
        assert r.exit_code == 1, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], r.output
