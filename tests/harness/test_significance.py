import numpy as np
import pytest

from deploykit.errors import DeployKitError
from deploykit.harness.significance import mcnemar_exact, median_ratio_ci


def _correctness(a_only: int, b_only: int, both: int = 50, neither: int = 10):
    a = np.array([True] * a_only + [False] * b_only + [True] * both + [False] * neither)
    b = np.array([False] * a_only + [True] * b_only + [True] * both + [False] * neither)
    return a, b


def test_mcnemar_counts_only_discordant_images_and_matches_the_binomial_tail():
    a, b = _correctness(7, 11)
    t = mcnemar_exact(a, b)
    assert (t.a_only, t.b_only, t.difference) == (7, 11, -4)
    # Two-sided exact binomial tail P(X <= 7 | n=18, p=1/2) * 2, computed independently.
    from math import comb

    expected = 2 * sum(comb(18, i) for i in range(8)) / 2**18
    assert t.p_value == pytest.approx(expected) and t.p_value == pytest.approx(0.4807, abs=1e-4)
    # Concordant images do not move the p-value.
    assert mcnemar_exact(*_correctness(7, 11, both=5000, neither=900)).p_value == pytest.approx(t.p_value)


def test_mcnemar_detects_a_lopsided_split_and_handles_no_disagreement():
    assert mcnemar_exact(*_correctness(30, 5)).p_value < 0.001
    same = np.array([True, False, True])
    t = mcnemar_exact(same, same)
    assert t.p_value == 1.0 and t.difference == 0
    with pytest.raises(DeployKitError, match="differ in shape"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def test_ratio_interval_uses_binomial_order_statistics():
    # 20 rounds: the 95% interval is the 6th to 15th smallest ratio, coverage 1 - 2 P(B <= 5) = 0.9586.
    b = [10.0] * 20
    a = [10.0 * (0.90 + 0.01 * i) for i in range(20)]  # ratios 0.90 .. 1.09 in order
    r = median_ratio_ci(a, b)
    assert r.rounds == 20
    assert r.ci_low == pytest.approx(0.95) and r.ci_high == pytest.approx(1.04)
    assert r.coverage == pytest.approx(0.9586, abs=1e-4)
    assert r.median_ratio == pytest.approx(0.995)
    assert r.interval == (r.ci_low, r.ci_high)
    assert r.verdict == "no measurable difference"


def test_ratio_verdict_follows_the_interval_not_the_median():
    rng = np.random.default_rng(0)
    machine = rng.uniform(0.8, 1.6, 30)  # the machine's load moves both variants alike
    b = list(10.0 * machine)
    slower = list(10.5 * machine * rng.uniform(0.99, 1.01, 30))  # 5% slower, every round
    assert median_ratio_ci(slower, b).verdict == "slower"
    faster = list(9.5 * machine * rng.uniform(0.99, 1.01, 30))
    assert median_ratio_ci(faster, b).verdict == "faster"
    noisy = list(10.0 * machine * rng.uniform(0.9, 1.1, 30))  # no real difference
    assert median_ratio_ci(noisy, b).verdict == "no measurable difference"


def test_ratio_with_few_rounds_falls_back_to_the_full_range():
    r = median_ratio_ci([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert (r.ci_low, r.ci_high) == (1.0, 3.0) and r.coverage == pytest.approx(0.75)
    assert r.interval is None  # 75% coverage falls short of the 95% asked for
    assert r.verdict == "too few rounds to tell"
    # even when every ratio is above 1: two rounds cannot support a 95% claim
    assert median_ratio_ci([1.2, 1.3], [1.0, 1.0]).verdict == "too few rounds to tell"


def test_ratio_bad_input_is_a_clear_error():
    with pytest.raises(DeployKitError, match="same non-zero number of rounds"):
        median_ratio_ci([1.0], [1.0, 2.0])
    with pytest.raises(DeployKitError, match="must be positive"):
        median_ratio_ci([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(DeployKitError, match="confidence level"):
        median_ratio_ci([1.0], [1.0], level=1.5)


def test_session_ratio_takes_one_ratio_per_block_and_its_interval_over_blocks():
    from deploykit.harness.significance import session_ratio_ci

    # six blocks; inside each the ratio is steady, between blocks it moves (a session effect)
    block_ratios = [1.04, 0.99, 1.06, 1.02, 1.05, 1.03]
    b = [[10.0, 10.0, 10.0, 10.0]] * 6
    a = [[10.0 * r] * 4 for r in block_ratios]
    r = session_ratio_ci(a, b)
    assert r.rounds == 6
    assert r.ci_low == pytest.approx(0.99) and r.ci_high == pytest.approx(1.06)
    assert r.median_ratio == pytest.approx(1.035)
    assert r.verdict == "no measurable difference"
    # the same numbers pooled as rounds of one session would claim a difference
    pooled = median_ratio_ci([x for blk in a for x in blk], [y for blk in b for y in blk])
    assert pooled.verdict == "slower"
    with pytest.raises(DeployKitError, match="same non-zero number of blocks"):
        session_ratio_ci(a, b[:5])


def test_session_ratio_finds_a_difference_every_block_shows():
    from deploykit.harness.significance import session_ratio_ci

    a = [[11.0 + 0.1 * i, 11.2] for i in range(6)]
    b = [[10.0, 10.0]] * 6
    assert session_ratio_ci(a, b).verdict == "slower"
    assert session_ratio_ci(b, a).verdict == "faster"
