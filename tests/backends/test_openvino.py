"""The OpenVINO backend: same numbers as ONNX Runtime, precision explicit and read back, bf16 only where native."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import CLASSES, SIZE, tiny_artifact, tiny_onnx

from deploykit.backends import backend_name, backend_status, make_runner
from deploykit.errors import DeployKitError, MissingExtraError
from deploykit.machine import bf16_refusal, usable_cores
from deploykit.onnx_io import ort_session
from deploykit.parity import check_gate, compare_outputs

pytest.importorskip("openvino")
NATIVE_BF16 = bf16_refusal() is None


def _x(batch: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)


def _ort(path, x):
    return ort_session(path).run(None, {"input": x})[0]


def test_f32_matches_onnxruntime_within_the_fp32_gate(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx")
    x = _x()
    with make_runner(path, backend="openvino") as r:
        out = r.infer({"input": x})["logits"]
        info = r.describe()
    assert out.shape == (4, CLASSES)
    assert check_gate(compare_outputs(_ort(path, x), out), "fp32") == []
    # precision read back from the compiled model, not assumed; threads default to the usable cores
    assert info["backend"] == "openvino"
    assert info["compiled"]["precision"] == "f32"
    assert info["compiled"]["inference_num_threads"] == usable_cores()
    assert info["compiled"]["performance_hint"] == "LATENCY"


def test_artifact_runs_with_its_precision_and_batch_profile(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    runner = make_runner(art.path, backend="openvino", batch_sizes=[8])
    assert runner.precision == "fp32" and runner.batch_profile.max == 8
    with runner:
        out = runner.infer({"input": _x(8)})["logits"]
    assert check_gate(compare_outputs(_ort(art.main_path, _x(8)), out), "fp32") == []
    with pytest.raises(DeployKitError, match="batch"):
        make_runner(art.path, backend="openvino", batch_sizes=[9])


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bfloat16")
def test_bf16_runs_in_bf16_and_meets_the_bf16_gate(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    x = _x(16, seed=1)
    runner = make_runner(art.path, backend="openvino-bf16")
    assert runner.precision == "bf16"  # a float artifact computed in bf16 is gated as bf16, not fp32
    with runner:
        out = runner.infer({"input": x})["logits"]
        assert runner.describe()["compiled"]["precision"] == "bf16"
    result = compare_outputs(_ort(art.main_path, x), out)
    assert check_gate(result, "bf16") == []
    assert result.max_abs > 0  # it really computed in reduced precision


def test_bf16_is_refused_in_one_line_where_the_cpu_lacks_it(tmp_path, monkeypatch):
    import deploykit.machine as machine

    monkeypatch.setattr(machine, "bf16_refusal", lambda cpu=None: "this CPU (test) has no native bfloat16")
    assert backend_status()["openvino-bf16"] == "this CPU (test) has no native bfloat16"
    with pytest.raises(DeployKitError, match="bf16 refused: this CPU") as e:
        make_runner(tiny_onnx(tmp_path / "m.onnx"), backend="openvino-bf16")
    assert "\n" not in str(e.value)


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'deploykit\[openvino\]'"):
        make_runner(tiny_onnx(tmp_path / "m.onnx"), backend="openvino")


def test_names_and_refusals(tmp_path):
    assert backend_name("ov") == "openvino"
    assert backend_name("OpenVINO_BF16") == "openvino-bf16"
    with pytest.raises(DeployKitError, match="runs on the CPU"):
        make_runner(tiny_onnx(tmp_path / "m.onnx"), backend="openvino", device="cuda")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(DeployKitError, match="OpenVINO cannot compile it") as e:
        make_runner(bad, backend="openvino").activate()
    assert "\n" not in str(e.value)


def test_bench_compare_validate_cli(tmp_path, fmnist_artifact):
    from deploykit.cli import cli as main

    cli = CliRunner()
    res = cli.invoke(main, ["compare", str(fmnist_artifact.path), "--backend", "onnxruntime,openvino"])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output
    out = tmp_path / "bench.json"
    res = cli.invoke(
        main,
        [
            "bench",
            str(fmnist_artifact.path),
            "--backend",
            "openvino",
            "--warmup",
            "1",
            "--iters",
            "3",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert '"inference_precision": "f32"' in out.read_text()  # the precision is recorded with the figure
    res = cli.invoke(
        main, ["validate", str(fmnist_artifact.path), "--data", "fashion-mnist:test[:64]", "--backend", "openvino"]
    )
    assert res.exit_code == 0, res.output


def test_bench_record_keeps_the_inference_precision(tmp_path):
    from deploykit.artifact import Artifact
    from deploykit.cli import cli

    art = tiny_artifact(tmp_path / "art")
    res = CliRunner().invoke(
        cli, ["bench", str(art.path), "--backend", "openvino", "--warmup", "1", "--iters", "3", "--record"]
    )
    assert res.exit_code == 0, res.output
    latency = Artifact.load(art.path).manifest.results["latency"]
    ((label, runner),) = latency["runners"].items()
    assert runner == {"backend": "openvino", "precision": "fp32", "inference_precision": "f32"}
    assert label in latency["runs"]
