"""Latency benchmarking of any Runner: the one place this project's speed numbers come from.

Method: inputs are made once per batch size; ``warmup`` untimed calls run first (the first one
timed separately as the first-inference cost); then each call to ``runner.infer`` is timed with
``time.perf_counter_ns``, for ``iters`` calls or until ``duration`` seconds have passed (never
fewer than ``min_iters``). Latency is end to end for the caller: host numpy in, host numpy out.
"""

from __future__ import annotations

import dataclasses
import platform
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploykit.backends.base import Runner
from deploykit.errors import DeployKitError
from deploykit.machine import cpu_info, describe_machine, machine_slug  # noqa: F401  (re-exported)
from deploykit.progress import task

DEFAULT_ITERS = 200  # p99 of 200 samples sits between the 2nd and 3rd slowest call
DEFAULT_WARMUP = 10
RELIABLE_P99_ITERS = 100
# How every call is timed; recorded in each report's settings.
TIMING_METHOD = {"timer": "time.perf_counter_ns", "scope": "host numpy in -> host numpy out"}


@dataclass
class LatencyStats:
    """Latency distribution in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float
    std: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> LatencyStats:
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        if ms.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            mean=float(ms.mean()),
            min=float(ms.min()),
            max=float(ms.max()),
            std=float(ms.std()),
        )


@dataclass
class BatchResult:
    """One batch size's measurement."""

    batch: int
    iterations: int
    warmup: int
    latency_ms: LatencyStats
    throughput: float  # images per second, from the mean latency
    first_inference_ms: float
    total_s: float  # wall time of the timed loop
    peak_rss_mb: float | None
    rss_scope: str  # "batch" when the peak was reset before this batch, else "process"
    gpu_peak_mb: float | None = None
    p99_reliable: bool = True  # False when fewer than RELIABLE_P99_ITERS samples back the p99
    # Interleaved runs only: the median of each round, for paired ratios against the other runners.
    round_p50_ms: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BenchResult:
    """A runner measured over one or more batch sizes, with the settings that shaped the numbers."""

    label: str
    runner: dict[str, Any]
    batches: list[BatchResult]
    settings: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=dict)
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "model": self.model,
            "runner": self.runner,
            "settings": self.settings,
            "batches": [b.to_dict() for b in self.batches],
        }

    def batch(self, size: int) -> BatchResult:
        """The result for one batch size."""
        for b in self.batches:
            if b.batch == size:
                return b
        raise KeyError(size)


# -- inputs ----------------------------------------------------------------------------------
def make_feeds(runner: Runner, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs matching the runner's inputs, with the batch dim set to ``batch``."""
    from deploykit.parity import random_feeds

    return random_feeds(runner.input_metadata(), batch=batch, seed=seed, where=runner.name, check_batch=True)


def check_batch_sizes(runner: Runner, batch_sizes: Iterable[int]) -> list[int]:
    """Positive, de-duplicated batch sizes that the runner's artifact profile accepts."""
    out: list[int] = []
    for b in batch_sizes:
        b = int(b)
        if b < 1:
            raise DeployKitError(f"batch size {b} must be at least 1")
        if runner.batch_profile is not None:
            runner.batch_profile.check(b, where=runner.name)
        if b not in out:
            out.append(b)
    if not out:
        raise DeployKitError("no batch sizes given")
    return out


# -- memory ----------------------------------------------------------------------------------
def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) for this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB (VmHWM, else getrusage)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if platform.system() != "Darwin" else kb / 2**20
    except (OSError, ValueError):  # pragma: no cover
        return None


def _gpu_reset(device: str) -> bool:
    if not device.startswith("cuda"):
        return False
    import torch

    if not torch.cuda.is_available():
        return False
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return True


def _gpu_peak_mb() -> float:
    import torch

    torch.cuda.synchronize()
    allocated = torch.cuda.max_memory_allocated() / 2**20
    free, total = torch.cuda.mem_get_info()
    # torch's allocator misses memory ORT/TensorRT allocate themselves: report the larger view.
    return float(max(allocated, (total - free) / 2**20))


# -- the loop --------------------------------------------------------------------------------
def benchmark(
    runner: Runner,
    batch_sizes: Sequence[int] = (1,),
    warmup: int = DEFAULT_WARMUP,
    iters: int | None = None,
    duration: float | None = None,
    *,
    min_iters: int = 10,
    time_limit: float | None = None,
    feeds: dict[int, dict[str, np.ndarray]] | None = None,
    seed: int = 0,
    progress: bool = False,
    label: str | None = None,
    model: str | None = None,
    machine: dict[str, Any] | None = None,
) -> BenchResult:
    """Measure ``runner`` at each batch size; ``iters`` calls, or ``duration`` seconds of calls.

    With neither given, ``DEFAULT_ITERS`` calls are timed. ``time_limit`` (with ``iters``) stops a
    slow model early, once ``min_iters`` calls are in. ``feeds`` maps batch size to ready inputs
    (real data); otherwise random inputs of the runner's shape are used.
    """
    if iters is not None and duration is not None:
        raise DeployKitError("give either iters or duration, not both")
    if iters is not None and iters < 1:
        raise DeployKitError(f"iters {iters} must be at least 1")
    if duration is not None and duration <= 0:
        raise DeployKitError(f"duration {duration} must be positive")
    if warmup < 0:
        raise DeployKitError(f"warmup {warmup} must not be negative")
    if time_limit is not None and (duration is not None or time_limit <= 0):
        raise DeployKitError("time_limit must be positive and goes with iters, not duration")
    if iters is None and duration is None:
        iters = DEFAULT_ITERS
    # With iters and a time limit the loop stops at whichever comes first, never under min_iters.
    limit_s = duration if duration is not None else time_limit
    was_active = runner.is_active
    runner.activate()
    try:
        sizes = check_batch_sizes(runner, batch_sizes)
        results = [
            _bench_one(
                runner,
                b,
                warmup,
                iters,
                limit_s,
                min_iters,
                (feeds or {}).get(b) or make_feeds(runner, b, seed),
                progress,
            )
            for b in sizes
        ]
        desc = runner.describe()
    finally:
        if not was_active:
            runner.deactivate()
    return BenchResult(
        label=label or runner.name,
        model=model,
        runner=desc,
        batches=results,
        settings={
            "warmup": warmup,
            "iters": iters,
            "duration_s": duration,
            "min_iters": min_iters,
            "time_limit_s": time_limit,
            **TIMING_METHOD,
        },
        machine=machine if machine is not None else describe_machine(),
    )


def benchmark_interleaved(
    runners: dict[str, Runner],
    batch: int = 1,
    rounds: int = 10,
    iters_per_round: int = 20,
    warmup: int = DEFAULT_WARMUP,
    *,
    feeds: dict[str, dict[str, np.ndarray]] | None = None,
    seed: int = 0,
    progress: bool = False,
    model: str | None = None,
    machine: dict[str, Any] | None = None,
) -> dict[str, BenchResult]:
    """Time several runners in turn, round after round, so a shared machine's load hits all alike.

    Run one after another, two variants can differ by 10-30% on a busy 2-core machine just because
    one ran while something else did. Here every round times ``iters_per_round`` calls of each
    runner, the order reversed every other round, and each runner's ``round_p50_ms`` keeps the
    median of every round, so a ratio can be taken round by round
    (``deploykit.harness.significance.median_ratio_ci``). Every runner stays active for the whole
    run; ORT sessions should not spin idle threads (``OnnxRuntimeRunner(spin=False)``), or the
    idle sessions steal the cores from the one being timed.
    """
    if not runners:
        raise DeployKitError("benchmark_interleaved needs at least one runner")
    if rounds < 1 or iters_per_round < 1:
        raise DeployKitError(f"rounds ({rounds}) and iters_per_round ({iters_per_round}) must be at least 1")
    if warmup < 0:
        raise DeployKitError(f"warmup {warmup} must not be negative")
    clock = time.perf_counter_ns
    labels = list(runners)
    activated = [k for k in labels if not runners[k].is_active]
    samples: dict[str, list[int]] = {k: [] for k in labels}
    medians: dict[str, list[float]] = {k: [] for k in labels}
    first_ms: dict[str, float] = {}
    try:
        inputs = {}
        for k in labels:
            runner = runners[k].activate()
            check_batch_sizes(runner, [batch])
            inputs[k] = (feeds or {}).get(k) or make_feeds(runner, batch, seed)
            first_ms[k] = _warm_up(runner, inputs[k], warmup)
        start = clock()
        with task(progress, f"{len(labels)} runners interleaved, batch {batch}", rounds) as advance:
            for r in range(rounds):
                for k in labels if r % 2 == 0 else labels[::-1]:
                    runner, x, this_round = runners[k], inputs[k], []
                    for _ in range(iters_per_round):
                        t = clock()
                        runner.infer(x)
                        this_round.append(clock() - t)
                    samples[k] += this_round
                    medians[k].append(float(np.median(this_round)) / 1e6)
                advance()
        loop_s = (clock() - start) / 1e9
        descs = {k: runners[k].describe() for k in labels}
    finally:
        for k in activated:
            runners[k].deactivate()
    machine = machine if machine is not None else describe_machine()
    settings = {
        "warmup": warmup,
        "iters": rounds * iters_per_round,
        "duration_s": None,
        "rounds": rounds,
        "iters_per_round": iters_per_round,
        "interleaved": labels,
        **TIMING_METHOD,
    }
    return {
        k: BenchResult(
            label=k,
            model=model,
            runner=descs[k],
            machine=machine,
            settings=dict(settings),
            batches=[_batch_result(samples[k], batch, warmup, first_ms[k], loop_s, "process", round_p50_ms=medians[k])],
        )
        for k in labels
    }


def benchmark_sessions(
    factories: dict[str, Callable[[], Runner]],
    sessions: int = 6,
    batch: int = 1,
    rounds: int = 4,
    iters_per_round: int = 20,
    warmup: int = DEFAULT_WARMUP,
    **kwargs: Any,
) -> dict[str, list[BenchResult]]:
    """``benchmark_interleaved`` in ``sessions`` blocks, every runner built afresh for each block.

    A runner keeps its memory placement and thread layout for its life, and that alone moves a
    model's latency (one googlenet INT8 file in two fresh ONNX Runtime sessions, 2 cores, batch
    1: the ratio between them ranged 0.91-1.27 over 8 pairs), more than the round-to-round noise
    inside one session. Rounds inside a single session cannot see that, so a comparison needs
    several sessions of each variant: compare them with
    ``deploykit.harness.significance.session_ratio_ci``. Build order alternates between blocks.
    """
    if sessions < 1:
        raise DeployKitError(f"sessions ({sessions}) must be at least 1")
    if not factories:
        raise DeployKitError("benchmark_sessions needs at least one runner factory")
    out: dict[str, list[BenchResult]] = {k: [] for k in factories}
    labels = list(factories)
    for s in range(sessions):
        order = labels if s % 2 == 0 else labels[::-1]
        runners = {k: factories[k]() for k in order}
        timed = benchmark_interleaved(
            {k: runners[k] for k in labels},
            batch=batch,
            rounds=rounds,
            iters_per_round=iters_per_round,
            warmup=warmup,
            **kwargs,
        )
        for k in labels:
            timed[k].settings["session"] = s
            out[k].append(timed[k])
        del runners, timed  # release the sessions before the next block builds its own
    return out


def _bench_one(
    runner: Runner,
    batch: int,
    warmup: int,
    iters: int | None,
    duration: float | None,
    min_iters: int,
    feeds: dict[str, np.ndarray],
    show: bool,
) -> BatchResult:
    scope = "batch" if _reset_peak_rss() else "process"
    gpu = _gpu_reset(runner.device)
    clock = time.perf_counter_ns
    first_ms = _warm_up(runner, feeds, warmup)

    samples: list[int] = []
    total = iters if iters is not None else None
    with task(show, f"{runner.name} batch {batch}", total) as advance:
        start = clock()
        deadline = None if duration is None else start + int(duration * 1e9)
        while True:
            t = clock()
            runner.infer(feeds)  # returns host arrays, so device work has finished
            samples.append(clock() - t)
            advance()
            if iters is not None and len(samples) >= iters:
                break
            if deadline is not None and clock() >= deadline and len(samples) >= min_iters:
                break
        loop_s = (clock() - start) / 1e9
    return _batch_result(samples, batch, warmup, first_ms, loop_s, scope, gpu_peak_mb=_gpu_peak_mb() if gpu else None)


def _warm_up(runner: Runner, feeds: dict[str, np.ndarray], warmup: int) -> float:
    """Untimed warm-up calls; returns the first one's time in ms, reported as the first-inference cost."""
    clock = time.perf_counter_ns
    t0 = clock()
    runner.infer(feeds)
    runner.synchronize()
    first_ms = (clock() - t0) / 1e6
    for _ in range(max(0, warmup - 1)):
        runner.infer(feeds)
    runner.synchronize()
    return first_ms


def _batch_result(
    samples_ns: list[int],
    batch: int,
    warmup: int,
    first_ms: float,
    loop_s: float,
    rss_scope: str,
    gpu_peak_mb: float | None = None,
    round_p50_ms: list[float] | None = None,
) -> BatchResult:
    """Statistics of one batch size's timed calls, as every benchmark path reports them."""
    stats = LatencyStats.from_ns(samples_ns)
    return BatchResult(
        batch=batch,
        iterations=len(samples_ns),
        warmup=warmup,
        latency_ms=stats,
        throughput=batch * 1000.0 / stats.mean,
        first_inference_ms=first_ms,
        total_s=loop_s,
        peak_rss_mb=peak_rss_mb(),
        rss_scope=rss_scope,
        gpu_peak_mb=gpu_peak_mb,
        p99_reliable=len(samples_ns) >= RELIABLE_P99_ITERS,
        round_p50_ms=round_p50_ms,
    )


def cpu_model() -> str:
    """The CPU model string, for naming the machine a result came from."""
    return cpu_info().model


def interleaved_results(
    runners: list[tuple[Any, str | None]],
    batches: list[int],
    rounds: int,
    iters: int | None,
    warmup: int,
    progress: bool,
    machine: dict[str, Any],
    model: str,
) -> list[BenchResult]:
    """Every runner timed round by round at each batch size: one BenchResult per runner, all batch sizes."""
    labels: dict[str, Any] = {}
    for runner, precision in runners:
        label = runner.name if runner.name not in labels else f"{runner.name} {precision or len(labels)}"
        labels[label] = runner
    per_round = max(1, (iters or DEFAULT_ITERS) // rounds)
    by_batch = {
        b: benchmark_interleaved(
            labels,
            batch=b,
            rounds=rounds,
            iters_per_round=per_round,
            warmup=warmup,
            progress=progress,
            model=model,
            machine=machine,
        )
        for b in batches
    }
    results = []
    for label in labels:
        first = by_batch[batches[0]][label]
        results.append(
            BenchResult(
                label=label,
                model=model,
                runner=first.runner,
                settings=first.settings,
                machine=machine,
                batches=[by_batch[b][label].batches[0] for b in batches],
            )
        )
    return results


def speedup_lines(results: list[BenchResult]) -> list[str]:
    """Each interleaved run's per-round speed-up over the first run, with its 95% interval."""
    from deploykit.harness.significance import median_ratio_ci

    lines = []
    base = results[0]
    for other in results[1:]:
        for mine, ref in zip(other.batches, base.batches):
            ci = median_ratio_ci(ref.round_p50_ms, mine.round_p50_ms)
            interval = (
                f"95% CI {ci.ci_low:.2f}-{ci.ci_high:.2f}"
                if ci.interval
                else "too few rounds for a 95% interval: use --rounds 6 or more"
            )
            lines.append(
                f"{other.label} vs {base.label}, batch {mine.batch}: {ci.median_ratio:.2f}x speed-up ({interval})"
            )
    return lines
