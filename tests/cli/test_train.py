"""``deploykit train-reference``: trains a smoke recipe once, then reports the cached checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from click.testing import CliRunner

from deploykit.cli import cli

SMOKE = [
    "train-reference",
    "resnet18",
    "--epochs",
    "1",
    "--limit",
    "256",
    "--eval-limit",
    "100",
    "--threads",
    "1",
    "--no-progress",
]


def test_train_reference_trains_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    runner = CliRunner()
    try:
        first = runner.invoke(cli, SMOKE)
        assert first.exit_code == 0, first.output
        path = Path(first.stdout.splitlines()[0])
        assert path.is_file() and path.parent == tmp_path / "reference"
        assert first.stdout.strip() == str(path), "stdout must hold only the path"
        assert "trained" in first.stderr and "test top-1" in first.stderr
        mtime = path.stat().st_mtime_ns
        second = runner.invoke(cli, SMOKE)
        assert second.exit_code == 0, second.output
        assert second.stdout.strip() == str(path) and "cached" in second.stderr
        assert path.stat().st_mtime_ns == mtime
    finally:
        torch.set_num_threads(threads)


def test_unknown_model_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path))
    result = CliRunner().invoke(cli, ["train-reference", "resnet19x"])
    assert result.exit_code == 1
    assert "unknown model 'resnet19x'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "reference").exists()


def test_bad_options_rejected():
    result = CliRunner().invoke(cli, ["train-reference", "resnet18", "--epochs", "0"])
    assert result.exit_code == 2 and "--epochs" in result.output
    result = CliRunner().invoke(cli, ["train-reference", "resnet18", "--threads", "many"])
    assert result.exit_code == 2 and "'many' is not a number of threads" in result.output


def test_demo_recipe_trains_in_float32_and_says_so(tmp_path, monkeypatch):
    from deploykit.reference import demo_recipe

    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    try:
        res = CliRunner().invoke(
            cli,
            [
                "train-reference",
                "resnet18",
                "--demo",
                "--epochs",
                "1",
                "--limit",
                "64",
                "--eval-limit",
                "32",
                "--threads",
                "1",
                "--no-progress",
            ],
        )
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    want = demo_recipe("resnet18").replace(epochs=1, limit=64, eval_limit=32)
    assert res.stdout.strip().endswith(f"resnet18-{want.hash}.safetensors")
    assert "float32" in res.stderr


def test_demo_without_a_demo_recipe_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path))
    res = CliRunner().invoke(cli, ["train-reference", "densenet121", "--demo"])
    assert res.exit_code != 0 and "no demo recipe" in res.output
