"""Calibrators: choose the clipping threshold of each activation from its |x| histogram.

``max`` keeps every value, ``percentile`` drops the rarest tail, ``entropy`` minimises the KL
divergence between the FP32 and the quantised distribution (TensorRT's entropy calibrator: 128
levels, thresholds searched over the histogram bins), ``mse`` minimises the expected squared
quantisation error (rounding noise inside the range plus clipping error outside it). Weights are
quantised per output channel, symmetrically, from their exact max.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError
from deploykit.quantize.stats import TensorStats

METHODS = ("max", "percentile", "entropy", "mse")
INT8_MAX = 127
UINT8_MAX = 255


@dataclass(frozen=True)
class CalibConfig:
    """How thresholds are chosen: method plus its knobs."""

    method: str = "entropy"
    percentile: float = 99.99
    entropy_levels: int = 128  # TensorRT's entropy calibrator quantises |x| into 128 bins
    entropy_stride: int = 0  # 0 = pick from the histogram size (about 512 candidates)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise DeployKitError(f"calibration method '{self.method}' is not one of {', '.join(METHODS)}")
        if not 50.0 < self.percentile <= 100.0:
            raise DeployKitError(f"percentile {self.percentile} must be in (50, 100]")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method}
        if self.method == "percentile":
            d["percentile"] = self.percentile
        if self.method == "entropy":
            d["levels"] = self.entropy_levels
        return d


def max_threshold(stats: TensorStats) -> float:
    """The largest |x| seen: nothing is clipped."""
    return stats.amax


def percentile_threshold(stats: TensorStats, percentile: float) -> float:
    """The |x| below which ``percentile`` % of the values lie (linear inside the bin)."""
    total = stats.hist.sum()
    if total == 0 or stats.hist_range <= 0:
        return stats.amax
    target = total * percentile / 100.0
    cdf = np.cumsum(stats.hist)
    i = int(np.searchsorted(cdf, target, side="left"))
    i = min(i, stats.num_bins - 1)
    below = cdf[i - 1] if i > 0 else 0
    frac = (target - below) / max(stats.hist[i], 1)
    t = (i + float(np.clip(frac, 0.0, 1.0))) * stats.bin_width
    return float(min(t, stats.amax))


def entropy_threshold(stats: TensorStats, levels: int = 128, stride: int = 0) -> float:
    """Threshold minimising KL(P || Q) between the clipped histogram and its ``levels``-bin copy."""
    hist = stats.hist.astype(np.float64)
    n = stats.num_bins
    if n > 1:
        # The spike of exact zeros (everything a ReLU clipped) carries no information about the
        # range and would drag the threshold down; flatten it into its neighbour, as TensorRT's
        # own histogram calibrator does.
        hist[0] = hist[1]
    if hist.sum() == 0 or stats.hist_range <= 0:
        return stats.amax
    last = int(np.nonzero(hist)[0][-1]) + 1  # no candidate beyond the last non-empty bin is needed
    if last <= levels:
        return stats.amax  # the data already fits in ``levels`` bins: nothing worth clipping
    stride = stride or max(1, n // 512)
    candidates = list(range(levels, last + 1, stride))
    if candidates[-1] != last:
        candidates.append(last)
    suffix = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])
    best_i, best_kl = last, np.inf
    for i in candidates:
        p = hist[:i].copy()
        p[i - 1] += suffix[i]  # outliers are folded into the last kept bin
        sliced = hist[:i]
        starts = (np.arange(levels) * i) // levels
        group = np.repeat(np.arange(levels), np.diff(np.append(starts, i)))
        nonzero = sliced > 0
        sums = np.add.reduceat(sliced, starts)
        counts = np.add.reduceat(nonzero.astype(np.float64), starts)
        q = np.where(nonzero, sums[group] / np.maximum(counts[group], 1.0), 0.0)
        kl = _kl(p, q)
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(min(best_i * stats.bin_width, stats.amax))


def _kl(p: np.ndarray, q: np.ndarray, eps: float = 1e-4) -> float:
    """KL(P || Q) with TensorRT-style smoothing of empty Q bins where P has mass."""
    p = p / p.sum()
    qs = q.sum()
    if qs == 0:
        return np.inf
    q = q / qs
    hole = (q == 0) & (p > 0)
    if hole.any():
        q = q + eps * hole
        q = q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def mse_threshold(stats: TensorStats, levels: int = INT8_MAX) -> float:
    """Threshold minimising expected squared error: step^2/12 inside the range, (|x|-T)^2 outside."""
    hist = stats.hist.astype(np.float64)
    if hist.sum() == 0 or stats.hist_range <= 0:
        return stats.amax
    w = stats.bin_width
    centres = (np.arange(stats.num_bins) + 0.5) * w
    # suffix sums give the clipping error of every candidate in one vectorised step
    s0 = np.cumsum(hist[::-1])[::-1]
    s1 = np.cumsum((hist * centres)[::-1])[::-1]
    s2 = np.cumsum((hist * centres**2)[::-1])[::-1]
    k = np.arange(1, stats.num_bins + 1)
    t = k * w  # candidate thresholds: upper bin edges
    tail = np.append(s0[1:], 0.0), np.append(s1[1:], 0.0), np.append(s2[1:], 0.0)
    inside = s0[0] - tail[0]
    clip_err = tail[2] - 2 * t * tail[1] + t**2 * tail[0]
    round_err = inside * (t / levels) ** 2 / 12.0
    err = clip_err + round_err
    best = int(np.argmin(err))
    return float(min(t[best], stats.amax))


def threshold(stats: TensorStats, cfg: CalibConfig, unsigned: bool = False) -> float:
    """One tensor's clipping threshold under ``cfg`` (``unsigned``: uint8 over [0, T])."""
    if stats.count == 0:
        raise DeployKitError(f"tensor '{stats.name}' received no calibration data")
    if cfg.method == "max":
        return max_threshold(stats)
    if cfg.method == "percentile":
        return percentile_threshold(stats, cfg.percentile)
    if cfg.method == "entropy":
        # 128 levels whatever the sign: with 256 the KL search starts at a loss-free but heavily
        # clipped candidate and under-weights clipping (measured: ReLU ranges cut to a third).
        return entropy_threshold(stats, levels=cfg.entropy_levels, stride=cfg.entropy_stride)
    return mse_threshold(stats, levels=UINT8_MAX if unsigned else INT8_MAX)


def calibrate(stats: dict[str, TensorStats], cfg: CalibConfig, asymmetric: bool = False) -> dict[str, float]:
    """Thresholds for every tensor; ``asymmetric`` lets non-negative tensors use all 256 uint8 levels."""
    out = {}
    for name, st in stats.items():
        unsigned = asymmetric and st.min >= 0
        out[name] = threshold(st, cfg, unsigned=unsigned)
    return out


# ----------------------------------------------------------------------------- scales / weights


def symmetric_scale(amax: float) -> float:
    """int8 scale for a symmetric range [-amax, amax] (zero point 0)."""
    return float(amax) / INT8_MAX if amax > 0 else 1.0


def asymmetric_params(lo: float, hi: float) -> tuple[float, int]:
    """uint8 (scale, zero point) covering [lo, hi] with 0 exactly representable."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return 1.0, 0
    scale = (hi - lo) / UINT8_MAX
    zp = int(np.clip(np.round(-lo / scale), 0, UINT8_MAX))
    return float(scale), zp


def quantize_weight(w: np.ndarray, axis: int | None = 0, qmax: int = INT8_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights in [-qmax, qmax], per output channel along ``axis`` (None: per tensor).

    ``qmax`` below 127 is the reduced range that CPUs without VNNI need (see placement.ORT_LAYOUTS).
    """
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        amax = np.array(np.abs(w).max() if w.size else 0.0, dtype=np.float32)
        scale = np.array(float(amax) / qmax if amax > 0 else 1.0, dtype=np.float32)
        q = np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8)
        return q, scale
    red = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=red) if w.size else np.zeros(w.shape[axis], np.float32)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale
