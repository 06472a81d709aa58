"""Parity metrics and gates: known perturbations give known numbers; NaN and drift fail the gates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError
from deploykit.parity import (
    GATES,
    Int8ParityGate,
    ParityGate,
    check_gate,
    compare_outputs,
    gate_for,
    parity_inputs,
)


def logits(n: int = 6, k: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32) * 3


def test_identical_outputs_are_perfect():
    ref = logits()
    r = compare_outputs(ref, ref.copy())
    assert r.max_abs == 0 and r.max_rel == 0
    assert r.cosine == pytest.approx(1.0)
    assert r.top1_agreement == 1.0 and r.count == 6
    assert r.logit_range == pytest.approx(float(ref.max() - ref.min()))
    assert check_gate(r, "fp32") == [] and check_gate(r, "fp16") == [] and check_gate(r, "int8") == []


def test_known_perturbation_gives_known_errors():
    ref = logits()
    out = ref.copy()
    out[2, 3] += 0.05
    rng = float(ref.max() - ref.min())
    r = compare_outputs(ref, out)
    assert r.max_abs == pytest.approx(0.05, rel=1e-4)
    assert r.max_rel == pytest.approx(0.05 / rng, rel=1e-4)
    assert r.count == 6 and r.cosine < 1.0


def test_top1_flip_and_cosine_are_counted():
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 2.0, 3.0]], np.float32)
    out = ref.copy()
    out[0] = [0.0, 1.0, 0.0]  # arg-max flips, cosine of this row is 0
    r = compare_outputs(ref, out)
    assert r.top1_agreement == pytest.approx(0.75)
    assert r.cosine == pytest.approx((0.0 + 1 + 1 + 1) / 4)
    fails = check_gate(r, "fp32")
    assert any("top-1 agreement 75.00%" in f for f in fails)


def test_negated_output_has_cosine_minus_one():
    ref = logits()
    r = compare_outputs(ref, -ref)
    assert r.cosine == pytest.approx(-1.0)
    assert check_gate(r, "fp16")


def test_fp32_gate_threshold_is_relative_to_logit_range():
    ref = np.array([[0.0, 10.0, 5.0]], np.float32)  # range 10: the FP32 limit is 1e-3 absolute
    ok = ref + np.array([[0.0, 0.0, 0.0009]], np.float32)
    bad = ref + np.array([[0.0, 0.0, 0.0011]], np.float32)
    assert check_gate(compare_outputs(ref, ok), "fp32") == []
    fails = check_gate(compare_outputs(ref, bad), "fp32")
    assert len(fails) == 1 and "logit range" in fails[0] and "1e-04" in fails[0]


def test_fp16_gate_on_cosine_and_top1():
    gate = gate_for("fp16")
    assert gate.min_top1 == 0.99 and gate.min_cosine == 0.999 and gate.max_rel is None
    ref = logits(n=200, seed=1)
    noisy = ref + np.random.default_rng(2).standard_normal(ref.shape).astype(np.float32) * 0.5
    r = compare_outputs(ref, noisy)
    assert r.cosine < 0.999
    assert any("cosine" in f for f in check_gate(r, "fp16"))


def test_int8_gate_is_a_placeholder_class_with_its_values():
    g = GATES["int8"]
    assert isinstance(g, Int8ParityGate)
    assert (g.min_cosine, g.min_top1) == (0.99, 0.95)
    assert gate_for("mixed") == g


def test_nan_output_fails_every_gate():
    ref = logits()
    out = ref.copy()
    out[1, 1] = np.nan
    r = compare_outputs(ref, out)
    assert np.isnan(r.max_abs)
    assert r.top1_agreement <= 5 / 6
    for precision in ("fp32", "fp16", "int8"):
        assert check_gate(r, precision), precision
    json.dumps(r.to_dict())  # NaN becomes a string, so the manifest stays valid JSON
    assert r.to_dict()["max_abs"] == "nan"


def test_custom_gate_and_unknown_precision():
    r = compare_outputs(logits(), logits() + 0.01)
    assert check_gate(r, "fp32", gate=ParityGate(max_rel=1.0)) == []
    with pytest.raises(DeployKitError, match="precision 'fp8'"):
        check_gate(r, "fp8")


def test_shape_mismatch_and_empty_are_one_line_errors():
    with pytest.raises(DeployKitError, match=r"shape \(2, 10\) does not match the reference \(3, 10\)"):
        compare_outputs(logits(n=3), logits(n=2))
    with pytest.raises(DeployKitError, match="empty"):
        compare_outputs(np.zeros((0, 3)), np.zeros((0, 3)))


def test_to_dict_has_every_metric():
    d = compare_outputs(logits(), logits()).to_dict()
    assert set(d) == {"max_abs", "max_rel", "cosine", "top1_agreement", "logit_range", "count", "classes"}
    assert d["classes"] is True and compare_outputs(np.ones((4, 1)), np.ones((4, 1))).classes is False


def test_random_feeds_fill_symbolic_dims_and_refuse_what_they_cannot():
    from deploykit.errors import DeployKitError
    from deploykit.parity import random_feeds

    spec = {"x": (np.float32, ("batch", 3, 8, 8)), "mask": (np.int64, ("batch", "n"))}
    a = random_feeds(spec, batch=2, seed=3, dims={"n": 5, "batch": 2})
    b = random_feeds(spec, batch=2, seed=3, dims={"n": 5, "batch": 2})
    assert a["x"].shape == (2, 3, 8, 8) and a["mask"].shape == (2, 5) and a["mask"].dtype == np.int64
    assert all(np.array_equal(a[k], b[k]) for k in a)  # a fixed seed gives fixed inputs
    with pytest.raises(DeployKitError, match="symbolic dim 1"):
        random_feeds(spec, batch=2)
    with pytest.raises(DeployKitError, match="fixed batch of 4"):
        random_feeds({"x": (np.float32, (4, 3))}, batch=2, check_batch=True)
    assert random_feeds({"x": (np.float32, (4, 3))}, batch=2)["x"].shape == (4, 3)


def test_parity_inputs_are_fixed_seed_normalised_images():
    cfg = DataConfig(input_size=(3, 20, 24), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    a = parity_inputs(cfg, 4, seed=0)
    assert a.shape == (4, 3, 20, 24) and a.dtype == np.float32
    np.testing.assert_array_equal(a, parity_inputs(cfg, 4, seed=0))
    assert not np.array_equal(a, parity_inputs(cfg, 4, seed=1))
    # Undo the normalisation: pixels lie in [0, 1] like a decoded image.
    mean = np.array(cfg.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.array(cfg.std, np.float32).reshape(1, 3, 1, 1)
    pixels = a * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert pixels.std() > 0.1  # not a constant image
    # Smooth like a photo: neighbouring pixels correlate far more than white noise would.
    corr = np.corrcoef(pixels[..., :-1].ravel(), pixels[..., 1:].ravel())[0, 1]
    assert corr > 0.5


def test_parity_inputs_grayscale_and_bad_batch():
    cfg = DataConfig(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,))
    assert parity_inputs(cfg, 2).shape == (2, 1, 8, 8)
    with pytest.raises(DeployKitError, match="at least 1"):
        parity_inputs(cfg, 0)


@pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Fashion-MNIST is not installed (dataset-fashion-mnist)",
)
def test_dataset_inputs_are_real_preprocessed_images():
    from deploykit.parity import dataset_inputs

    cfg = DataConfig(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=10)
    batches = list(dataset_inputs("fashion-mnist:test[:10]", cfg, limit=7, batch=4))
    assert [b.shape for b in batches] == [(4, 3, 32, 32), (3, 3, 32, 32)]
    x = np.concatenate(batches)
    assert x.dtype == np.float32 and x.min() >= -1.0 - 1e-6 and x.max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(x[:, 0], x[:, 1])  # grayscale replicated to 3 channels
