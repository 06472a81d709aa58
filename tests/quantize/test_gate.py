"""End to end on a small trained CNN: the gate, the fallback, the artifact, and bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from deploykit.artifact import Artifact
from deploykit.errors import DeployKitError
from deploykit.quantize import GateFailedError, QuantizeWarning, quantize_artifact
from deploykit.quantize.trt_cache import read_cache

CALIB = "fashion-mnist:train[:128]"
VAL = "fashion-mnist:test[:600]"


def quant(art, tmp_path, name="int8", **kw):
    kw.setdefault("min_images", 16)
    kw.setdefault("num_images", 128)
    return quantize_artifact(art.path, kw.pop("calib", CALIB), kw.pop("val", VAL), out=tmp_path / name, **kw)


def test_int8_artifact_passes_the_gate_and_records_its_provenance(fp32_artifact, tmp_path):
    out = quant(fp32_artifact, tmp_path, method="entropy", report=tmp_path / "rep.json")
    art = Artifact.load(out.path)  # hashes verified
    m = art.manifest
    assert m.precision == "int8" and m.parent == fp32_artifact.parent_ref()
    stage = m.stages[-1]
    assert stage["stage"] == "quantize" and stage["params"]["method"] == "entropy"
    assert stage["params"]["profile"] == "onnxruntime"
    assert stage["calibration"]["spec"] == CALIB and stage["calibration"]["images"] == 128
    assert len(stage["calibration"]["fingerprint"]) == 64
    acc = m.results["accuracy"]
    assert acc["passed"] and acc["top1"] >= 0.995 * acc["fp32_top1"]
    assert acc["fp32_top1"] > 0.7  # the fixture model really learned something
    q = onnx.load(str(art.main_path))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert (art.path / "quantize_report_sqnr.png").read_bytes()[:4] == b"\x89PNG"
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["method"] == "entropy" and rep["fallbacks"] == [] and rep["passed"]
    assert len(rep["attempts"][0]["sqnr"]) == 7  # one row per quantised layer


def test_tensorrt_profile_writes_a_cache_bound_to_the_fp32_model(fp32_artifact, tmp_path):
    out = quant(fp32_artifact, tmp_path, profile="tensorrt", method="max")
    cache = out.path / "calibration.cache"
    assert cache.read_text().startswith("TRT-")
    scales = read_cache(cache, fp32_artifact.main_path)
    assert "input" in scales and all(s > 0 for s in scales.values())
    with pytest.raises(DeployKitError, match="another model"):
        read_cache(cache, out.artifact.main_path)  # the QDQ model is not the one it was made for


def test_sensitive_layer_falls_back_and_then_passes(sensitive_artifact, tmp_path):
    out = quant(sensitive_artifact, tmp_path, method="max", profile="tensorrt")
    rep = out.report
    best = rep.best
    assert best.top1_initial < 0.995 * rep.fp32_top1  # the planted layer breaks INT8...
    assert [f.layer for f in best.fallbacks] == ["/conv2/Conv"]  # ...is ranked worst and returned
    assert best.fallbacks[0].sqnr_drop_db > 15
    assert best.top1_final >= 0.995 * rep.fp32_top1 and rep.passed
    stage = out.artifact.manifest.stages[-1]
    assert stage["kept_fp32"] == ["/conv2/Conv"] and stage["fallbacks"][0]["layer"] == "/conv2/Conv"
    q = onnx.load(str(out.artifact.main_path))
    conv2 = next(n for n in q.graph.node if n.name == "/conv2/Conv")
    prod = {o: n.op_type for n in q.graph.node for o in n.output}
    assert prod.get(conv2.input[0]) == "Relu" and prod.get(conv2.input[1]) is None  # FP32 in and weights


def test_gate_that_cannot_pass_exits_with_an_error_and_no_artifact(sensitive_artifact, tmp_path):
    with pytest.raises(GateFailedError, match="under the gate") as e:
        quant(sensitive_artifact, tmp_path, method="max", max_fallbacks=0, report=tmp_path / "r.json")
    assert not (tmp_path / "int8").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".int8")]  # no temp left behind
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False
    assert e.value.report is not None


def test_auto_keeps_the_best_passing_calibrator(fp32_artifact, tmp_path):
    out = quant(fp32_artifact, tmp_path, method="auto")
    rep = out.report
    assert {a.method for a in rep.attempts} == {"entropy", "percentile", "mse", "max"}
    passing = [a for a in rep.attempts if a.passed]
    assert rep.chosen == max(passing, key=lambda a: a.top1_final).method


# ------------------------------------------------------------------------------------ bad input


def test_empty_or_too_small_calibration_set(fp32_artifact, tmp_path):
    with pytest.raises(DeployKitError, match="at least 16"):
        quant(fp32_artifact, tmp_path, calib="fashion-mnist:train[:8]")
    with pytest.raises(DeployKitError, match="empty"):
        quant(fp32_artifact, tmp_path, calib=np.zeros((0, 1, 28, 28), np.float32))
    assert not (tmp_path / "int8").exists()


def test_images_of_the_wrong_size_or_channels(fp32_artifact, tmp_path):
    with pytest.raises(DeployKitError, match="3x28x28.*1x28x28"):
        quant(fp32_artifact, tmp_path, calib=np.zeros((32, 3, 28, 28), np.float32))
    with pytest.raises(DeployKitError, match="1x32x32"):
        quant(fp32_artifact, tmp_path, calib=np.zeros((32, 1, 32, 32), np.float32))


def test_overlapping_calibration_and_validation_sets_warn(fp32_artifact, tmp_path):
    with pytest.warns(QuantizeWarning, match="share 100 images"):
        out = quant(
            fp32_artifact,
            tmp_path,
            calib="fashion-mnist:test[:128]",
            val="fashion-mnist:test[28:300]",
            method="max",
            num_images=128,
        )
    assert "share 100 images" in out.artifact.manifest.results["quantize"]["warnings"][0]


def test_nan_activations_are_named(fp32_artifact, tmp_path):
    x = np.zeros((32, 1, 28, 28), np.float32)
    x[3, 0, 5, 5] = np.nan
    with pytest.raises(DeployKitError, match="tensor 'input' holds NaN"):
        quant(fp32_artifact, tmp_path, calib=x)
    assert not (tmp_path / "int8").exists()


def test_existing_output_needs_force(fp32_artifact, tmp_path):
    (tmp_path / "int8").mkdir()
    with pytest.raises(DeployKitError, match="--force"):
        quant(fp32_artifact, tmp_path)


def test_only_fp32_onnx_artifacts_are_quantised(fp32_artifact, tmp_path):
    out = quant(fp32_artifact, tmp_path, method="max")
    with pytest.raises(DeployKitError, match="needs an FP32 ONNX artifact"):
        quant(out, tmp_path, name="again")


def test_onnxruntime_artifact_records_that_ort_fused_every_layer(fp32_artifact, tmp_path):
    out = quant(fp32_artifact, tmp_path, method="max")
    fused = out.artifact.manifest.stages[-1]["ort_fused_ops"]
    assert fused["QLinearConv"] == 6 and fused.get("QGemm", 0) == 1
    assert not any(fused.get(op, 0) for op in ("Conv", "FusedConv", "Gemm"))


def test_fallback_search_scores_a_subset_and_confirms_on_the_whole_set(sensitive_artifact, tmp_path):
    out = quant(sensitive_artifact, tmp_path, method="max", profile="tensorrt", search_images=100)
    best = out.report.best
    assert best.fallbacks[0].layer == "/conv2/Conv"  # the planted layer is ranked first
    assert {t.images for t in best.trials} == {100, 600}  # searched on 100, decided on all 600
    assert best.passed and best.images == 600 and best.top1_final >= 0.995 * out.report.fp32_top1
    assert out.artifact.manifest.results["accuracy"]["top1"] == best.top1_final
