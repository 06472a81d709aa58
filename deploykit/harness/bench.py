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
            "sessions": "one session for every batch size" + ("" if was_active else ", released after"),
            **TIMING_METHOD,
        },
        machine=machine if machine is not None else describe_machine(),
    )


SESSIONS_ONE_AT_A_TIME = "a fresh session per runner per round, one alive at a time"


def benchmark_blocks(
    runners: dict[str, Runner],
    batches: Sequence[int] = (1,),
    blocks: int = 8,
    iters_per_block: int | dict[int, int] = 20,
    warmup: int = DEFAULT_WARMUP,
    *,
    feeds: dict[str, dict[int, dict[str, np.ndarray]]] | None = None,
    seed: int = 0,
    progress: bool = False,
    model: str | None = None,
    machine: dict[str, Any] | None = None,
) -> dict[str, BenchResult]:
    """Time several runners in alternating fresh-session blocks, one session alive at a time.

    Every block activates each runner in turn (order reversed every other block), times
    ``warmup`` untimed then ``iters_per_block`` timed calls at every batch size, and deactivates
    it before the next one is built. That is how a deployment runs (one session with its threads
    spinning, nothing else alive), so the runners keep their deployment settings: an idle session
    kept alive beside the timed one would spin its threads on the same cores (ORT's default), and
    turning spinning off to prevent that times a configuration no deployment runs. A fresh
    session per block also samples the spread between sessions (memory placement, thread
    layout), which rounds inside one session cannot see. Each runner's ``round_p50_ms`` holds the
    median of every block, so a ratio can be taken block by block
    (:func:`deploykit.harness.significance.median_ratio_ci`; 6 blocks give a 95% interval).

    A runner passed in already active stays active throughout (the caller keeps it alive, e.g. a
    compiled torch module or a GPU engine whose rebuild would dominate): the settings name it
    under ``kept_alive``.
    """
    if not runners:
        raise DeployKitError("benchmark_blocks needs at least one runner")
    if blocks < 1:
        raise DeployKitError(f"rounds/blocks ({blocks}) must be at least 1")
    sizes = [int(b) for b in batches]
    per_block = iters_per_block if isinstance(iters_per_block, dict) else dict.fromkeys(sizes, iters_per_block)
    if any(per_block.get(b, 0) < 1 for b in sizes):
        raise DeployKitError(f"iters_per_round must be at least 1 at every batch size, got {per_block}")
    if warmup < 0:
        raise DeployKitError(f"warmup {warmup} must not be negative")
    clock = time.perf_counter_ns
    labels = list(runners)
    kept = [k for k in labels if runners[k].is_active]
    samples = {k: {b: [] for b in sizes} for k in labels}
    medians: dict[str, dict[int, list[float]]] = {k: {b: [] for b in sizes} for k in labels}
    first_ms: dict[str, dict[int, float]] = {k: {} for k in labels}
    inputs: dict[str, dict[int, dict[str, np.ndarray]]] = {k: dict((feeds or {}).get(k, {})) for k in labels}
    descs: dict[str, dict[str, Any]] = {}
    start = clock()
    what = f"{len(labels)} runner(s) in fresh-session blocks, batch {', '.join(map(str, sizes))}"
    with task(progress, what, blocks) as advance:
        for r in range(blocks):
            for k in labels if r % 2 == 0 else labels[::-1]:
                runner = runners[k].activate()
                try:
                    for b in sizes:
                        if b not in inputs[k]:
                            check_batch_sizes(runner, [b])
                            inputs[k][b] = make_feeds(runner, b, seed)
                        x = inputs[k][b]
                        first_ms[k].setdefault(b, _warm_up(runner, x, warmup))
                        this_block = []
                        for _ in range(per_block[b]):
                            t = clock()
                            runner.infer(x)
                            this_block.append(clock() - t)
                        samples[k][b] += this_block
                        medians[k][b].append(float(np.median(this_block)) / 1e6)
                    descs.setdefault(k, runner.describe())
                finally:
                    if k not in kept:
                        runner.deactivate()  # released before the next session is built
            advance()
    loop_s = (clock() - start) / 1e9
    machine = machine if machine is not None else describe_machine()
    settings = {
        "warmup": warmup,
        "iters": blocks * per_block[sizes[0]],
        "duration_s": None,
        "rounds": blocks,
        "iters_per_round": per_block[sizes[0]],
        "interleaved": labels,
        "sessions": SESSIONS_ONE_AT_A_TIME if not kept else f"fresh per round, except {', '.join(kept)} kept alive",
        "one_session_alive": not kept or len(labels) == 1,
        "kept_alive": kept,
        **TIMING_METHOD,
    }
    return {
        k: BenchResult(
            label=k,
            model=model,
            runner=descs[k],
            machine=machine,
            settings=dict(settings),
            batches=[
                _batch_result(samples[k][b], b, warmup, first_ms[k][b], loop_s, "process", round_p50_ms=medians[k][b])
                for b in sizes
            ],
        )
        for k in labels
    }


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
    runner (``warmup`` untimed first), the order reversed every other round, and each runner's
    ``round_p50_ms`` keeps the median of every round, so a ratio can be taken round by round
    (``deploykit.harness.significance.median_ratio_ci``). Every round is a fresh-session block of
    :func:`benchmark_blocks`: one session alive at a time, with the runners' own (deployment)
    settings, thread spinning included.
    """
    if not runners:
        raise DeployKitError("benchmark_interleaved needs at least one runner")
    if rounds < 1 or iters_per_round < 1:
        raise DeployKitError(f"rounds ({rounds}) and iters_per_round ({iters_per_round}) must be at least 1")
    return benchmark_blocks(
        runners,
        [batch],
        rounds,
        iters_per_round,
        warmup,
        feeds={k: {batch: f} for k, f in (feeds or {}).items()},
        seed=seed,
        progress=progress,
        model=model,
        machine=machine,
    )


def benchmark_sessions(
    factories: dict[str, Callable[[], Runner]],
    sessions: int = 6,
    batch: int = 1,
    rounds: int = 4,
    iters_per_round: int = 20,
    warmup: int = DEFAULT_WARMUP,
    **kwargs: Any,
) -> dict[str, list[BenchResult]]:
    """``benchmark_interleaved`` in ``sessions`` groups, every runner built afresh for each group.

    A runner keeps its memory placement and thread layout for its life, and that alone moves a
    model's latency (one googlenet INT8 file in two fresh ONNX Runtime sessions, 2 cores, batch
    1: the ratio between them ranged 0.91-1.27 over 8 pairs), more than the round-to-round noise
    inside one session. Each round of ``benchmark_interleaved`` builds a fresh session already;
    the groups keep the per-group layout that
    ``deploykit.harness.significance.session_ratio_ci`` reads. Build order alternates between groups.
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
        del runners, timed  # release the runners before the next group builds its own
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
    """Every runner timed in ``rounds`` fresh-session blocks over all batch sizes (``bench --rounds``)."""
    labels: dict[str, Any] = {}
    for runner, precision in runners:
        label = runner.name if runner.name not in labels else f"{runner.name} {precision or len(labels)}"
        labels[label] = runner
    per_round = max(1, (iters or DEFAULT_ITERS) // rounds)
    timed = benchmark_blocks(
        labels, batches, rounds, per_round, warmup, progress=progress, model=model, machine=machine
    )
    return [timed[label] for label in labels]


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


# -- which CPU runtime runs an artifact fastest ----------------------------------------------
# CPU backends that run an ONNX file as it is, the default first. Only those make_runner knows
# (deploykit.backends.BACKENDS) and this machine has installed take part; a backend added there
# (openvino) joins the comparison without a change here. Backends that change the precision
# (openvino-bf16) are left out: an artifact labelled fp32 must not be run in bf16 because it won.
CPU_RUNTIMES = ("onnxruntime", "openvino")
DEFAULT_RUNTIME = "onnxruntime"


def cpu_runtimes(candidates: Sequence[str] = CPU_RUNTIMES) -> list[str]:
    """The CPU runtimes in ``candidates`` that ``make_runner`` knows and this machine has installed."""
    from deploykit.backends import BACKENDS, backend_status

    status = backend_status()
    return [name for name in candidates if name in BACKENDS and status.get(name) is None]


def deployment_runner(target: Any, backend: str = DEFAULT_RUNTIME, threads: int | None = None) -> Runner:
    """A runner with the session settings a deployment runs (:func:`deploykit.onnx_io.deployment_settings`)."""
    from deploykit.backends import backend_name, make_runner
    from deploykit.onnx_io import deployment_settings

    s = deployment_settings(threads)
    opts: dict[str, Any] = {}
    if backend_name(backend) == "onnxruntime":
        opts = {"spin": s.spin, "inter_op_threads": s.inter_op_threads, "graph_optimization_level": s.optimization}
    return make_runner(target, backend=backend, threads=s.threads, **opts)


def pick_runtime(block_p50_ms: dict[str, list[float]], default: str = DEFAULT_RUNTIME) -> tuple[str, dict[str, Any]]:
    """The runtime to deploy at one batch size, from the per-block medians of each runtime.

    ``default`` (ONNX Runtime) stays unless another runtime is measurably faster: the 95%
    interval of its per-block latency ratio to the default lies wholly below 1
    (:func:`deploykit.harness.significance.median_ratio_ci`). A difference within the noise never
    moves a deployment off the runtime every artifact is verified on. Among the measurably
    faster ones, the lowest median ratio wins. Returns the name and each rival's ratio.
    """
    from deploykit.harness.significance import median_ratio_ci

    if default not in block_p50_ms:
        return min(block_p50_ms, key=lambda k: float(np.median(block_p50_ms[k]))), {}
    ratios = {
        k: median_ratio_ci(v, block_p50_ms[default]) for k, v in block_p50_ms.items() if k != default
    }  # rival / default latency: below 1, the rival is faster
    faster = {k: r for k, r in ratios.items() if r.verdict == "faster"}
    best = min(faster, key=lambda k: faster[k].median_ratio) if faster else default
    return best, {k: r.to_dict() for k, r in ratios.items()}


@dataclass
class RuntimeChoice:
    """Which installed CPU runtime ran an artifact fastest at each batch, as timed here.

    Recorded in the manifest as ``results["runtime_choice"]`` (:meth:`to_dict`), where
    ``Predictor(backend="auto")`` reads it. ``best`` is the choice at batch 1 (the smallest batch
    measured): the latency a served request sees, and the batch every artifact runs at; a
    throughput deployment reads ``by_batch`` at its own batch.
    """

    machine: str  # deploykit.machine.machine_slug()
    by_batch: dict[int, str]
    p50_ms: dict[int, dict[str, float]]
    config: dict[str, Any]
    ratios: dict[int, dict[str, Any]] = field(default_factory=dict)  # rival / default, per batch

    @property
    def best(self) -> str:
        return self.by_batch[min(self.by_batch)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "best": self.best,
            "by_batch": {str(b): n for b, n in sorted(self.by_batch.items())},
            "p50_ms": {str(b): {k: round(v, 4) for k, v in d.items()} for b, d in sorted(self.p50_ms.items())},
            "config": self.config,
        }

    def summary(self) -> str:
        """One line: the runtime chosen at each batch, with every runtime's p50.

        A rival with the lower median that is not measurably faster is said to be within the
        noise, so "onnxruntime" never stands beside a smaller figure unexplained.
        """
        parts = []
        for b in sorted(self.by_batch):
            chosen = self.by_batch[b]
            ms = ", ".join(f"{k} {v:.3g} ms" for k, v in self.p50_ms[b].items())
            lower = [k for k, v in self.p50_ms[b].items() if k != chosen and v < self.p50_ms[b].get(chosen, v)]
            noise = f"; {', '.join(lower)} not measurably faster" if lower else ""
            parts.append(f"batch {b}: {chosen} ({ms}{noise})")
        return "fastest CPU runtime here: " + "; ".join(parts)


def runtime_choice(
    block_p50_ms: dict[str, dict[int, list[float]]], config: dict[str, Any], machine: dict[str, Any] | None = None
) -> RuntimeChoice:
    """A :class:`RuntimeChoice` from each runtime's per-block medians at each batch (same blocks)."""
    batches = sorted({b for per in block_p50_ms.values() for b in per})
    by_batch, p50, ratios = {}, {}, {}
    for b in batches:
        per_runtime = {k: v[b] for k, v in block_p50_ms.items()}
        by_batch[b], ratios[b] = pick_runtime(per_runtime)
        p50[b] = {k: float(np.median(v)) for k, v in per_runtime.items()}
    return RuntimeChoice(machine=machine_slug(machine), by_batch=by_batch, p50_ms=p50, config=config, ratios=ratios)


def timing_config(
    threads: int | None, blocks: int, iters: dict[int, int], warmup: int, runners: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The configuration recorded beside a figure timed by :func:`benchmark_blocks` with deployment settings."""
    import os

    from deploykit.onnx_io import deployment_settings

    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {
        **deployment_settings(threads).to_dict(),
        "sessions": SESSIONS_ONE_AT_A_TIME,
        "blocks": blocks,
        "iters_per_block": {str(b): n for b, n in iters.items()},
        "warmup_per_block": warmup,
        "load_average": load,
        # each runner's own settings as it ran (an OpenVINO runner's hint and precision included);
        # the label says which model it ran, so the runner's file name and guessed precision go
        "runners": {k: {o: v for o, v in d.items() if o not in ("name", "precision")} for k, d in runners.items()},
    }


def size_blocks(
    runner: Runner, batches: Sequence[int], blocks: int, variants: int, budget_s: float, max_iters: int = 20
) -> dict[int, int]:
    """Calls per block at each batch so that all blocks of ``variants`` runners fit about ``budget_s`` per batch.

    One call of ``runner`` (one session, warmed by one call, then released) is timed per batch.
    """
    out = {}
    with runner:
        for b in batches:
            x = make_feeds(runner, b)
            runner.infer(x)
            t = time.perf_counter()
            runner.infer(x)
            per_call = max(time.perf_counter() - t, 1e-6)
            out[int(b)] = int(min(max_iters, max(1, budget_s / (blocks * variants * per_call))))
    return out


def compare_runtimes(
    target: Any,
    batches: Sequence[int] = (1,),
    threads: int | None = None,
    *,
    runtimes: Sequence[str] | None = None,
    blocks: int = 8,
    iters_per_block: int | dict[int, int] | None = None,
    budget_s: float = 3.0,
    warmup: int = 2,
    progress: bool = False,
    machine: dict[str, Any] | None = None,
) -> RuntimeChoice:
    """Time ``target`` (an artifact, ONNX file or proto) on every installed CPU runtime and pick one per batch.

    Runtimes are timed in alternating fresh-session blocks, one session alive at a time, each
    with its deployment settings (:func:`deployment_runner`); ``blocks`` of 6 or more give the
    95% interval :func:`pick_runtime` needs to move off ONNX Runtime. Without
    ``iters_per_block`` the calls per block are sized to fit ``budget_s`` seconds of timed calls.
    """
    names = list(runtimes) if runtimes is not None else cpu_runtimes()
    if not names:
        raise DeployKitError("no CPU runtime is installed to compare (onnxruntime is needed)")
    runners = {n: deployment_runner(target, n, threads) for n in names}
    sizes = [int(b) for b in batches]
    if iters_per_block is None:
        iters = size_blocks(runners[names[0]], sizes, blocks, len(names), budget_s)
    else:
        iters = iters_per_block if isinstance(iters_per_block, dict) else dict.fromkeys(sizes, iters_per_block)
    machine = machine if machine is not None else describe_machine()
    timed = benchmark_blocks(runners, sizes, blocks, iters, warmup, progress=progress, machine=machine)
    per = {n: {b.batch: b.round_p50_ms or [] for b in timed[n].batches} for n in names}
    config = timing_config(threads, blocks, iters, warmup, {n: timed[n].runner for n in names})
    return runtime_choice(per, config, machine)
