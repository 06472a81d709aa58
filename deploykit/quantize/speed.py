"""Does INT8 pay on this machine? A short latency check against the FP32 parent, timed as deployed.

INT8 is only worth deploying where it is faster: on a CPU without VNNI (AVX2 only), ONNX
Runtime's 8-bit kernels multiply through three instructions and an INT8 model can be slower
than its FP32 parent; on a small model the FP32 parent can be as fast once ORT's threads spin as
they do in a deployment. ``check_speed`` times both models with the deployment's session
settings, one session alive at a time, in alternating fresh-session blocks (so a shared
machine's load hits them alike) at batch 1 and the artifact's optimal batch, in seconds, and
returns the per-batch speed-up with its interval, the configuration and the machine it was
measured on, and which installed CPU runtime runs the INT8 model fastest. The quantiser records
both in the manifest and the CLI says, in one line, when INT8 does not pay.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deploykit.errors import DeployKitError

ROUNDS = 8  # fresh-session blocks: 6 give a 95% interval for the median per-block ratio, 8 give 99.2%
MAX_ITERS = 20  # calls per block and batch; at least 1


@dataclass
class BatchSpeed:
    """FP32 against INT8 at one batch size: medians of the per-round p50s and their ratio."""

    batch: int
    fp32_ms: float
    int8_ms: float
    speedup: float  # median per-round FP32 / INT8: above 1, INT8 is faster
    interval: tuple[float, float] | None  # 95% interval of the speed-up; None: too few rounds
    verdict: str  # "faster", "slower", "no measurable difference" (INT8 against FP32)
    rounds: int
    iters_per_round: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "fp32_ms": round(self.fp32_ms, 4),
            "int8_ms": round(self.int8_ms, 4),
            "speedup": round(self.speedup, 4),
            "interval": [round(x, 4) for x in self.interval] if self.interval else None,
            "verdict": self.verdict,
            "rounds": self.rounds,
            "iters_per_round": self.iters_per_round,
        }


@dataclass
class SpeedCheck:
    """The INT8-against-FP32 check as recorded in the manifest (``results["int8_speed"]``)."""

    batches: list[BatchSpeed]
    threads: int | None
    seconds: float
    machine: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # why INT8 may not pay on this CPU (cpu_info().int8_note())
    config: dict[str, Any] = field(default_factory=dict)  # how it was timed (harness.bench.timing_config)
    runtime_choice: Any = None  # harness.bench.RuntimeChoice: the fastest CPU runtime for the INT8 model
    # Installed CPU runtimes that could not load the INT8 model, with their one-line reason: left out
    # of the comparison, never a reason to fail the quantisation (ONNX Runtime is the reference).
    unavailable: dict[str, str] = field(default_factory=dict)
    # The runtime whose INT8 figures decide the verdict: the one the profile's layout was placed
    # for (an openvino-profile file is judged as OpenVINO runs it), ONNX Runtime when that one is
    # missing or cannot load the model. FP32 is always the parent as ONNX Runtime runs it.
    runtime: str = "onnxruntime"
    # The INT8 model in each other installed CPU runtime against the same FP32 parent, per batch:
    # where INT8 does not pay in ``runtime`` it may in another (an onnxruntime-profile DenseNet-121
    # on a Sapphire Rapids: 0.82x in ONNX Runtime at batch 32, 2.24x in OpenVINO).
    rivals: dict[str, list[BatchSpeed]] = field(default_factory=dict)

    @property
    def pays(self) -> bool:
        """INT8 is measurably faster at every batch size checked."""
        return all(b.verdict == "faster" for b in self.batches)

    def advice(self) -> str | None:
        """One line, when INT8 does not pay everywhere: the figures, why, and what to do instead.

        Faster at none: FP32 is the better deployment here. Faster at some batches and within the
        noise or slower at the rest: say which, so nobody reads "does not pay" beside a measured
        speed-up (an INT8 DenseNet-121 at 32x32 in OpenVINO on a Sapphire Rapids: 0.75x at batch 1,
        2.68x at batch 32). Another installed runtime that runs the file faster than FP32 at a batch
        where this one does not is named with how to deploy on it.
        """
        if self.pays:
            return None
        figures = _figures(self.batches)
        why = self.note or "its 8-bit kernels are no faster than FP32 on this model here"
        # only a CPU without VNNI is told that another CPU would do better
        elsewhere = "; or this INT8 one on a CPU with VNNI (AVX-512 VNNI, AVX-VNNI, AMX)" if self.note else ""
        where = "on this machine" if not self.rivals else f"in {self.runtime} on this machine"
        faster = [b.batch for b in self.batches if b.verdict == "faster"]
        slower = [b.batch for b in self.batches if b.verdict == "slower"]
        rival = self._rival_advice(faster)
        if faster and not slower:
            unclear = [b.batch for b in self.batches if b.verdict != "faster"]
            return (
                f"INT8 pays only in part {where} (speed-up over FP32: {figures}): measurably faster "
                f"at batch {_batches(faster)}, not measurably at batch {_batches(unclear)}: {why}; "
                f"deploy it where batch {_batches(faster)} matters{rival}{elsewhere}"
            )
        if faster:  # measurably faster at some batch, measurably slower at another: a split, not "does not pay"
            return (
                f"INT8 pays at batch {_batches(faster)} only {where} (speed-up over FP32: {figures}): "
                f"deploy it for batch {_batches(faster)} and the FP32 (optimised) artifact for batch "
                f"{_batches(slower)}{rival}{elsewhere}"
            )
        return (
            f"INT8 does not pay {where} (speed-up over FP32: {figures}): {why}; "
            f"deploy the FP32 (optimised) artifact{rival or ' here'}{elsewhere}"
        )

    def _rival_advice(self, covered: Sequence[int]) -> str:
        """Where another installed runtime runs this INT8 file measurably faster than FP32 at a batch
        the judged runtime does not: that runtime, its figures and how to deploy on it ("" if none)."""
        best: tuple[str, list[int]] | None = None
        for name, speeds in self.rivals.items():
            gains = [b.batch for b in speeds if b.verdict == "faster" and b.batch not in covered]
            if gains and (best is None or len(gains) > len(best[1])):
                best = (name, gains)
        if best is None:
            return ""
        name, gains = best
        tip = "; --profile openvino lays INT8 out for it" if name == "openvino" and self.runtime != name else ""
        # Predictor(backend="auto") takes this record's choice at batch 1, or nearest its expected_batch
        by_batch = getattr(self.runtime_choice, "by_batch", None) or {}
        auto_at = [b for b in gains if by_batch.get(b) == name]
        how = f"--backend {name}"
        if by_batch and by_batch.get(min(by_batch)) == name:
            how += ', or Predictor backend="auto"'
        elif auto_at:
            how += f', or Predictor backend="auto", expected_batch={auto_at[0]}'
        return (
            f", or this INT8 one in {name} at batch {_batches(gains)}, where it pays ({_figures(self.rivals[name])}): "
            f"{how}{tip}"
        )

    def summary(self) -> str:
        """One line for the console: the measured speed-up beside the word INT8."""
        parts = []
        for b in self.batches:
            ci = f" [{b.interval[0]:.2f}, {b.interval[1]:.2f}]" if b.interval else ""
            parts.append(
                f"batch {b.batch}: {b.int8_ms:.2f} ms vs FP32 {b.fp32_ms:.2f} ms, {b.speedup:.2f}x{ci} ({b.verdict})"
            )
        on = "" if self.runtime == "onnxruntime" else f" (INT8 in {self.runtime}, FP32 in onnxruntime)"
        line = f"INT8 speed on this machine{on}: " + "; ".join(parts)
        if self.config:
            spin = "spinning on" if self.config.get("spinning") else "spinning off"
            line += f" (as deployed: one session at a time, {spin}, {self.config.get('blocks')} fresh-session blocks)"
        choice = self.runtime_choice
        if choice is not None and len(next(iter(choice.p50_ms.values()), {})) > 1:
            line += f"; {choice.summary()}"
        for name, why in self.unavailable.items():
            line += f"; {name} left out (cannot load the INT8 model: {why})"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": [b.to_dict() for b in self.batches],
            "pays": self.pays,
            "threads": self.threads,
            "seconds": round(self.seconds, 1),
            "note": self.note,
            "advice": self.advice(),
            "load_average": _loadavg(),
            "machine": self.machine,
            "config": self.config,
            "unavailable": dict(self.unavailable),
            "int8_runtime": self.runtime,
            "other_runtimes": {name: [b.to_dict() for b in speeds] for name, speeds in self.rivals.items()},
        }


def _batches(sizes: Sequence[int]) -> str:
    return ", ".join(str(b) for b in sizes)


def _figures(speeds: Sequence[BatchSpeed]) -> str:
    return ", ".join(f"{b.speedup:.2f}x at batch {b.batch}" for b in speeds)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


THROUGHPUT_BATCH = 32  # checked when an artifact's optimum is its smallest batch (the export default)


def artifact_batches(profile: Any) -> list[int]:
    """Its smallest batch (1) and its optimal one; where the optimum is the smallest too, a
    throughput batch (32, or the largest allowed). A fixed-batch artifact: its one batch."""
    if not profile.dynamic:
        return [int(profile.max)]
    low = max(1, int(profile.min))
    opt = max(low, int(profile.opt))
    if opt == low:
        opt = max(low, min(int(profile.max), THROUGHPUT_BATCH))
    return sorted({low, opt})


def check_speed(
    int8_model: Any,
    fp32_model: Any,
    batches: Sequence[int] = (1,),
    threads: int | None = None,
    budget_s: float = 3.0,
    progress: Callable[[str], None] | None = None,
    runtimes: Sequence[str] | None = None,
    target: str = "onnxruntime",
) -> SpeedCheck:
    """Time ``int8_model`` against ``fp32_model`` (paths or ModelProtos) as they would be deployed.

    Both run on ONNX Runtime's CPU provider with the deployment's session settings
    (:func:`deploykit.onnx_io.deployment_settings`: thread spinning on), one session alive at a
    time, in ``ROUNDS`` alternating fresh-session blocks (``deploykit.harness.bench.benchmark_blocks``)
    with as many calls per block as fit ``budget_s`` seconds per batch. The speed-up is the median
    per-block FP32/INT8 ratio with its 95% interval (``median_ratio_ci``). The INT8 model also
    runs on every other installed CPU runtime (``runtimes``, default
    ``deploykit.harness.bench.cpu_runtimes()``) in the same blocks, and the fastest at each batch
    is returned as ``runtime_choice``. ``target`` names the runtime whose INT8 latency decides the
    verdict (the one the file was laid out for); ONNX Runtime when it is not among those timed.
    """
    import tempfile
    from pathlib import Path

    from deploykit.harness.bench import (
        DEFAULT_RUNTIME,
        benchmark_blocks,
        cpu_runtimes,
        deployment_runner,
        runtime_choice,
        size_blocks,
        timing_config,
    )
    from deploykit.harness.significance import median_ratio_ci
    from deploykit.machine import cpu_info, describe_machine

    t0 = time.perf_counter()
    machine = describe_machine()
    names = list(runtimes) if runtimes is not None else cpu_runtimes()
    others = [n for n in names if n != DEFAULT_RUNTIME]
    sizes = [int(b) for b in batches]
    with tempfile.TemporaryDirectory(prefix="deploykit-speed-") as tmp:
        int8_path = _as_path(int8_model, Path(tmp) / "int8.onnx") if others else int8_model
        unavailable = _unloadable(int8_path, others, threads)
        others = [n for n in others if n not in unavailable]
        label = {DEFAULT_RUNTIME: "int8", **{n: f"int8:{n}" for n in others}}  # runtime -> its INT8 runner
        runners = {
            "fp32": deployment_runner(fp32_model, DEFAULT_RUNTIME, threads),
            **{key: deployment_runner(int8_path, n, threads) for n, key in label.items()},
        }
        if progress:
            progress(
                f"timing INT8 against FP32 at batch {', '.join(map(str, sizes))} ({len(runners)} sessions a block)"
            )
        iters = size_blocks(runners["fp32"], sizes, ROUNDS, len(runners), budget_s, MAX_ITERS)
        timed = benchmark_blocks(runners, sizes, ROUNDS, iters, warmup=1, machine=machine)
    runtime = target if target in others else DEFAULT_RUNTIME

    def against_fp32(key: str) -> list[BatchSpeed]:
        out: list[BatchSpeed] = []
        for i, batch in enumerate(sizes):
            i8 = timed[key].batches[i].round_p50_ms or []
            f32 = timed["fp32"].batches[i].round_p50_ms or []
            ratio = median_ratio_ci(i8, f32)  # INT8 / FP32 latency: below 1, INT8 is faster
            interval = (1 / ratio.ci_high, 1 / ratio.ci_low) if ratio.interval else None
            out.append(
                BatchSpeed(
                    batch=batch,
                    fp32_ms=_median(f32),
                    int8_ms=_median(i8),
                    speedup=1 / ratio.median_ratio,
                    interval=interval,
                    verdict=ratio.verdict,
                    rounds=ROUNDS,
                    iters_per_round=iters[batch],
                )
            )
        return out

    config = timing_config(threads, ROUNDS, iters, 1, {k: r.runner for k, r in timed.items()})
    choice = runtime_choice(
        {n: {b.batch: b.round_p50_ms or [] for b in timed[k].batches} for n, k in label.items()}, config, machine
    )
    return SpeedCheck(
        batches=against_fp32(label[runtime]),
        threads=threads,
        seconds=time.perf_counter() - t0,
        machine=machine,
        note=cpu_info().int8_note(),
        config=config,
        runtime_choice=choice,
        unavailable=unavailable,
        runtime=runtime,
        rivals={n: against_fp32(k) for n, k in label.items() if n != runtime},
    )


def _unloadable(model: Any, names: Sequence[str], threads: int | None) -> dict[str, str]:
    """The runtimes among ``names`` that cannot load ``model``, each with its one-line reason."""
    from deploykit.harness.bench import deployment_runner

    failed: dict[str, str] = {}
    for name in names:
        runner = deployment_runner(model, name, threads)
        try:
            runner.activate()
        except DeployKitError as e:
            failed[name] = str(e).splitlines()[0][:300]
        else:
            runner.deactivate()
    return failed


def _as_path(model: Any, path: Any) -> Any:
    """A path for a ModelProto (every runtime reads a file); a path passes through."""
    if isinstance(model, (str, os.PathLike)):
        return model
    from deploykit.onnx_io import save_onnx

    save_onnx(model, path)
    return path


def _median(xs: Sequence[float]) -> float:
    import statistics

    return float(statistics.median(xs))
