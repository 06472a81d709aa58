"""compare_backends: identical models pass, a perturbed one is flagged, gates follow the precision."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import tiny_artifact, tiny_module, tiny_onnx

from deploykit.backends import make_runner
from deploykit.errors import DeployKitError
from deploykit.harness.compare import compare_backends, gate_precision


def test_identical_onnx_passes(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    same = tiny_onnx(tmp_path / "same.onnx")
    res = compare_backends(None, [make_runner(art.path), make_runner(same)], batch=4, samples=8)
    assert res.passed and res.precision == "fp32"
    (row,) = res.rows
    assert row.output == "logits" and row.parity.max_abs == 0 and row.parity.top1_agreement == 1.0
    assert row.parity.count == 8 and res.inputs == {"source": "parity_inputs", "seed": 0, "batch": 4, "samples": 8}


def test_perturbed_onnx_is_flagged(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    bad = tiny_onnx(tmp_path / "bad.onnx", bias_shift=0.05)
    res = compare_backends(None, [make_runner(art.path), make_runner(bad)], batch=2)
    assert not res.passed
    assert any("of the logit range" in f for f in res.failures)
    assert res.rows[0].parity.max_abs == pytest.approx(0.05, rel=1e-3)
    # The same perturbation passes an int8 gate (cosine and top-1 only) only if top-1 holds; say which.
    loose = compare_backends(None, [make_runner(art.path), make_runner(bad)], batch=2, precision="int8")
    assert loose.precision == "int8"
    assert loose.passed == (loose.rows[0].parity.top1_agreement >= 0.95 and loose.rows[0].parity.cosine >= 0.99)


def test_big_perturbation_breaks_top1(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    bad = tiny_onnx(tmp_path / "bad.onnx", bias_shift=100.0)  # class 0 now always wins
    res = compare_backends(None, [make_runner(art.path), make_runner(bad)], batch=4, samples=16, precision="fp16")
    assert not res.passed
    assert any("top-1 agreement" in f for f in res.failures)


def test_torch_against_onnxruntime_on_a_module():
    res = compare_backends(tiny_module(), ["torch", "onnxruntime"], batch=2, samples=4)
    assert res.passed, res.failures
    assert res.reference["backend"] == "torch" and res.rows[0].backend == "onnxruntime"
    d = res.to_dict()
    assert d["passed"] is True and d["rows"][0]["parity"]["count"] == 4


def test_gate_precision_is_the_loosest():
    assert gate_precision(["fp32", None]) == "fp32"
    assert gate_precision(["fp32", "int8", "fp16"]) == "int8"
    assert gate_precision([None, None]) == "fp32"


def test_bad_requests(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    with pytest.raises(DeployKitError, match="at least two backends"):
        compare_backends(art.path, ["onnxruntime"])
    with pytest.raises(DeployKitError, match="batch 9 is outside its profile"):
        compare_backends(art.path, ["onnxruntime", "onnxruntime"], batch=9)
    with pytest.raises(DeployKitError, match="precision 'int4'"):
        compare_backends(art.path, ["onnxruntime", "onnxruntime"], precision="int4")


def test_real_images_from_a_folder(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            arr = np.random.default_rng(i).integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    art = tiny_artifact(tmp_path / "art")
    res = compare_backends(art.path, ["onnxruntime", "onnxruntime"], data=str(tmp_path / "imgs"), batch=4)
    assert res.passed and res.inputs["samples"] == 4 and res.inputs["source"] == str(tmp_path / "imgs")
    with pytest.raises(DeployKitError, match="fewer than one batch of 8"):
        compare_backends(art.path, ["onnxruntime", "onnxruntime"], data=str(tmp_path / "imgs"), batch=8)


def test_exported_artifact_torch_against_onnxruntime(tmp_path):
    from tiny_models import zoo_artifact

    art = zoo_artifact(tmp_path)
    res = compare_backends(art.path, ["torch", "onnxruntime"], batch=2, samples=4)
    assert res.passed, res.failures
    assert res.reference["backend"] == "torch" and res.rows[0].parity.count == 4


def test_perturbed_artifact_is_flagged_against_its_weights(tmp_path):
    from tiny_models import zoo_artifact

    bad = zoo_artifact(tmp_path, bias_shift=0.5)
    res = compare_backends(bad.path, ["torch", "onnxruntime"], batch=2, samples=4)
    assert not res.passed
    assert res.rows[0].parity.max_abs == pytest.approx(0.5, rel=1e-3)


def test_weights_changed_since_export_are_refused(tmp_path):
    from tiny_models import zoo_artifact

    art = zoo_artifact(tmp_path)
    weights = tmp_path / "resnet18.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    with pytest.raises(DeployKitError, match="resnet18.safetensors: sha256 does not match the weights recorded"):
        compare_backends(art.path, ["torch", "onnxruntime"])
