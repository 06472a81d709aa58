"""Does INT8 pay here: the speed check beside every INT8 artifact, and the line when it does not."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploykit.artifact import Artifact, BatchProfile
from deploykit.cli import cli
from deploykit.quantize import quantize_artifact
from deploykit.quantize.speed import ROUNDS, BatchSpeed, SpeedCheck, artifact_batches, check_speed

CALIB, VAL = "fashion-mnist:train[:64]", "fashion-mnist:test[:200]"


def _verdict(speedup: float) -> str:
    """As the interval (speedup +-10%) says: clear of 1 either way, or straddling it."""
    return "faster" if speedup * 0.9 > 1 else "slower" if speedup * 1.1 < 1 else "no measurable difference"


def _speeds(*speedups: float) -> list[BatchSpeed]:
    return [BatchSpeed(b, 2.0, 2.0 / s, s, (s * 0.9, s * 1.1), _verdict(s), 8, 5) for b, s in zip((1, 32), speedups)]


def _check(
    *speedups: float, note: str | None = "this CPU has no VNNI", rivals: dict[str, tuple[float, ...]] | None = None
) -> SpeedCheck:
    return SpeedCheck(
        batches=_speeds(*speedups),
        threads=2,
        seconds=1.0,
        note=note,
        rivals={name: _speeds(*r) for name, r in (rivals or {}).items()},
    )


def test_int8_that_pays_says_nothing_more():
    assert _check(1.8, 2.5).pays and _check(1.8, 2.5).advice() is None


def test_int8_slower_and_never_faster_names_the_figures_the_reason_and_what_to_do():
    advice = _check(0.84, 1.05).advice()
    assert "0.84x at batch 1" in advice and "1.05x at batch 32" in advice
    assert "no VNNI" in advice and "FP32" in advice
    assert "\n" not in advice  # one line
    assert advice.startswith("INT8 does not pay")


def test_int8_faster_at_one_batch_and_slower_at_the_other_is_a_split():
    """An INT8 DenseNet-121 at 32x32 in OpenVINO (Sapphire Rapids): 0.75x at batch 1, 2.68x at batch 32."""
    advice = _check(0.75, 2.68, note=None).advice()
    assert advice.startswith("INT8 pays at batch 32 only on this machine (speed-up over FP32: 0.75x at batch 1")
    assert advice.endswith("deploy it for batch 32 and the FP32 (optimised) artifact for batch 1")
    assert "does not pay" not in advice and "no faster" not in advice


def test_int8_within_the_noise_everywhere_does_not_pay():
    assert _check(1.05, 0.97).advice().startswith("INT8 does not pay")


def test_int8_faster_at_one_batch_and_unclear_at_the_other_says_which():
    advice = _check(1.32, 1.05).advice()
    assert advice.startswith("INT8 pays only in part")
    assert "measurably faster at batch 1, not measurably at batch 32" in advice
    assert "does not pay" not in advice and "\n" not in advice


def test_a_cpu_with_vnni_is_never_told_to_find_one():
    """Seen on a Sapphire Rapids (AMX): "deploy ... this INT8 one on a CPU with VNNI (..., AMX)"."""
    advice = _check(1.05, 0.82, note=None).advice()
    assert "VNNI" not in advice and advice.endswith("deploy the FP32 (optimised) artifact here")


def test_int8_that_pays_in_another_runtime_says_where_and_how_to_deploy_it():
    # an onnxruntime-profile DenseNet-121 on a Sapphire Rapids: ORT 1.04x / 0.82x, OpenVINO 0.57x / 2.24x
    advice = _check(1.05, 0.82, note=None, rivals={"openvino": (0.57, 2.24)}).advice()
    assert advice.startswith("INT8 does not pay in onnxruntime on this machine (speed-up over FP32: 1.05x at batch 1")
    assert "or this INT8 one in openvino at batch 32, where it pays (0.57x at batch 1, 2.24x at batch 32)" in advice
    assert "where it pays (0.57x at batch 1, 2.24x at batch 32): --backend openvino;" in advice
    assert "--profile openvino lays INT8 out for it" in advice
    assert "\n" not in advice and "VNNI" not in advice and "auto" not in advice
    # backend="auto" takes the record's batch-1 choice: named only where that is the rival
    from deploykit.harness.bench import RuntimeChoice

    check = _check(0.9, 0.82, note=None, rivals={"openvino": (2.0, 2.24)})
    check.runtime_choice = RuntimeChoice("m", {1: "openvino", 32: "openvino"}, {}, {})
    assert '--backend openvino, or Predictor backend="auto";' in check.advice()
    # fastest at batch 32 only: auto picks it there when told the deployment's batch
    check = _check(1.05, 0.82, note=None, rivals={"openvino": (0.57, 2.24)})
    check.runtime_choice = RuntimeChoice("m", {1: "onnxruntime", 32: "openvino"}, {}, {})
    assert '--backend openvino, or Predictor backend="auto", expected_batch=32;' in check.advice()


def test_a_rival_is_named_only_for_the_batches_it_adds():
    partial = _check(1.32, 1.05, note=None, rivals={"openvino": (1.5, 1.6)}).advice()
    assert "deploy it where batch 1 matters, or this INT8 one in openvino at batch 32, where it pays" in partial
    assert "openvino" not in _check(0.8, 0.8, note=None, rivals={"openvino": (0.9, 1.02)}).advice().split(":", 1)[1]


def test_the_batches_checked_are_one_and_the_optimum():
    assert artifact_batches(BatchProfile(1, 32, 64, True)) == [1, 32]
    assert artifact_batches(BatchProfile(1, 1, 64, True)) == [1, 32]  # the export default: opt = min
    assert artifact_batches(BatchProfile(1, 1, 8, True)) == [1, 8]
    assert artifact_batches(BatchProfile(1, 1, 1, True)) == [1]
    assert artifact_batches(BatchProfile(8, 8, 8, False)) == [8]


def test_check_speed_times_both_models_in_the_same_rounds(fp32_artifact, tmp_path):
    art = quantize_artifact(fp32_artifact.path, CALIB, VAL, method="max", out=tmp_path / "q", speed_check=False)
    sc = check_speed(art.artifact.main_path, fp32_artifact.main_path, batches=[1, 4], threads=1, budget_s=0.2)
    assert [b.batch for b in sc.batches] == [1, 4]
    for b in sc.batches:
        assert b.fp32_ms > 0 and b.int8_ms > 0
        assert b.speedup == pytest.approx(b.fp32_ms / b.int8_ms, rel=0.5)  # median of ratios, not ratio of medians
        assert b.verdict in ("faster", "slower", "no measurable difference")
        assert b.interval is not None and b.interval[0] <= b.speedup <= b.interval[1]
    d = sc.to_dict()
    assert d["machine"]["isa"] and d["pays"] == sc.pays and "load_average" in d
    assert d["config"]["spinning"] is True and d["config"]["blocks"] == ROUNDS
    assert "one alive at a time" in d["config"]["sessions"]
    assert "as deployed: one session at a time, spinning on" in sc.summary()


def test_the_speed_check_times_deployment_sessions_one_alive_at_a_time(fp32_artifact, monkeypatch):
    from timing_fakes import SessionSpy

    from deploykit.onnx_io import deployment_settings

    spy = SessionSpy(monkeypatch)
    check_speed(fp32_artifact.main_path, fp32_artifact.main_path, batches=[1, 2], threads=2, budget_s=0.05)
    # one probe session, then a fresh session per model per block
    assert len(spy.options) == 1 + 2 * ROUNDS and spy.max_alive == 1 and spy.alive == 0
    want = deployment_settings(2)
    for so in spy.options:
        got = SessionSpy.settings(so)
        assert got["threads"] == want.threads == 2 and got["inter_op_threads"] is want.inter_op_threads
        assert got["spin"] is want.spin is True and got["inter_op_spin"] is True
        assert got["optimization"].endswith("ORT_ENABLE_ALL")


def _check_with_fakes(fp32_artifact, monkeypatch, rival: str, target: str = "onnxruntime"):
    """check_speed of the tiny FP32 file against itself, ONNX Runtime beside one fake runtime
    (timing_fakes: 'fake' answers at once, 'broken' cannot load a model)."""
    from timing_fakes import fake_backends

    fake_backends(monkeypatch)
    kw = dict(batches=[1], threads=1, budget_s=0.3, runtimes=["onnxruntime", rival], target=target)
    return check_speed(fp32_artifact.main_path, fp32_artifact.main_path, **kw)


def test_the_speed_check_picks_the_runtime_for_the_int8_model(fp32_artifact, tmp_path, monkeypatch):
    sc = _check_with_fakes(fp32_artifact, monkeypatch, "fake")
    choice = sc.runtime_choice.to_dict()
    assert choice["best"] == "fake" and set(choice["p50_ms"]["1"]) == {"onnxruntime", "fake"}
    assert choice["config"]["spinning"] is True and "fastest CPU runtime here: batch 1: fake" in sc.summary()
    # the INT8 model in the other runtime against the same FP32 parent, recorded beside the verdict
    assert [b.verdict for b in sc.rivals["fake"]] == ["faster"] and sc.runtime == "onnxruntime"
    assert sc.to_dict()["other_runtimes"]["fake"][0]["batch"] == 1


def test_a_runtime_that_cannot_load_the_int8_model_is_left_out(fp32_artifact, monkeypatch):
    sc = _check_with_fakes(fp32_artifact, monkeypatch, "broken")
    assert set(sc.unavailable) == {"broken"} and "cannot compile it" in sc.unavailable["broken"]
    assert set(sc.runtime_choice.to_dict()["p50_ms"]["1"]) == {"onnxruntime"}
    assert "broken left out (cannot load the INT8 model" in sc.summary()
    assert sc.to_dict()["unavailable"] == sc.unavailable


def test_quantize_records_the_speed_check_with_the_machine(fp32_artifact, tmp_path):
    from deploykit.harness.bench import cpu_runtimes
    from deploykit.machine import cpu_info, machine_slug

    art = quantize_artifact(fp32_artifact.path, CALIB, VAL, method="max", out=tmp_path / "q")
    rec = Artifact.load(art.path).manifest.results["int8_speed"]
    assert [b["batch"] for b in rec["batches"]] == artifact_batches(fp32_artifact.manifest.batch)
    assert rec["machine"]["isa"] == cpu_info().isa
    assert rec["note"] == cpu_info().int8_note()
    choice = Artifact.load(art.path).manifest.results["runtime_choice"]  # what Predictor(backend="auto") reads
    assert choice["machine"] == machine_slug() and choice["best"] in cpu_runtimes()
    assert set(choice["by_batch"]) == {str(b) for b in artifact_batches(fp32_artifact.manifest.batch)}
    assert set(choice["p50_ms"]["1"]) == set(cpu_runtimes()) and choice["config"]["spinning"] is True
    skipped = quantize_artifact(fp32_artifact.path, CALIB, VAL, method="max", out=tmp_path / "q2", speed_check=False)
    assert "int8_speed" not in Artifact.load(skipped.path).manifest.results
    assert "runtime_choice" not in Artifact.load(skipped.path).manifest.results


def quantize_cli(fp32_artifact, out, *extra: str):
    """``deploykit quantize`` through click on the tiny artifact (max calibration, 64 images)."""
    args = ["quantize", str(fp32_artifact.path), "--calib", CALIB, "--val", VAL, "--method", "max"]
    return CliRunner().invoke(cli, [*args, "--out", str(out), "--num-images", "64", *extra])


def test_the_command_prints_the_speed_up_beside_the_verdict(fp32_artifact, tmp_path):
    res = quantize_cli(fp32_artifact, tmp_path / "q")
    assert res.exit_code == 0, res.output
    assert "INT8 speed on this machine: batch 1:" in res.stderr
    art = Artifact.load(tmp_path / "q")
    speed = art.manifest.results["int8_speed"]
    if not speed["pays"]:
        assert speed["advice"] in res.stderr
    res = quantize_cli(fp32_artifact, tmp_path / "q2", "--no-speed-check")
    assert res.exit_code == 0 and "INT8 speed" not in res.stderr


def test_the_verdict_judges_int8_on_the_runtime_its_layout_was_placed_for(fp32_artifact, monkeypatch):
    on_ort = _check_with_fakes(fp32_artifact, monkeypatch, "fake")
    on_fake = _check_with_fakes(fp32_artifact, monkeypatch, "fake", target="fake")
    assert on_ort.runtime == "onnxruntime" and on_fake.runtime == "fake"
    # the same FP32 file both ways: on ORT INT8 is FP32 itself; the fake runtime answers at once
    assert on_fake.batches[0].int8_ms < on_ort.batches[0].int8_ms
    assert on_fake.batches[0].verdict == "faster" and on_fake.pays
    assert on_fake.to_dict()["int8_runtime"] == "fake"
    assert "(INT8 in fake, FP32 in onnxruntime)" in on_fake.summary()


def test_a_target_runtime_that_is_missing_falls_back_to_onnx_runtime(fp32_artifact, monkeypatch):
    sc = _check_with_fakes(fp32_artifact, monkeypatch, "broken", target="broken")
    assert sc.runtime == "onnxruntime" and "broken" in sc.unavailable
    assert "INT8 in" not in sc.summary()


def test_a_rival_with_a_lower_median_inside_the_noise_is_named_as_such():
    from deploykit.harness.bench import RuntimeChoice

    choice = RuntimeChoice("m", {1: "onnxruntime"}, {1: {"onnxruntime": 7.69, "openvino": 3.38}}, {})
    assert "batch 1: onnxruntime (onnxruntime 7.69 ms, openvino 3.38 ms; openvino not measurably faster)" in (
        choice.summary()
    )
