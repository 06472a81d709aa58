"""``deploykit export --fp16`` / ``--int8`` then the engine: on a machine without TensorRT or a GPU,
the export succeeds and one line says why no engine was built and how to build it later."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from click.testing import CliRunner

from deploykit.artifact import Artifact
from deploykit.build import environment_problem
from deploykit.cli import cli
from deploykit.harness.headline import build_command, engine_after_export

SMALL = ["--num-classes", "10", "--input-size", "32", "-q"]
CAN_BUILD = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


def test_environment_problem_names_what_is_missing():
    why = environment_problem()
    if importlib.util.find_spec("tensorrt") is None:
        assert why == "the 'tensorrt' module is not installed (pip install 'deploykit[tensorrt]')"
    elif importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        assert why == "the 'cuda-bindings' module is not installed (pip install 'deploykit[tensorrt]')"
    else:
        from deploykit.backends.cuda import cuda_available

        assert (why is None) == cuda_available(), why


def test_build_command_quotes_the_path():
    assert build_command("/a b/rx", "fp16") == "deploykit build '/a b/rx' --precision fp16"


@pytest.mark.skipif(CAN_BUILD, reason="TensorRT and a GPU are present: the engine is built instead")
def test_export_fp16_on_cpu_says_why_in_one_line(tmp_path):
    out = tmp_path / "rx"
    r = CliRunner().invoke(cli, ["export", "resnext50", "--fp16", *SMALL, "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("No TensorRT engine built")]
    assert lines == [
        f"No TensorRT engine built: {environment_problem()}; build it later with: "
        f"deploykit build {out} --precision fp16"
    ]
    assert Artifact.load(out).manifest.precision == "fp16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rx"]  # no engine directory, not even a partial one


@pytest.mark.skipif(CAN_BUILD, reason="TensorRT and a GPU are present: the engine is built instead")
def test_engine_after_export_returns_the_reason(tmp_path):
    from tiny_models import tiny_artifact

    art = tiny_artifact(tmp_path / "art")
    outcome = engine_after_export(art)
    assert outcome.built is None and outcome.reason == environment_problem()
    assert outcome.lines() == [
        f"No TensorRT engine built: {outcome.reason}; build it later with: deploykit build {art.path} --precision fp16"
    ]


def test_int8_option_combinations_are_usage_errors(tmp_path):
    for args in (
        ["--int8"],
        ["--int8", "--calib", "fashion-mnist:train[:8]"],
        ["--calib", "x"],
        ["--int8", "--fp16", "--calib", "a", "--val", "b"],
    ):
        r = CliRunner().invoke(cli, ["export", "resnet18", *args, *SMALL, "--out", str(tmp_path / "o")])
        assert r.exit_code == 2, (args, r.output)
        assert "--int8 needs --calib" in r.output or "--calib/--val go with --int8" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_export_fp16_builds_and_proves_the_engine(tmp_path):
    out = tmp_path / "rx"
    r = CliRunner().invoke(cli, ["export", "resnext50", "--fp16", *SMALL, "--out", str(out)])
    assert r.exit_code == 0, r.output
    engine = Artifact.load(tmp_path / "rx-trt-fp16")
    assert set(engine.manifest.results["parity"]) == {"engine vs onnxruntime", "engine vs pytorch"}
    assert "Latency (rx-trt-fp16, batch 1): p50" in r.output
