"""The accuracy gate: INT8 must keep ``gate`` x FP32 top-1, else the worst layers go back to FP32.

Given collected statistics, a calibrator config and a validation set, :func:`run_gate` quantises,
measures top-1 on ONNX Runtime (graph optimisations on, so the fused INT8 kernels that users
deploy are the ones measured), and while the gate fails ranks layers by SQNR drop and returns the
worst one to FP32, re-measuring each time. Every step and its cost is recorded.
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
    """One layer returned to FP32 and what it bought."""

    layer: str
    op: str
    sqnr_drop_db: float | None
    top1_before: float
    top1_after: float


@dataclass
class Attempt:
    """One calibrator's outcome: accuracy before and after fallbacks."""

    method: str
    config: dict[str, Any]
    top1_initial: float
    top1_final: float
    passed: bool
    fallbacks: list[Fallback] = field(default_factory=list)
    sqnr: list[LayerSQNR] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "top1_initial": self.top1_initial,
            "top1_final": self.top1_final,
            "passed": self.passed,
            "kept_fp32": list(self.kept),
            "fallbacks": [asdict(f) for f in self.fallbacks],
            "sqnr": [r.to_dict() for r in self.sqnr],
        }


def top1(model, batches: Iterable[tuple[np.ndarray, np.ndarray]], threads: int | None = None) -> float:
    """Top-1 accuracy of an ONNX model on (x, y) batches, with ORT's full graph optimisation."""
    correct = correct_predictions(model, batches, threads)
    return float(correct.mean()) if correct.size else 0.0


def predictions(
    model, batches: Iterable[tuple[np.ndarray, np.ndarray]], threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 class, label) of every image, in order: for paired comparisons of models."""
    from deploykit.onnx_io import ort_session

    sess = ort_session(model, threads=threads or None, inter_op_threads=1 if threads else None)
    name = sess.get_inputs()[0].name
    preds, labels = [], []
    for x, y in batches:
        preds.append(sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0].reshape(len(y), -1).argmax(1))
        labels.append(np.asarray(y))
    if not preds:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(preds), np.concatenate(labels)


def correct_predictions(
    model, batches: Iterable[tuple[np.ndarray, np.ndarray]], threads: int | None = None
) -> np.ndarray:
    """Whether each image is classified correctly, in order (for paired comparisons of models)."""
    pred, labels = predictions(model, batches, threads)
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
    val: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    sens_batches: Callable[[], Iterable[np.ndarray]],
    fp32_top1: float,
    gate: float,
    max_fallbacks: int = 10,
    threads: int | None = None,
    per_channel: bool = True,
    log: Callable[[str], None] = lambda s: None,
    layout: str | None = None,
) -> tuple[Attempt, Any, QuantPlan]:
    """Quantise with ``cfg``; fall back layer by layer until the gate passes or fallbacks run out."""
    asym = profile == "onnxruntime"
    thresholds = calibrate(stats, cfg, asymmetric=asym)
    kept = list(keep)
    plan = plan_placement(model, profile, kept, layout)
    qmodel = apply_plan(model, plan, stats, thresholds, per_channel)
    acc = top1(qmodel, val(), threads)
    log(f"{cfg.method}: INT8 top-1 {acc:.4f} (FP32 {fp32_top1:.4f}, gate {gate} -> {gate * fp32_top1:.4f})")
    attempt = Attempt(cfg.method, cfg.to_dict(), acc, acc, meets(acc, fp32_top1, gate), kept=list(kept))
    # the same model with its redundant Relus kept: layer_sqnr reads every layer's input tensor
    probe = apply_plan(model, plan, stats, thresholds, per_channel, drop_relus=False)
    attempt.sqnr = layer_sqnr(model, probe, plan, sens_batches(), threads)
    if attempt.passed or max_fallbacks <= 0:
        return attempt, qmodel, plan
    ranking = [r for r in rank(attempt.sqnr) if r.layer not in kept]
    for r in ranking[:max_fallbacks]:
        before = acc
        kept.append(r.layer)
        plan = plan_placement(model, profile, kept, layout)
        qmodel = apply_plan(model, plan, stats, thresholds, per_channel)
        acc = top1(qmodel, val(), threads)
        drop = r.drop if np.isfinite(r.drop) else None
        attempt.fallbacks.append(Fallback(r.layer, r.op, drop, before, acc))
        log(f"  fallback {r.layer} ({r.op}, SQNR drop {r.drop:.1f} dB) to FP32: top-1 {before:.4f} -> {acc:.4f}")
        if meets(acc, fp32_top1, gate):
            attempt.passed = True
            break
    attempt.top1_final = acc
    attempt.kept = list(kept)
    return attempt, qmodel, plan
