"""Calibrators against distributions whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.errors import DeployKitError
from deploykit.quantize.calibrators import CalibConfig, asymmetric_params, calibrate, quantize_weight, threshold
from deploykit.quantize.stats import TensorStats


def stats_of(*chunks, bins: int = 2048) -> TensorStats:
    st = TensorStats("t", num_bins=bins)
    for c in chunks:
        st.update(np.asarray(c, np.float32))
    return st


def heavy_tailed(rng, n: int = 200_000) -> np.ndarray:
    """Laplace body with a handful of huge outliers: the kind of tensor that wrecks max calibration."""
    x = rng.laplace(scale=1.0, size=n)
    x[rng.choice(n, 5, replace=False)] = [60.0, -55.0, 80.0, 70.0, -65.0]
    return x


def test_max_is_the_largest_magnitude(rng):
    x = rng.normal(size=10_000)
    x[17] = -9.25
    assert threshold(stats_of(x), CalibConfig("max")) == pytest.approx(9.25, rel=1e-6)


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_matches_numpy_within_a_bin(rng, p):
    x = rng.normal(size=300_000)
    st = stats_of(x[:100_000], x[100_000:] * 1.5)
    allx = np.concatenate([x[:100_000], x[100_000:] * 1.5])
    want = np.percentile(np.abs(allx), p)
    assert threshold(st, CalibConfig("percentile", percentile=p)) == pytest.approx(want, abs=2 * st.bin_width)


def test_entropy_clips_rare_outliers(rng):
    x = heavy_tailed(rng)
    t = threshold(stats_of(x), CalibConfig("entropy"))
    assert t < 0.3 * np.abs(x).max()  # the outliers are clipped away...
    assert t > np.percentile(np.abs(x), 99.0)  # ...but the body of the distribution is kept


def _mse(x: np.ndarray, t: float) -> float:
    s = t / 127
    return float(np.mean((x - np.clip(np.round(x / s), -127, 127) * s) ** 2))


def test_mse_clips_a_heavy_tail_at_the_true_optimum(rng):
    x = rng.laplace(scale=1.0, size=200_000)  # exponential tails: clipping the last few % pays
    t = threshold(stats_of(x), CalibConfig("mse"))
    amax = np.abs(x).max()
    assert t < 0.85 * amax
    grid = np.linspace(1, amax, 200)
    best = min(_mse(x, g) for g in grid)
    assert _mse(x, t) <= 1.02 * best
    assert _mse(x, t) < 0.8 * _mse(x, amax)  # better than not clipping at all


def test_mse_keeps_real_outliers_that_dominate_the_error(rng):
    x = heavy_tailed(rng)  # five huge values: clipping them would cost more than rounding noise
    t = threshold(stats_of(x), CalibConfig("mse"))
    grid = np.linspace(1, np.abs(x).max(), 200)
    assert _mse(x, t) <= 1.05 * min(_mse(x, g) for g in grid)


def test_entropy_keeps_the_range_of_a_compact_distribution(rng):
    x = rng.uniform(-1, 1, size=100_000)  # nothing worth clipping
    assert threshold(stats_of(x), CalibConfig("entropy")) > 0.9


def test_relu_zero_spike_does_not_drag_entropy_down(rng):
    x = np.maximum(rng.normal(size=200_000), 0)  # half exact zeros
    t = threshold(stats_of(x), CalibConfig("entropy"))
    assert t > np.percentile(x[x > 0], 99)


def test_calibrate_covers_every_tensor_and_unknown_methods_fail(rng):
    stats = {"a": stats_of(rng.normal(size=1000)), "b": stats_of(rng.uniform(0, 4, 1000))}
    out = calibrate(stats, CalibConfig("percentile", percentile=99.9), asymmetric=True)
    assert set(out) == {"a", "b"} and all(v > 0 for v in out.values())
    with pytest.raises(DeployKitError, match="minmax"):
        CalibConfig("minmax")


def test_per_channel_weights_are_symmetric_int8(rng):
    w = rng.normal(size=(6, 3, 3, 3)).astype(np.float32) * np.arange(1, 7).reshape(6, 1, 1, 1)
    q, s = quantize_weight(w, axis=0)
    assert q.dtype == np.int8 and s.shape == (6,)
    assert np.abs(q).max() == 127 and q.min() >= -127
    np.testing.assert_allclose(s, np.abs(w).reshape(6, -1).max(1) / 127, rtol=1e-6)
    err = np.abs(q * s.reshape(6, 1, 1, 1) - w).max(axis=(1, 2, 3))
    assert (err <= s / 2 + 1e-7).all()


def test_asymmetric_params_represent_zero_exactly():
    scale, zp = asymmetric_params(0.0, 5.1)
    assert zp == 0 and scale == pytest.approx(5.1 / 255)
    scale, zp = asymmetric_params(-1.0, 3.0)
    assert 0 < zp < 255 and abs(-1.0 / scale + zp) < 1  # -1 maps near uint8 0
