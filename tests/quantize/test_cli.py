"""``deploykit quantize`` through click: exit codes, messages, the artifact it prints."""

from __future__ import annotations

from click.testing import CliRunner

from deploykit.artifact import Artifact
from deploykit.cli import cli


def test_quantize_command_writes_an_int8_artifact(fp32_artifact, tmp_path):
    out = tmp_path / "q"
    res = CliRunner().invoke(
        cli,
        [
            "quantize",
            str(fp32_artifact.path),
            "--calib",
            "fashion-mnist:train[:64]",
            "--val",
            "fashion-mnist:test[:300]",
            "--method",
            "max",
            "--out",
            str(out),
            "--report",
            str(tmp_path / "r.json"),
            "--num-images",
            "64",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().endswith(str(out))
    assert Artifact.load(out).manifest.precision == "int8"
    assert (tmp_path / "r.json").is_file()


def test_int8_layout_can_be_forced_and_is_recorded(fp32_artifact, tmp_path):
    from deploykit.quantize.placement import default_layout

    forced = "vnni" if default_layout() == "avx2" else "avx2"  # the one this CPU would not pick
    out = tmp_path / "q"
    res = CliRunner().invoke(
        cli,
        [
            "quantize",
            str(fp32_artifact.path),
            "--calib",
            "fashion-mnist:train[:64]",
            "--val",
            "fashion-mnist:test[:300]",
            "--method",
            "max",
            "--out",
            str(out),
            "--num-images",
            "64",
            "--int8-layout",
            forced,
        ],
    )
    assert res.exit_code == 0, res.output
    stage = Artifact.load(out).manifest.stages[-1]
    params = stage["params"] if isinstance(stage, dict) else stage.params
    assert params["layout"] == forced


def test_failed_gate_exits_non_zero(sensitive_artifact, tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "quantize",
            str(sensitive_artifact.path),
            # test_gate.py's sets: on 600 images the planted layer costs more than the gate on every
            # CPU tried; on 300 images and 64 calibration images it did not on a Sapphire Rapids with
            # torch and oneDNN capped at AVX2 (make test-avx2), where the trained model differs
            "--calib",
            "fashion-mnist:train[:128]",
            "--val",
            "fashion-mnist:test[:600]",
            "--method",
            "max",
            "--profile",
            "tensorrt",
            "--max-fallbacks",
            "0",
            "--num-images",
            "128",
            "--out",
            str(tmp_path / "q"),
        ],
    )
    assert res.exit_code == 3  # a failed gate has its own exit code
    assert "Error: INT8 top-1" in res.output and "under the gate" in res.output
    assert not (tmp_path / "q").exists()


def test_bad_arguments_are_named(fp32_artifact, tmp_path):
    r = CliRunner()
    res = r.invoke(cli, ["quantize", str(fp32_artifact.path), "--calib", "x", "--val", "y", "--gate", "1.5"])
    assert res.exit_code == 2 and "1.5 must be in (0, 1]" in res.output
    res = r.invoke(
        cli,
        ["quantize", str(tmp_path / "nope"), "--calib", "fashion-mnist:train[:64]", "--val", "fashion-mnist:test[:10]"],
    )
    assert res.exit_code == 1 and "artifact directory not found" in res.output
    res = r.invoke(
        cli,
        [
            "quantize",
            str(fp32_artifact.path),
            "--calib",
            "fashion-mnist:train[:8]",
            "--val",
            "fashion-mnist:test[:10]",
            "--out",
            str(tmp_path / "q"),
        ],
    )
    assert res.exit_code == 1 and "at least 32 are needed" in res.output


def test_high_precision_fp16_needs_the_tensorrt_profile_and_writes_nothing(fp32_artifact, tmp_path):
    out = tmp_path / "q"
    res = CliRunner().invoke(
        cli,
        [
            "quantize",
            str(fp32_artifact.path),
            "--calib",
            "fashion-mnist:train[:64]",
            "--val",
            "fashion-mnist:test[:300]",
            "--high-precision",
            "fp16",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code != 0 and "needs --profile tensorrt" in res.output
    assert not out.exists()
