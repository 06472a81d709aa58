"""The accuracy gate: INT8 must keep ``gate`` x FP32 top-1, else the most sensitive layers go back to FP32.

Given collected statistics, a calibrator config and a validation set, :func:`run_gate` quantises
and measures top-1 on ONNX Runtime (graph optimisations on, so the fused INT8 kernels that users
deploy are the ones measured). When the gate fails, layers are ranked once by the SQNR they lose
and the search bisects over how many of the most sensitive ones return to FP32, scoring each
candidate on an evenly strided subset of the validation set (:class:`Validation`). It stops at
once when even ``max_fallbacks`` layers in FP32 miss the gate there, and confirms its choice on
the whole set (taking more layers when the whole set disagrees). Every trial is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deploykit.quantize.calibrators import CalibConfig, calibrate
from deploykit.quantize.placement import QuantPlan, apply_plan, plan_placement
from deploykit.quantize.sensitivity import LayerSQNR, layer_sqnr, rank
from deploykit.quantize.stats import TensorStats


@dataclass
class Fallback:
    """One layer returned to FP32; top-1 with the layers ranked up to it kept in FP32 (``after``)
    and without it (``before``), where the search measured them (None where it did not)."""

    layer: str
    op: str
    sqnr_drop_db: float | None
    top1_before: float | None = None
    top1_after: float | None = None


@dataclass
class Trial:
    """One scored candidate: the ``kept`` most sensitive layers in FP32, top-1 on ``images``."""

    kept: int
    images: int
    top1: float
    fp32_top1: float
    passed: bool


@dataclass
class Attempt:
    """One calibrator's outcome: accuracy before and after fallbacks (on ``images`` images)."""

    method: str
    config: dict[str, Any]
    top1_initial: float
    top1_final: float
    passed: bool
    fallbacks: list[Fallback] = field(default_factory=list)
    sqnr: list[LayerSQNR] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    images: int = 0  # images behind top1_final (the whole set once confirmed)
    trials: list[Trial] = field(default_factory=list)
    stopped: str | None = None  # why the search gave up early

    @property
    def fp32_top1(self) -> float | None:
        """FP32 top-1 on the images ``top1_final`` was measured on (None before any trial)."""
        return next((t.fp32_top1 for t in reversed(self.trials) if t.images == self.images), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "top1_initial": self.top1_initial,
            "top1_final": self.top1_final,
            "images": self.images,
            "passed": self.passed,
            "kept_fp32": list(self.kept),
            "fallbacks": [asdict(f) for f in self.fallbacks],
            "trials": [asdict(t) for t in self.trials],
            "stopped": self.stopped,
            "sqnr": [r.to_dict() for r in self.sqnr],
        }


class Validation:
    """The validation set two ways: ``full`` decides the gate, ``subset`` (an evenly strided part,
    or None to search on the full set) scores the search's candidates. FP32 is scored once on each."""

    def __init__(
        self,
        fp32_model,
        full: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
        subset: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]] | None = None,
        threads: int | None = None,
    ) -> None:
        self.full, self.subset, self.threads = full, subset, threads
        ok = correct_predictions(fp32_model, full(), threads)
        self.full_images, self.fp32_full = int(ok.size), float(ok.mean()) if ok.size else 0.0
        if subset is not None:
            ok = correct_predictions(fp32_model, subset(), threads)
            self.search_images, self.fp32_search = int(ok.size), float(ok.mean()) if ok.size else 0.0
        else:
            self.search_images, self.fp32_search = self.full_images, self.fp32_full

    @property
    def has_subset(self) -> bool:
        return self.subset is not None

    def score(self, model, search: bool) -> tuple[float, int, float]:
        """(top-1, images, FP32 top-1 on the same images) on the search subset or the full set."""
        if search and self.subset is not None:
            return top1(model, self.subset(), self.threads), self.search_images, self.fp32_search
        return top1(model, self.full(), self.threads), self.full_images, self.fp32_full


def top1(
    model, batches: Iterable[tuple[np.ndarray, np.ndarray]], threads: int | None = None, optimization: str = "all"
) -> float:
    """Top-1 accuracy of an ONNX model on (x, y) batches, with ORT's full graph optimisation."""
    correct = correct_predictions(model, batches, threads, optimization)
    return float(correct.mean()) if correct.size else 0.0


def predictions(
    model, batches: Iterable[tuple[np.ndarray, np.ndarray]], threads: int | None = None, optimization: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 class, label) of every image, in order: for paired comparisons of models."""
    from deploykit.onnx_io import ort_session

    sess = ort_session(
        model, threads=threads or None, inter_op_threads=1 if threads else None, optimization=optimization
    )
    name = sess.get_inputs()[0].name
    preds, labels = [], []
    for x, y in batches:
        preds.append(sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0].reshape(len(y), -1).argmax(1))
        labels.append(np.asarray(y))
    if not preds:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(preds), np.concatenate(labels)


def correct_predictions(
    model, batches: Iterable[tuple[np.ndarray, np.ndarray]], threads: int | None = None, optimization: str = "all"
) -> np.ndarray:
    """Whether each image is classified correctly, in order (for paired comparisons of models)."""
    pred, labels = predictions(model, batches, threads, optimization)
    return pred == labels


def meets(int8_top1: float, fp32_top1: float, gate: float) -> bool:
    """The gate: INT8 top-1 at least ``gate`` x FP32 top-1 (the artifact schema's one formula)."""
    from deploykit.artifact import accuracy_gate

    return accuracy_gate(int8_top1, fp32_top1, gate)[0]


def run_gate(
    model,
    stats: dict[str, TensorStats],
    cfg: CalibConfig,
    profile: str,
    keep: list[str],
    val: Validation,
    sens_batches: Callable[[], Iterable[np.ndarray]],
    gate: float,
    max_fallbacks: int = 10,
    threads: int | None = None,
    per_channel: bool = True,
    log: Callable[[str], None] = lambda s: None,
    layout: str | None = None,
    progress: Any = False,
    confirm: bool = True,
) -> tuple[Attempt, Any, QuantPlan]:
    """Quantise with ``cfg``; when the gate fails, bisect over the SQNR-ranked layers for the
    fewest returned to FP32 that pass on the search subset, then confirm on the full set.

    ``confirm=False`` scores the fully quantised model on the search set only (``method=auto``
    comparing calibrators) and returns without fallbacks.
    """
    from deploykit.progress import task

    thresholds = calibrate(stats, cfg, asymmetric=profile != "tensorrt")  # uint8 for non-negative tensors

    def build(extra: list[str]):
        plan = plan_placement(model, profile, list(keep) + extra, layout)
        return apply_plan(model, plan, stats, thresholds, per_channel), plan

    trials: dict[tuple[int, bool], Trial] = {}
    steps = 2 + (max_fallbacks > 0) * (2 + max(1, max_fallbacks).bit_length())
    with task(progress, f"INT8 gate ({cfg.method})", total=steps) as advance:

        def trial(k: int, q, search: bool) -> Trial:
            acc, n, ref = val.score(q, search)
            t = Trial(k, n, acc, ref, meets(acc, ref, gate))
            trials[(k, search and val.has_subset)] = t
            where = f"{n} {'search' if search and val.has_subset else 'validation'} images"
            log(
                f"{cfg.method}: {k} layer{'s' if k != 1 else ''} in FP32: INT8 top-1 {acc:.4f} on {where} "
                f"(FP32 {ref:.4f}, gate {gate * ref:.4f}) {'pass' if t.passed else 'fail'}"
            )
            advance()
            return t

        qmodel, plan = build([])
        t0 = trial(0, qmodel, search=True)
        attempt = Attempt(cfg.method, cfg.to_dict(), t0.top1, t0.top1, False, kept=list(keep), images=t0.images)
        # the same model with its redundant Relus kept: layer_sqnr reads every layer's input tensor
        probe = apply_plan(model, plan, stats, thresholds, per_channel, drop_relus=False)
        attempt.sqnr = layer_sqnr(model, probe, plan, sens_batches(), threads)
        advance()
        if not confirm:
            attempt.trials = list(trials.values())
            return attempt, qmodel, plan
        if t0.passed:
            final = trial(0, qmodel, search=False) if val.has_subset else t0
            if final.passed:
                attempt.passed, attempt.top1_final, attempt.images = True, final.top1, final.images
                _initial_on_full_set(attempt, trials)
                attempt.trials = list(trials.values())
                return attempt, qmodel, plan
        ranking = [r for r in rank(attempt.sqnr) if r.layer not in keep][: max(0, max_fallbacks)]
        if not ranking:
            attempt.stopped = "no layer may return to FP32 (max_fallbacks 0)"
            attempt.trials = list(trials.values())
            return attempt, qmodel, plan

        def layers(k: int) -> list[str]:
            return [r.layer for r in ranking[:k]]

        top = len(ranking)
        q_top, plan_top = build(layers(top))
        t_top = trial(top, q_top, search=True)
        if not t_top.passed:  # stop early: no number of these fallbacks reaches the gate
            attempt.stopped = (
                f"even the {top} most sensitive layers in FP32 give top-1 {t_top.top1:.4f} on "
                f"{t_top.images} images, under the gate {gate * t_top.fp32_top1:.4f}"
            )
            log(f"{cfg.method}: stopping: {attempt.stopped}")
            _finish(attempt, ranking, top, t_top, trials, keep)
            return attempt, q_top, plan_top
        lo, hi, best = 0, top, (q_top, plan_top)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            q_mid, plan_mid = build(layers(mid))
            if trial(mid, q_mid, search=True).passed:
                hi, best = mid, (q_mid, plan_mid)
            else:
                lo = mid
        final = trials[(hi, val.has_subset)]
        step = 1
        while val.has_subset:  # confirm on the whole set; take more layers while it disagrees
            final = trial(hi, best[0], search=False)
            if final.passed or hi == top:
                break
            hi = min(top, hi + step)
            step *= 2
            best = build(layers(hi))
        if not final.passed:
            attempt.stopped = f"the {hi} most sensitive layers in FP32 pass on the search subset, not on the full set"
        _finish(attempt, ranking, hi, final, trials, keep)
        return attempt, best[0], best[1]


def _initial_on_full_set(attempt: Attempt, trials: dict) -> None:
    """Report the fully quantised model's top-1 on the whole set when it was measured there."""
    full = trials.get((0, False))
    if full is not None:
        attempt.top1_initial = full.top1


def _finish(attempt: Attempt, ranking: list[LayerSQNR], k: int, final: Trial, trials: dict, keep: list[str]) -> None:
    """Record the outcome: the ``k`` layers kept, the final score, every trial."""
    attempt.passed, attempt.top1_final, attempt.images = final.passed, final.top1, final.images
    _initial_on_full_set(attempt, trials)
    attempt.kept = list(keep) + [r.layer for r in ranking[:k]]
    by_k = {kk: t.top1 for (kk, _), t in sorted(trials.items(), key=lambda kv: not kv[0][1])}  # full set last: it wins
    attempt.fallbacks = [
        Fallback(r.layer, r.op, r.drop if np.isfinite(r.drop) else None, by_k.get(i), by_k.get(i + 1))
        for i, r in enumerate(ranking[:k])
    ]
    attempt.trials = list(trials.values())
