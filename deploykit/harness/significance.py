"""Paired significance tests: is one model really more accurate, or faster, than another?

Two INT8 models scored on the same 10,000 images, or timed in the same rounds, differ a little by
chance. A claim such as "at least as accurate" or "at least as fast" needs the size of that chance
next to the difference, so the comparisons here are paired (same images, same rounds) and make
no normality assumption.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from math import comb
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError


@dataclass(frozen=True)
class McNemarResult:
    """Images only model A got right, only B got right, and the exact two-sided p-value."""

    a_only: int
    b_only: int
    p_value: float

    @property
    def difference(self) -> int:
        """Images by which A is ahead of B (negative: behind)."""
        return self.a_only - self.b_only

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "difference": self.difference}


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> McNemarResult:
    """Exact McNemar test on per-image correctness of two models over the same images.

    Only the discordant images carry information; under "equally accurate" each one is a fair
    coin, so the p-value is a two-sided binomial tail.
    """
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise DeployKitError(f"paired correctness arrays differ in shape: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    n, k = a_only + b_only, min(a_only, b_only)
    p = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return McNemarResult(a_only, b_only, p)


@dataclass(frozen=True)
class RatioResult:
    """Median of per-round ratios A/B with a distribution-free confidence interval."""

    median_ratio: float
    ci_low: float
    ci_high: float
    coverage: float  # the interval's actual coverage (order statistics give discrete levels)
    rounds: int
    level: float  # the coverage asked for

    @property
    def interval(self) -> tuple[float, float] | None:
        """(low, high) when the rounds allow the requested level; None when there are too few."""
        return (self.ci_low, self.ci_high) if self.coverage >= self.level else None

    @property
    def verdict(self) -> str:
        """ "faster"/"slower" (A against B) only when an interval at the asked level excludes 1."""
        if self.interval is None:
            return "too few rounds to tell"
        if self.ci_high < 1.0:
            return "faster"
        if self.ci_low > 1.0:
            return "slower"
        return "no measurable difference"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def median_ratio_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> RatioResult:
    """Paired latency comparison: per-round ratios a[i]/b[i], their median and its interval.

    Both variants ran in the same rounds, so a per-round ratio cancels what the machine was doing
    at the time. The interval [x_(j), x_(n-j+1)] of the sorted ratios covers the median with
    probability 1 - 2 P(Binomial(n, 1/2) < j); j is the largest that keeps that at ``level`` or
    more. With fewer than 6 rounds no such j exists at 95% and the interval is the full range.
    """
    if len(a) != len(b) or not a:
        raise DeployKitError(f"paired latencies need the same non-zero number of rounds, got {len(a)} and {len(b)}")
    if not 0.0 < level < 1.0:
        raise DeployKitError(f"confidence level {level} must be between 0 and 1")
    if min(b) <= 0 or min(a) <= 0:
        raise DeployKitError("latencies must be positive")
    ratios = sorted(x / y for x, y in zip(a, b))
    n = len(ratios)
    j, tail = 0, 0.0
    while j < n and tail + comb(n, j) / 2**n <= (1 - level) / 2:
        tail += comb(n, j) / 2**n
        j += 1
    if j == 0:
        lo, hi, coverage = ratios[0], ratios[-1], 1.0 - 2 / 2**n
    else:
        lo, hi, coverage = ratios[j - 1], ratios[n - j], 1.0 - 2 * tail
    return RatioResult(statistics.median(ratios), lo, hi, coverage, n, level)


def session_ratio_ci(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], level: float = 0.95) -> RatioResult:
    """Paired latency comparison over several sessions of each variant (``benchmark_sessions``).

    ``a[s]`` and ``b[s]`` are the per-round medians of session block ``s``. Each block gives one
    ratio, the median of its per-round ratios; the interval is taken over blocks, so it covers
    the spread between fresh sessions as well as the machine's noise. ``rounds`` in the result
    counts blocks; 6 are needed for a 95% interval.
    """
    if len(a) != len(b) or not a:
        raise DeployKitError(f"paired sessions need the same non-zero number of blocks, got {len(a)} and {len(b)}")
    per_block = [median_ratio_ci(ra, rb, level).median_ratio for ra, rb in zip(a, b)]
    return median_ratio_ci(per_block, [1.0] * len(per_block), level)
