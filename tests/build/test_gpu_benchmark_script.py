"""benchmarks/gpu/run.py: argument parsing and the no-GPU path run on CPU (the measurements need a GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "run.py"


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_arguments(gpu_bench):
    args = gpu_bench.parse_args(["--models", "resnet50,googlenet", "--large-batch", "32", "--no-int8"])
    assert args.models == "resnet50,googlenet" and args.large_batch == 32 and args.no_int8
    assert gpu_bench.parse_args([]).budget_minutes == 8.0
    with pytest.raises(SystemExit) as e:
        gpu_bench.parse_args(["--large-batch", "1"])
    assert e.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script measures instead")
def test_no_gpu_path_writes_nothing(gpu_bench, tmp_path, capsys):
    assert gpu_bench.main(["--quick", "--out", str(tmp_path / "out")]) == 0
    assert "no CUDA GPU is visible to torch" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
