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
    assert not hasattr(gpu_bench.parse_args([]), "opt_batch")  # the opt batch is the timed batch
    with pytest.raises(SystemExit) as e:
        gpu_bench.parse_args(["--large-batch", "1"])
    assert e.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script measures instead")
def test_no_gpu_path_writes_nothing(gpu_bench, tmp_path, capsys):
    assert gpu_bench.main(["--quick", "--out", str(tmp_path / "out")]) == 0
    assert "no CUDA GPU is visible to torch" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_tensorrt_rows_measure_what_they_name(gpu_bench, monkeypatch, tmp_path):
    """FP16 from the FP16 artifact, INT8 from the TensorRT-profile Q/DQ graph, opt batch = timed
    batch, CUDA graph on: checked on CPU by recording what the rows would build and run."""
    import types

    import deploykit.backends.tensorrt.builder as builder
    import deploykit.backends.tensorrt.runner as runner_mod
    import deploykit.export.api as export_api

    builds, runners, exports = [], [], []
    monkeypatch.setattr(
        builder,
        "build_serialized",
        lambda onnx, opts, log_file=None: builds.append((Path(onnx).name, opts)) or types.SimpleNamespace(plan=b"p"),
    )

    class Recorder:
        def __init__(self, plan, name=None, cuda_graph=False):
            runners.append((Path(plan).name, cuda_graph))

    monkeypatch.setattr(runner_mod, "TensorRTRunner", Recorder)

    def fake_export(name, **kw):
        exports.append(kw)
        return types.SimpleNamespace(main_path=tmp_path / "onnx-fp16" / "model.onnx")

    monkeypatch.setattr(export_api, "export_model", fake_export)
    monkeypatch.setattr(gpu_bench, "tensorrt_qdq", lambda name, art, calib, out: out.write_bytes(b"qdq") or out)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "tensorrt" else real_find_spec(n, *a)
    )
    args = gpu_bench.parse_args(["--no-compile"])
    counts = dict(gpu_bench.QUICK)
    art = types.SimpleNamespace(main_path=tmp_path / "onnx" / "model.onnx")
    rows = gpu_bench.row_factories("resnet50", None, art, None, counts, args, tmp_path, lambda: 1e9)
    fp16, int8 = rows["TensorRT fp16 + CUDA graph"], rows["TensorRT int8 + CUDA graph"]
    assert fp16.per_batch and int8.per_batch
    large = counts["large_batch"]
    for batch in (1, large):
        fp16(batch)
        int8(batch)
    assert [(n, o.precision, o.min_batch, o.opt_batch, o.max_batch) for n, o in builds] == [
        ("model.onnx", "fp16", 1, 1, large),
        ("resnet50-int8.onnx", "int8", 1, 1, large),
        ("model.onnx", "fp16", 1, large, large),
        ("resnet50-int8.onnx", "int8", 1, large, large),
    ]
    assert len(exports) == 1 and exports[0]["fp16"] is True  # the FP16 artifact, exported once
    assert all(graph for _, graph in runners) and len(runners) == 4
    with pytest.raises(gpu_bench.Skip, match="--no-compile"):
        rows["torch.compile fp16"](1)


def test_device_time_comes_from_the_runner_or_is_absent(gpu_bench):
    import types

    trt_like = types.SimpleNamespace(device_time_ms=lambda feeds, iters: 0.25 * iters)
    assert gpu_bench.device_time_ms(trt_like, {}, 4) == 1.0
    assert gpu_bench.device_time_ms(types.SimpleNamespace(backend="onnxruntime"), {}, 4) is None
