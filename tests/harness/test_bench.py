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


class AliveRunner(SleepyRunner):
    """Counts the runners active at once across a test, and how often each was built."""

    alive: list[int] = [0, 0]  # now, most

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.activations = 0

    def _activate(self) -> None:
        super()._activate()
        self.activations += 1
        AliveRunner.alive[0] += 1
        AliveRunner.alive[1] = max(AliveRunner.alive)

    def _deactivate(self) -> None:
        AliveRunner.alive[0] -= 1


def test_interleaved_rounds_alternate_order_with_a_fresh_session_each_turn():
    from deploykit.harness.bench import benchmark_interleaved

    log: list[str] = []
    AliveRunner.alive[:] = [0, 0]
    runners = {"a": AliveRunner("a", 0.0, log), "b": AliveRunner("b", 0.0, log)}
    out = benchmark_interleaved(runners, batch=2, rounds=4, iters_per_round=3, warmup=2, machine={})
    a, b = ["a"] * 5, ["b"] * 5  # each turn: a fresh session, two warm-up calls, three timed ones
    assert log == a + b + b + a + a + b + b + a
    assert AliveRunner.alive == [0, 1]  # never two alive at once, none left alive
    for k in "ab":
        res = out[k].batches[0]
        assert res.iterations == 12 and res.batch == 2 and len(res.round_p50_ms) == 4
        assert out[k].settings["interleaved"] == ["a", "b"] and out[k].settings["rounds"] == 4
        assert out[k].settings["one_session_alive"] is True and out[k].settings["kept_alive"] == []
        assert runners[k].activations == 4 and not runners[k].is_active


def test_blocks_time_every_batch_in_one_session_and_keep_a_caller_held_runner_alive():
    from deploykit.harness.bench import benchmark_blocks

    log: list[str] = []
    AliveRunner.alive[:] = [0, 0]
    held = AliveRunner("held", 0.0, log).activate()
    fresh = AliveRunner("fresh", 0.0, log)
    out = benchmark_blocks({"held": held, "fresh": fresh}, [1, 4], blocks=3, iters_per_block={1: 2, 4: 1}, warmup=1)
    assert fresh.activations == 3 and held.activations == 1 and held.is_active and not fresh.is_active
    assert [b.batch for b in out["fresh"].batches] == [1, 4]
    assert [b.iterations for b in out["fresh"].batches] == [6, 3]
    assert all(len(b.round_p50_ms) == 3 for b in out["held"].batches)
    assert out["fresh"].settings["kept_alive"] == ["held"] and out["fresh"].settings["one_session_alive"] is False
    with pytest.raises(DeployKitError, match="at least 1"):
        benchmark_blocks({"fresh": fresh}, [1], blocks=2, iters_per_block={4: 1})


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
    assert log[:6] == ["a"] * 3 + ["b"] * 3  # warm-up, two calls; each runner on its own
    for k in "ab":
        assert [r.settings["session"] for r in out[k]] == [0, 1, 2]
        assert all(len(r.batches[0].round_p50_ms) == 2 for r in out[k])
    with pytest.raises(DeployKitError, match="sessions"):
        benchmark_sessions({"a": factory("a", 0.0)}, sessions=0)


# -- timing what deploys, and which runtime is fastest -----------------------------------------
ORT_ALL = "GraphOptimizationLevel.ORT_ENABLE_ALL"


def test_the_timer_makes_sessions_as_the_predictor_does_one_alive_at_a_time(monkeypatch, tmp_path):
    from timing_fakes import SessionSpy

    from deploykit.harness.bench import SESSIONS_ONE_AT_A_TIME, compare_runtimes
    from deploykit.onnx_io import deployment_settings
    from deploykit.runtime import Predictor

    art = tiny_artifact(tmp_path / "art")
    spy = SessionSpy(monkeypatch)
    choice = compare_runtimes(art.path, [1, 2], threads=1, runtimes=["onnxruntime"], blocks=3, iters_per_block=2)
    assert len(spy.options) == 3 and spy.max_alive == 1 and spy.alive == 0  # one fresh session a block
    deployed = {"threads": 1, "inter_op_threads": None, "spin": True, "inter_op_spin": True, "optimization": ORT_ALL}
    assert all(SessionSpy.settings(so) == deployed for so in spy.options)
    Predictor.from_artifact(art.path, threads=1)  # what a deployment (and serve's stub) runs
    assert SessionSpy.settings(spy.options[-1]) == deployed
    assert deployment_settings(1).ort_kwargs() == {
        "threads": 1,
        "inter_op_threads": None,
        "spin": True,
        "optimization": "all",
    }
    c = choice.config
    assert c["spinning"] is True and c["intra_op_threads"] == 1 and c["sessions"] == SESSIONS_ONE_AT_A_TIME
    assert c["blocks"] == 3 and c["iters_per_block"] == {"1": 2, "2": 2} and "load_average" in c
    assert choice.by_batch == {1: "onnxruntime", 2: "onnxruntime"}


def _noisy(base: list[float], factor: float, wobble: list[float]) -> list[float]:
    return [x * factor * w for x, w in zip(base, wobble)]


ORT_BLOCKS = [1.00, 1.05, 0.98, 1.02, 1.10, 0.97, 1.01, 1.03]
WOBBLE = [0.97, 1.03, 0.99, 1.02, 0.96, 1.04, 0.98, 1.01]


def test_another_runtime_replaces_onnxruntime_only_when_measurably_faster():
    from deploykit.harness.bench import pick_runtime

    tie = {"onnxruntime": ORT_BLOCKS, "openvino": _noisy(ORT_BLOCKS, 0.99, WOBBLE)}  # 1% faster, 4% noise
    assert pick_runtime(tie)[0] == "onnxruntime"
    best, ratios = pick_runtime({"onnxruntime": ORT_BLOCKS, "openvino": _noisy(ORT_BLOCKS, 0.8, WOBBLE)})
    assert best == "openvino" and ratios["openvino"]["verdict"] == "faster"
    assert pick_runtime({"onnxruntime": ORT_BLOCKS, "openvino": _noisy(ORT_BLOCKS, 1.3, WOBBLE)})[0] == "onnxruntime"
    three = {"onnxruntime": ORT_BLOCKS, "a": _noisy(ORT_BLOCKS, 0.9, WOBBLE), "b": _noisy(ORT_BLOCKS, 0.7, WOBBLE)}
    assert pick_runtime(three)[0] == "b"
    few = {"onnxruntime": ORT_BLOCKS[:3], "openvino": [x / 2 for x in ORT_BLOCKS[:3]]}  # no 95% interval yet
    assert pick_runtime(few)[0] == "onnxruntime"


def test_compare_runtimes_picks_the_measurably_faster_backend_per_batch(monkeypatch, tmp_path):
    from timing_fakes import fake_backends

    from deploykit.harness.bench import compare_runtimes
    from deploykit.machine import machine_slug

    fake_backends(monkeypatch)
    path = tiny_onnx(tmp_path / "m.onnx")
    choice = compare_runtimes(
        path, [1, 4], threads=1, runtimes=["onnxruntime", "fake", "slow"], blocks=6, iters_per_block=20
    )
    d = choice.to_dict()
    assert set(d) == {"machine", "best", "by_batch", "p50_ms", "config"}
    assert d["machine"] == machine_slug() and d["best"] == "fake" and d["by_batch"] == {"1": "fake", "4": "fake"}
    assert set(d["p50_ms"]["1"]) == {"onnxruntime", "fake", "slow"}
    assert d["p50_ms"]["1"]["fake"] < d["p50_ms"]["1"]["onnxruntime"] < d["p50_ms"]["1"]["slow"]
    assert d["config"]["runners"]["fake"]["backend"] == "fake" and d["config"]["blocks"] == 6
    slow = compare_runtimes(path, [1], threads=1, runtimes=["onnxruntime", "slow"], blocks=6, iters_per_block=20)
    assert slow.best == "onnxruntime" and slow.ratios[1]["slow"]["median_ratio"] > 1


def test_cpu_runtimes_are_the_registered_and_installed_ones(monkeypatch):
    import deploykit.backends as backends
    from deploykit.harness.bench import CPU_RUNTIMES, cpu_runtimes

    assert cpu_runtimes()[0] == "onnxruntime" and "openvino" in CPU_RUNTIMES
    monkeypatch.setattr(backends, "BACKENDS", (*backends.BACKENDS, "openvino"))
    monkeypatch.setattr(backends, "backend_status", lambda: {"onnxruntime": None, "openvino": None})
    assert cpu_runtimes() == ["onnxruntime", "openvino"]
    monkeypatch.setattr(backends, "backend_status", lambda: {"onnxruntime": None, "openvino": "not installed"})
    assert cpu_runtimes() == ["onnxruntime"]
