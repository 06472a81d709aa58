"""The fallback search: bisection over the SQNR ranking on a subset, confirmed on the full set."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.quantize.calibrators import CalibConfig
from deploykit.quantize.gate import run_gate
from deploykit.quantize.placement import plan_placement, prepare_model
from deploykit.quantize.stats import collect_stats, iter_arrays

from .graphs import residual_block


class FakeValidation:
    """Top-1 as a known function of how many weighted layers run in FP32 (no DQ on the weight),
    so the search's decisions can be checked exactly; records every call."""

    def __init__(self, search_top1, full_top1, has_subset=True):
        self.search_top1, self.full_top1, self.has_subset = search_top1, full_top1, has_subset
        self.search_images, self.full_images = 100, 1000
        self.fp32_search = self.fp32_full = 1.0
        self.calls: list[tuple[int, bool]] = []

    def score(self, model, search):
        prod = {o: n.op_type for n in model.graph.node for o in n.output}
        k = sum(n.op_type in ("Conv", "Gemm") and prod.get(n.input[1]) != "DequantizeLinear" for n in model.graph.node)
        search = search and self.has_subset
        self.calls.append((k, search))
        if search:
            return self.search_top1(k), self.search_images, 1.0
        return self.full_top1(k), self.full_images, 1.0


@pytest.fixture()
def setup(rng):
    model = prepare_model(residual_block())
    x = rng.normal(size=(16, 4, 8, 8)).astype(np.float32)
    plan = plan_placement(model, "tensorrt")
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x, 8))
    return model, stats, x


def search(setup, val, gate, max_fallbacks=10):
    model, stats, x = setup
    return run_gate(model, stats, CalibConfig("max"), "tensorrt", [], val, lambda: [x], gate, max_fallbacks)


def test_bisection_finds_the_fewest_layers_and_confirms_on_the_full_set(setup):
    val = FakeValidation(lambda k: 0.5 + 0.1 * k, lambda k: 0.5 + 0.1 * k)
    attempt, q, plan = search(setup, val, gate=0.8)
    assert attempt.passed and len(attempt.kept) == 3 and attempt.images == 1000
    # k=0 fails, then all 4 (the ranking's length), then the bisection, then one full confirmation
    assert val.calls == [(0, True), (4, True), (2, True), (3, True), (3, False)]
    assert [f.layer for f in attempt.fallbacks] == attempt.kept
    assert len(plan.layers) == 1


def test_search_stops_at_once_when_no_fallback_can_pass(setup):
    val = FakeValidation(lambda k: 0.5 + 0.1 * k, lambda k: 0.5 + 0.1 * k)
    attempt, _, _ = search(setup, val, gate=0.95, max_fallbacks=2)
    assert not attempt.passed
    assert val.calls == [(0, True), (2, True)]  # two scores on the subset, nothing more
    assert "even the 2 most sensitive layers in FP32" in attempt.stopped


def test_full_set_disagreeing_takes_more_layers(setup):
    val = FakeValidation(lambda k: 0.5 + 0.1 * k, lambda k: 0.4 + 0.1 * k)
    attempt, _, _ = search(setup, val, gate=0.8)
    assert attempt.passed and len(attempt.kept) == 4
    assert val.calls[-2:] == [(3, False), (4, False)]


def test_passing_at_once_costs_one_search_score_and_one_confirmation(setup):
    val = FakeValidation(lambda k: 0.99, lambda k: 0.99)
    attempt, _, _ = search(setup, val, gate=0.98)
    assert attempt.passed and attempt.kept == [] and val.calls == [(0, True), (0, False)]


def test_small_sets_are_searched_whole(setup):
    val = FakeValidation(None, lambda k: 0.5 + 0.1 * k, has_subset=False)
    attempt, _, _ = search(setup, val, gate=0.8)
    assert attempt.passed and len(attempt.kept) == 3
    assert all(not s for _, s in val.calls) and val.calls[-1] == (3, False)
    assert len(val.calls) == 4  # 0, 4, 2, 3: the last bisection score is the full-set verdict
