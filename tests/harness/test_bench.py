"""benchmark(): sane statistics, exact call counts, warm-up excluded, bad settings refused."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tiny_models import tiny_artifact, tiny_onnx

from deploykit.backends import make_runner
from deploykit.backends.base import Runner
from deploykit.errors import DeployKitError
from deploykit.harness.bench import LatencyStats, benchmark, make_feeds


class FakeClock:
    """A perf_counter_ns that moves only when a fake runner "works": durations become exact."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += int(round(seconds * 1e9))


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    from deploykit.harness import bench

    fake = FakeClock()
    monkeypatch.setattr(bench.time, "perf_counter_ns", fake)
    return fake


class CountingRunner(Runner):
    """A runner whose first call is slow and later calls are fast, counting every call."""

    backend = "fake"

    def __init__(self, first_s: float = 0.02, fixed_batch: int | None = None) -> None:
        super().__init__("fake", "cpu")
        self.calls = 0
        self.first_s = first_s
        self.batch_dim = fixed_batch if fixed_batch is not None else "batch"

    def _activate(self) -> None:
        self.calls = 0

    def _deactivate(self) -> None:
        pass

    def _input_metadata(self):
        return {"x": (np.dtype(np.float32), (self.batch_dim, 4))}

    def _output_names(self):
        return ["y"]

    def _infer(self, feeds):
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.first_s)
        return {"y": feeds["x"] * 2}


def test_stats_of_a_known_sample():
    s = LatencyStats.from_ns([i * 1_000_000 for i in range(1, 101)])  # 1..100 ms
    assert s.p50 == pytest.approx(50.5) and s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)
    assert s.min == 1 and s.max == 100 and s.mean == pytest.approx(50.5)


def test_counts_match_and_warmup_is_excluded(clock):
    class Costly(CountingRunner):
        def _infer(self, feeds):
            clock.spend(0.3 if self.calls == 0 else 0.002)  # the first call is slow, the rest 2 ms
            return super()._infer(feeds)

    r = Costly(first_s=0)
    res = benchmark(r, [1, 4], warmup=3, iters=40, machine={})
    assert [b.batch for b in res.batches] == [1, 4]
    for b in res.batches:
        assert b.iterations == 40 and b.warmup == 3
        assert b.latency_ms.max == pytest.approx(2.0)  # the slow first call is not among the timed samples
    assert res.batches[0].first_inference_ms == pytest.approx(300.0)
    assert r.calls == 2 * (3 + 40)  # per batch size: warm-up (first call included) + timed iterations
    assert not r.is_active  # benchmark deactivates a runner it activated


def test_statistics_on_a_tiny_onnx_model_are_sane(tmp_path):
    r = make_runner(tiny_onnx(tmp_path / "m.onnx"), threads=1)
    res = benchmark(r, [1, 2], warmup=5, iters=120, machine={})
    for b in res.batches:
        lat = b.latency_ms
        assert 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p99 <= lat.max
        assert lat.min <= lat.mean <= lat.max
        assert b.iterations == 120 and b.p99_reliable
        assert b.throughput == pytest.approx(b.batch * 1000 / lat.mean)
        assert b.peak_rss_mb is not None and b.peak_rss_mb > 10
        assert b.gpu_peak_mb is None
        assert b.total_s * 1000 >= lat.mean * b.iterations * 0.99
    assert res.runner["backend"] == "onnxruntime" and res.runner["threads"] == 1
    assert res.settings["iters"] == 120 and res.settings["warmup"] == 5


def test_duration_mode_runs_for_the_duration(clock):
    class TenMs(CountingRunner):
        def _infer(self, feeds):
            clock.spend(0.01)
            return super()._infer(feeds)

    res = benchmark(TenMs(first_s=0), [1], warmup=0, duration=0.2, min_iters=5, machine={})
    b = res.batches[0]
    assert b.iterations == 20 and b.total_s == pytest.approx(0.2)  # 20 calls of 10 ms fill 0.2 s
    assert res.settings["duration_s"] == 0.2 and res.settings["iters"] is None


def test_default_is_enough_for_p99():
    res = benchmark(CountingRunner(first_s=0), [1], warmup=0, machine={})
    assert res.batches[0].iterations >= 200 and res.batches[0].p99_reliable


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iters": 10, "duration": 1.0}, "either iters or duration"),
        ({"iters": 0}, "iters 0 must be at least 1"),
        ({"duration": -1.0}, "duration -1.0 must be positive"),
        ({"warmup": -1}, "warmup -1 must not be negative"),
        ({"batch_sizes": [0]}, "batch size 0 must be at least 1"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(DeployKitError, match=message):
        benchmark(CountingRunner(), **{"batch_sizes": [1], **kwargs})


def test_fixed_batch_model_refuses_other_batch_sizes():
    r = CountingRunner(fixed_batch=1).activate()
    assert make_feeds(r, 1)["x"].shape == (1, 4)
    with pytest.raises(DeployKitError, match="batch 2 requested but input 'x' has a fixed batch of 1"):
        make_feeds(r, 2)


def test_artifact_profile_is_checked(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    r = make_runner(art.path)
    with pytest.raises(DeployKitError, match="batch 9 is outside its profile \\[1, 8\\]"):
        benchmark(r, [1, 9], iters=2, machine={})
    res = benchmark(r, [8], warmup=1, iters=3, machine={})
    assert res.batches[0].latency_ms.p50 > 0


def test_real_feeds_are_used():
    r = CountingRunner(first_s=0)
    seen = []
    orig = r._infer

    def spy(feeds):
        seen.append(feeds["x"])
        return orig(feeds)

    r._infer = spy  # type: ignore[method-assign]
    x = np.full((2, 4), 7, np.float32)
    benchmark(r, [2], warmup=1, iters=2, feeds={2: {"x": x}}, machine={})
    assert all((s == 7).all() for s in seen) and len(seen) == 3


def test_time_limit_cuts_a_slow_row_but_keeps_min_iters(clock):
    class Slow(CountingRunner):
        def _infer(self, feeds):
            clock.spend(0.01)
            return super()._infer(feeds)

    res = benchmark(Slow(first_s=0), [1], warmup=0, iters=1000, time_limit=0.1, min_iters=15, machine={})
    assert res.batches[0].iterations == 15  # 0.1 s holds 10 calls of 10 ms; min_iters wins
    assert res.settings["time_limit_s"] == 0.1 and res.settings["iters"] == 1000
    with pytest.raises(DeployKitError, match="time_limit"):
        benchmark(Slow(), [1], duration=1.0, time_limit=0.5)


class SleepyRunner(CountingRunner):
    """Costs a fixed (fake-clock) time per call and logs its name, to check interleaving and ratios."""

    def __init__(self, name: str, sleep_s: float, log: list[str], clock: FakeClock | None = None) -> None:
        super().__init__(first_s=0.0)
        self.name, self.sleep_s, self.log, self.clock = name, sleep_s, log, clock

    def _infer(self, feeds):
        self.log.append(self.name)
        if self.clock is not None:
            self.clock.spend(self.sleep_s)
        return {"y": feeds["x"]}


def test_interleaved_rounds_alternate_order_and_keep_round_medians():
    from deploykit.harness.bench import benchmark_interleaved

    log: list[str] = []
    runners = {"a": SleepyRunner("a", 0.0, log), "b": SleepyRunner("b", 0.0, log)}
    out = benchmark_interleaved(runners, batch=2, rounds=4, iters_per_round=3, warmup=2, machine={})
    timed = log[4:]  # two warm-up calls each come first
    assert log[:4] == ["a", "a", "b", "b"]
    assert timed == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    for k in "ab":
        b = out[k].batches[0]
        assert b.iterations == 12 and b.batch == 2 and len(b.round_p50_ms) == 4
        assert out[k].settings["interleaved"] == ["a", "b"] and out[k].settings["rounds"] == 4
        assert not runners[k].is_active


def test_interleaved_ratio_finds_the_slower_runner(clock):
    from deploykit.harness.bench import benchmark_interleaved
    from deploykit.harness.significance import median_ratio_ci

    log: list[str] = []
    out = benchmark_interleaved(
        {"fast": SleepyRunner("fast", 0.001, log, clock), "slow": SleepyRunner("slow", 0.003, log, clock)},
        rounds=8,
        iters_per_round=3,
        warmup=1,
        machine={},
    )
    r = median_ratio_ci(out["slow"].batches[0].round_p50_ms, out["fast"].batches[0].round_p50_ms)
    assert r.verdict == "slower" and r.median_ratio == pytest.approx(3.0)


def test_interleaved_report_passes_the_schema_and_bad_settings_are_refused(tmp_path):
    from deploykit.harness.bench import benchmark_interleaved
    from deploykit.harness.report import bench_report, validate_report

    runners = {"one": make_runner(tiny_onnx(tmp_path / "m.onnx"), threads=1)}
    out = benchmark_interleaved(runners, rounds=2, iters_per_round=2, warmup=1)
    validate_report(bench_report(list(out.values())))
    with pytest.raises(DeployKitError, match="at least one runner"):
        benchmark_interleaved({})
    with pytest.raises(DeployKitError, match="rounds"):
        benchmark_interleaved(runners, rounds=0)


def test_sessions_build_every_runner_afresh_per_block_in_alternating_order():
    from deploykit.harness.bench import benchmark_sessions

    log: list[str] = []
    built: list[str] = []

    def factory(name: str, delay: float):
        def make():
            built.append(name)
            return SleepyRunner(name, delay, log)

        return make

    out = benchmark_sessions(
        {"a": factory("a", 0.0), "b": factory("b", 0.0)}, sessions=3, rounds=2, iters_per_round=2, warmup=1, machine={}
    )
    assert built == ["a", "b", "b", "a", "a", "b"]
    for k in "ab":
        assert [r.settings["session"] for r in out[k]] == [0, 1, 2]
        assert all(len(r.batches[0].round_p50_ms) == 2 for r in out[k])
    with pytest.raises(DeployKitError, match="sessions"):
        benchmark_sessions({"a": factory("a", 0.0)}, sessions=0)
