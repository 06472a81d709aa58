"""``deploykit export``: the headline command works; every mistake is one line, exit 1, no artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from deploykit.artifact import Artifact
from deploykit.cli import cli

SMALL = ["--num-classes", "10", "--input-size", "32", "-q"]


def run(*args: str):
    return CliRunner().invoke(cli, ["export", *args])


def error_line(result) -> str:
    """The CLI's error output: exactly one line starting with 'Error:' (beside deprecation notes)."""
    lines = [ln for ln in result.output.splitlines() if ln.strip() and "is deprecated; use" not in ln]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0]


def test_headline_resnext50_fp16(tmp_path):
    out = tmp_path / "rx"
    r = run("resnext50", "--fp16", *SMALL, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert f"Wrote {out}" in r.output and "resnext50_32x4d fp16" in r.output
    assert "Parity vs PyTorch on 8 fixed-seed inputs" in r.output and "gate passed" in r.output
    m = Artifact.load(out).manifest
    assert m.precision == "fp16" and m.model == "resnext50_32x4d"
    assert m.inputs[0].shape == ["batch", 3, 32, 32] and m.inputs[0].dtype == "float32"
    assert [s["stage"] for s in m.stages] == ["export", "optimize", "fp16"]


def test_fixed_batch_without_optimiser_then_force(tmp_path):
    out = tmp_path / "r18"
    r = run("resnet18", *SMALL, "--batch", "2", "--no-optimize", "--opset", "17", "--out", str(out))
    assert r.exit_code == 0, r.output
    m = Artifact.load(out).manifest
    assert m.inputs[0].shape == [2, 3, 32, 32] and m.opset == 17
    assert [s["stage"] for s in m.stages] == ["export"]
    again = run("resnet18", *SMALL, "--out", str(out))
    assert again.exit_code == 1
    assert "already exists; pass --force" in error_line(again)
    assert Artifact.load(out).manifest.inputs[0].shape == [2, 3, 32, 32]  # untouched


def test_max_batch_is_recorded_and_conflicts_with_a_fixed_batch(tmp_path):
    out = tmp_path / "r18"
    r = run("resnet18", *SMALL, "--no-optimize", "--max-batch", "128", "--opt-batch", "8", "--out", str(out))
    assert r.exit_code == 0, r.output
    b = Artifact.load(out).manifest.batch
    assert (b.min, b.opt, b.max, b.dynamic) == (1, 8, 128, True)
    r = run("resnet18", *SMALL, "--batch", "2", "--max-batch", "8", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "--max-batch/--opt-batch apply to a dynamic batch" in r.output
    r = run("resnet18", *SMALL, "--opt-batch", "64", "--out", str(tmp_path / "y"))
    assert r.exit_code == 1 and "opt batch 64 is larger than max batch 32" in error_line(r)
    assert "--max-batch is deprecated; use --batch 1:OPT:MAX" in r.output or "--opt-batch is deprecated" in r.output


def test_batch_takes_a_dynamic_profile(tmp_path):
    out = tmp_path / "r18"
    r = run("resnet18", *SMALL, "--no-optimize", "--batch", "2:8:64", "--out", str(out))
    assert r.exit_code == 0, r.output
    b = Artifact.load(out).manifest.batch
    assert (b.min, b.opt, b.max, b.dynamic) == (2, 8, 64, True)
    assert Artifact.load(out).manifest.inputs[0].shape[0] == "batch"
    for bad in ("8:2:64", "0", "1:2", "x"):
        r = run("resnet18", *SMALL, "--batch", bad, "--out", str(tmp_path / "bad"))
        assert r.exit_code == 2 and "--batch" in r.output, (bad, r.output)
    assert not (tmp_path / "bad").exists()
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_input_too_small_is_refused_before_export(tmp_path):
    r = run("inception_v3", "--num-classes", "10", "--input-size", "64", "-q", "--out", str(tmp_path / "x"))
    assert r.exit_code == 1
    assert "inception_v3: a 64x64 input is too small for this network; it needs at least 75x75" in error_line(r)
    assert not (tmp_path / "x").exists()


def test_unknown_model_suggests(tmp_path):
    r = run("resnet19", "--out", str(tmp_path / "x"))
    assert r.exit_code == 1
    assert "unknown model 'resnet19'; did you mean resnet18" in error_line(r)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("opset", ["12", "21"])
def test_opset_out_of_range(tmp_path, opset):
    r = run("resnet18", "--opset", opset, "--out", str(tmp_path / "x"))
    assert r.exit_code == 1
    assert f"opset {opset} is out of range; supported opsets are 13 to 20" in error_line(r)
    assert list(tmp_path.iterdir()) == []


def test_missing_and_truncated_weights(tmp_path):
    r = run("resnet18", "--weights", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "x"))
    assert r.exit_code == 1 and "nope.safetensors" in error_line(r)
    bad = tmp_path / "cut.pt"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    r = run("resnet18", "--weights", str(bad), "--out", str(tmp_path / "x"))
    assert r.exit_code == 1 and "cut.pt" in error_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pt"]


def test_output_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("resnet18", "--out", str(blocker / "art"))
    assert r.exit_code == 1 and "not writable" in error_line(r)


def test_conflicting_options(tmp_path):
    r = run("resnet18", "--batch", "2", "--dynamic-batch", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "exclude each other" in r.output
    r = run("resnet18", "--fp16-io", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "--fp16-io needs --fp16" in r.output
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_options():
    r = CliRunner().invoke(cli, ["export", "--help"])
    assert r.exit_code == 0
    for opt in (
        "--weights",
        "--num-classes",
        "--input-size",
        "--mean",
        "--std",
        "--labels",
        "--opset",
        "--batch",
        "MIN:OPT:MAX",
        "--fp16",
        "--no-optimize",
        "--data",
        "--out",
        "--force",
        "--seed",
        "--quiet",
    ):
        assert opt in r.output, opt


def test_default_out_dir_is_under_artifacts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("artifacts/resnet18").mkdir(parents=True)
    r = run("resnet18")
    assert r.exit_code == 1 and "artifacts/resnet18: already exists" in error_line(r)


def test_bad_data_spec_fails_before_any_export(tmp_path):
    r = run("resnet18", "--data", str(tmp_path / "no-such-folder"), "--out", str(tmp_path / "x"))
    assert r.exit_code == 1 and "no-such-folder" in error_line(r)
    assert list(tmp_path.iterdir()) == []
