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


def _count_compiles(monkeypatch, events: list) -> None:
    import deploykit.openvino_io as ovio

    real = ovio.ov_compile

    def counting(*args, **kwargs):
        events.append(("compile", kwargs.get("batch")))
        return real(*args, **kwargs)

    monkeypatch.setattr(ovio, "ov_compile", counting)


def test_each_batch_fed_runs_a_static_compile_made_on_its_first_call(tmp_path, monkeypatch):
    from deploykit.openvino_io import ov_compile

    events: list = []
    _count_compiles(monkeypatch, events)
    path = tiny_onnx(tmp_path / "m.onnx")
    with make_runner(path, backend="openvino") as r:
        # names, types and the declared (dynamic) shape before anything is compiled
        assert r.input_metadata() == {"input": (np.dtype(np.float32), (None, 3, SIZE, SIZE))}
        assert r.output_names == ["logits"]
        assert r.describe()["static_batch"] is True and "compiled" not in r.describe()
        assert events == []
        x = _x(4)
        out = r.infer({"input": x})["logits"]
        assert events == [("compile", 4)]
        assert r.compiled.inputs[0].get_partial_shape().is_static
        info = r.describe()
    assert info["compiled"]["input_shape"] == [4, 3, SIZE, SIZE]
    assert info["compiled_input_shapes"] == {"4": [4, 3, SIZE, SIZE]}
    dynamic = np.array(ov_compile(path, threads=usable_cores()).create_infer_request().infer({0: x})[0])
    np.testing.assert_allclose(out, dynamic, rtol=1e-5, atol=1e-5)
    assert check_gate(compare_outputs(_ort(path, x), out), "fp32") == []


def test_the_runner_compiles_four_sizes_static_and_shares_one_dynamic_compile_beyond(tmp_path, monkeypatch):
    events: list = []
    _count_compiles(monkeypatch, events)
    with make_runner(tiny_onnx(tmp_path / "m.onnx"), backend="openvino") as r:
        outs = {b: r.infer({"input": _x(b)})["logits"] for b in (1, 2, 3, 4, 5, 6)}
        again = r.infer({"input": _x(1)})["logits"]  # still its static compile: no recompile
        assert r._cache.batches == [1, 2, 3, 4] and r._cache.dynamic
        assert [b for _, b in events] == [1, 2, 3, 4, None]  # sizes 5 and 6 share the dynamic one
        shapes = r.describe()["compiled_input_shapes"]
        assert set(shapes) == {"1", "2", "3", "4", "5", "6"} and "?" in str(shapes["6"])
    np.testing.assert_array_equal(again, outs[1])
    assert outs[6].shape[0] == 6


def test_bench_compiles_in_the_untimed_warm_up_only(tmp_path, monkeypatch):
    import deploykit.harness.bench as bench

    events: list = []
    _count_compiles(monkeypatch, events)
    real_warm_up = bench._warm_up

    def marked(runner, feeds, warmup):
        events.append(("warm-up", None))
        try:
            return real_warm_up(runner, feeds, warmup)
        finally:
            events.append(("timed", None))

    monkeypatch.setattr(bench, "_warm_up", marked)
    runner = make_runner(tiny_onnx(tmp_path / "m.onnx"), backend="openvino")
    with runner:
        bench.benchmark(runner, batch_sizes=[1, 2], warmup=0, iters=3)
    kinds = [k for k, _ in events]
    assert kinds == ["warm-up", "compile", "timed", "warm-up", "compile", "timed"]
    assert [b for k, b in events if k == "compile"] == [1, 2]
