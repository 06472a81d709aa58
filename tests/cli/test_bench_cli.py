"""deploykit bench / compare through click: outputs written, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_models import tiny_artifact, tiny_onnx

from deploykit.cli import cli


@pytest.fixture()
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_bench_writes_json_markdown_and_plot(run, tmp_path):
    art = tiny_artifact(tmp_path / "art")
    out = tmp_path / "out"
    res = run(
        "bench",
        art.path,
        "--batch",
        "1,4",
        "--iters",
        "12",
        "--warmup",
        "2",
        "--threads",
        "1",
        "--json",
        out / "b.json",
        "--md",
        out / "b.md",
        "--plot",
        out / "b.png",
    )
    assert res.exit_code == 0, res.output
    assert "onnxruntime[art/model.onnx,CPU]" in res.output and "p99" in res.output
    assert "note: batch 1 p99 rests on 12 samples" in res.output
    doc = json.loads((out / "b.json").read_text())
    assert doc["schema"] == "deploykit.bench/1"
    assert [b["batch"] for b in doc["runs"][0]["batches"]] == [1, 4]
    assert all(b["iterations"] == 12 for b in doc["runs"][0]["batches"])
    assert doc["runs"][0]["runner"]["threads"] == 1
    md = (out / "b.md").read_text()
    assert md.count("| onnxruntime[art/model.onnx,CPU] |") == 2
    with Image.open(out / "b.png") as img:
        assert img.format == "PNG"


def test_bench_record_stores_latency_and_the_runtime_choice_in_the_manifest(run, tmp_path):
    from deploykit.artifact import Artifact
    from deploykit.harness.bench import cpu_runtimes
    from deploykit.machine import machine_slug

    art = tiny_artifact(tmp_path / "art")
    res = run("bench", art.path, "--batch", "1,2", "--iters", "5", "--warmup", "1", "--threads", "1", "--record")
    assert res.exit_code == 0, res.output
    lat = Artifact.load(art.path).manifest.results["latency"]  # loads with hashes verified
    ((label, per_batch),) = lat["runs"].items()
    assert label.startswith("onnxruntime[") and set(per_batch) == {"1", "2"}
    b1 = per_batch["1"]
    assert 0 < b1["p50_ms"] <= b1["p90_ms"] <= b1["p99_ms"] and b1["iterations"] == 5
    assert b1["throughput_per_s"] > 0 and lat["machine"]
    choice = Artifact.load(art.path).manifest.results["runtime_choice"]  # every installed CPU runtime, as deployed
    assert choice["machine"] == machine_slug() and choice["best"] == choice["by_batch"]["1"]
    assert set(choice["by_batch"]) == {"1", "2"} and set(choice["p50_ms"]["2"]) == set(cpu_runtimes())
    assert choice["config"]["spinning"] is True and choice["config"]["intra_op_threads"] == 1
    assert f"recorded the runtime choice ({choice['best']})" in res.output
    onnx_file = tiny_onnx(tmp_path / "m.onnx")
    res = CliRunner().invoke(cli, ["bench", str(onnx_file), "--record"])
    assert res.exit_code == 1 and "--record needs an artifact directory" in res.output


def test_bench_duration_mode(run, tmp_path):
    res = run(
        "bench", tiny_onnx(tmp_path / "m.onnx"), "--duration", "0.1", "--warmup", "0", "--json", tmp_path / "d.json"
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "d.json").read_text())
    assert doc["runs"][0]["settings"]["duration_s"] == 0.1 and doc["runs"][0]["batches"][0]["iterations"] >= 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "1,16"], "batch 16 is outside its profile [1, 8]"),
        (["--backend", "tflite"], "unknown backend 'tflite'"),
        (["--device", "npu"], "device 'npu'"),
        (["--precision", "fp16"], "artifact precision is fp32, not fp16"),
        (["--iters", "5", "--duration", "1"], "give --iters or --duration, not both"),
        (["--weights", "w.safetensors"], "apply to a zoo model name"),
        (["--batch", "0"], "must list batch sizes of at least 1"),
    ],
)
def test_bench_bad_input_is_one_line(run, tmp_path, args, message):
    art = tiny_artifact(tmp_path / "art")
    res = run("bench", art.path, *args)
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output


def test_bench_tampered_artifact(run, tmp_path):
    art = tiny_artifact(tmp_path / "art")
    art.main_path.write_bytes(art.main_path.read_bytes() + b"\0")
    res = run("bench", art.path)
    assert res.exit_code == 1
    assert "model.onnx: size does not match the manifest" in res.output


def test_bench_tensorrt_without_the_extra(run, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    res = run("bench", engine, "--backend", "tensorrt")
    assert res.exit_code == 1
    assert "pip install 'deploykit[tensorrt]'" in res.output


def test_compare_passes_identical_and_fails_perturbed(run, tmp_path):
    good = tiny_artifact(tmp_path / "good")
    res = run(
        "compare", good.path, "--backends", "onnxruntime,onnxruntime", "--batch", "2", "--json", tmp_path / "c.json"
    )
    assert res.exit_code == 0, res.output
    assert "PASS: 1 output comparison(s) within the fp32 gate" in res.output
    assert json.loads((tmp_path / "c.json").read_text())["passed"] is True


def test_compare_exits_nonzero_when_a_tolerance_is_exceeded(run, tmp_path):
    from tiny_models import zoo_artifact

    bad = zoo_artifact(tmp_path, bias_shift=0.5)  # hashes valid, ONNX no longer matches its weights
    res = run(
        "compare",
        bad.path,
        "--backends",
        "torch,onnxruntime",
        "--batch",
        "2",
        "--md",
        tmp_path / "c.md",
        "--json",
        tmp_path / "c.json",
    )
    assert res.exit_code == 3  # a failed gate
    assert "FAIL" in res.output and "of the logit range" in res.output
    assert "FAIL: max abs error" in (tmp_path / "c.md").read_text()
    assert json.loads((tmp_path / "c.json").read_text())["passed"] is False


def test_compare_with_real_images(run, tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (10, 10), (200, 10, 10) if cls == "a" else (10, 10, 200)).save(
            tmp_path / "imgs" / cls / "x.png"
        )
    art = tiny_artifact(tmp_path / "art")
    res = run("compare", art.path, "--backends", "onnxruntime,onnxruntime", "--data", tmp_path / "imgs", "--batch", "2")
    assert res.exit_code == 0, res.output
    assert "2 samples from" in res.output


def test_compare_bad_input(run, tmp_path):
    art = tiny_artifact(tmp_path / "art")
    res = run("compare", art.path, "--backends", "onnxruntime")
    assert res.exit_code == 1 and "at least two backends" in res.output
    res = run("compare", art.path, "--backends", "torch,onnxruntime")
    assert res.exit_code == 1
    assert "torch backend needs the weights this artifact was exported from" in res.output


def test_zoo_model_torch_against_onnxruntime(run, tmp_path):
    # One module is built and both backends run it: the export must match PyTorch even with random weights.
    res = run(
        "compare", "resnet18", "--input-size", "32", "--num-classes", "3", "--batch", "2", "--json", tmp_path / "c.json"
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["reference"]["backend"] == "torch" and doc["rows"][0]["backend"] == "onnxruntime"
    assert doc["rows"][0]["parity"]["top1_agreement"] == 1.0


def test_zoo_model_bench_on_two_backends(run, tmp_path):
    res = run(
        "bench",
        "resnet18",
        "--backend",
        "torch,onnxruntime",
        "--input-size",
        "32",
        "--num-classes",
        "3",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--json",
        tmp_path / "b.json",
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b.json").read_text())
    assert [r["runner"]["backend"] for r in doc["runs"]] == ["torch", "onnxruntime"]
    assert all(r["model"] == "resnet18" for r in doc["runs"])


def test_unknown_zoo_model(run):
    res = run("bench", "resnet5O")
    assert res.exit_code == 1 and "unknown model 'resnet5O'" in res.output


def test_bench_rounds_interleaves_backends_and_prints_speedup_intervals(run, tmp_path):
    res = run(
        "bench",
        "resnet18",
        "--input-size",
        "32",
        "--backend",
        "torch,onnxruntime",
        "--rounds",
        "6",
        "--iters",
        "12",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--batch",
        "1,2",
        "--json",
        tmp_path / "i.json",
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("vs torch") == 2 and "95% CI" in res.output
    doc = json.loads((tmp_path / "i.json").read_text())
    torch_run, ort_run = doc["runs"]
    for run_doc in (torch_run, ort_run):
        assert [b["batch"] for b in run_doc["batches"]] == [1, 2]
        assert all(b["iterations"] == 12 and len(b["round_p50_ms"]) == 6 for b in run_doc["batches"])
        assert run_doc["settings"]["interleaved"] == [torch_run["label"], ort_run["label"]]
    assert ort_run["runner"]["spin"] is True  # as deployed: one session alive at a time, spinning on
    assert all(r["settings"]["one_session_alive"] for r in doc["runs"])
    assert "timed as deployed: a fresh session per runner per round, one alive at a time" in res.output


def test_bench_rounds_with_duration_is_a_usage_error(run, tmp_path):
    res = run("bench", tiny_onnx(tmp_path / "m.onnx"), "--rounds", "4", "--duration", "1")
    assert res.exit_code == 2 and "give it with --iters, not --duration" in res.output
