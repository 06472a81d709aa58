"""Accuracy on labelled data (top-1, top-5, per class) and the MLPerf "99% of FP32" gate.

Any model runs through the same loop: a Runner (``infer(feeds) -> dict``), a torch ``nn.Module``
or a plain callable mapping an N,C,H,W float32 batch to N x classes logits.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploykit.data.config import DataConfig
from deploykit.data.datasets import Dataset, Subset
from deploykit.data.transforms import iter_batches
from deploykit.errors import DeployKitError

DEFAULT_GATE = 0.99  # MLPerf: a deployed model keeps at least 99% of its FP32 accuracy


@dataclass
class AccuracyResult:
    """What a model scored on a dataset; ``per_class`` rows are in the dataset's class order."""

    dataset: str
    count: int
    top1: float
    top5: float | None
    per_class: list[dict[str, Any]]
    classes: tuple[str, ...]
    fingerprint: str | None = None
    confusion: np.ndarray | None = None  # rows: true class, columns: predicted (model indices)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> int:
        return int(round(self.top1 * self.count))

    def to_dict(self, confusion: bool = False) -> dict[str, Any]:
        """JSON-ready summary (the confusion matrix only when asked: it grows as classes²)."""
        d: dict[str, Any] = {
            "dataset": self.dataset,
            "fingerprint": self.fingerprint,
            "count": self.count,
            "top1": self.top1,
            "top5": self.top5,
            "per_class": self.per_class,
            "seconds": round(self.seconds, 3),
            **self.extra,
        }
        if confusion and self.confusion is not None:
            d["confusion"] = self.confusion.tolist()
        return d


# ------------------------------------------------------------------------------------ predictors


@contextlib.contextmanager
def _predictor(model: Any) -> Iterator[tuple[Callable[[np.ndarray], np.ndarray], Any]]:
    """(batch -> logits function, batch profile or None) for a runner, nn.Module or callable."""
    if _is_torch_module(model):
        from deploykit.models.inference import run_model

        # Eval mode for each batch, the caller's training flag restored after; first output only.
        yield (lambda x: run_model(model, x)), None
        return
    if hasattr(model, "infer"):
        activated = False
        if hasattr(model, "activate") and not getattr(model, "is_active", True):
            model.activate()
            activated = True
        try:
            in_name = model.input_names[0] if getattr(model, "input_names", None) else "input"
            out_names = list(getattr(model, "output_names", None) or [])

            def run_runner(x: np.ndarray) -> np.ndarray:
                outs = model.infer({in_name: x})
                key = out_names[0] if out_names and out_names[0] in outs else next(iter(outs))
                return np.asarray(outs[key])

            yield run_runner, getattr(model, "batch_profile", None)
        finally:
            if activated:
                model.deactivate()
        return
    if callable(model):
        yield (lambda x: np.asarray(model(x))), None
        return
    raise DeployKitError(
        f"cannot evaluate a {type(model).__name__}: expected a runner with infer(), a torch nn.Module or a callable"
    )


def _is_torch_module(obj: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _batch_plan(profile: Any, batch_size: int) -> tuple[int, bool]:
    """(batch size to feed, whether the last batch must be padded) for a runner's batch profile."""
    if profile is None:
        return batch_size, False
    if not getattr(profile, "dynamic", True):
        return int(profile.max), True  # a fixed-batch artifact: pad the last batch, drop the extra
    return max(int(getattr(profile, "min", 1)), min(batch_size, int(profile.max))), True


def _label_map(dataset_classes: tuple[str, ...], cfg: DataConfig, n_out: int) -> np.ndarray | None:
    """Dataset label index -> model output index, by class name when both sides name them."""
    labels = cfg.labels
    if labels and tuple(dataset_classes) != tuple(labels) and set(dataset_classes) <= set(labels):
        where = {name: i for i, name in enumerate(labels)}
        return np.array([where[c] for c in dataset_classes], dtype=np.int64)
    return None


# ------------------------------------------------------------------------------------- evaluate


def evaluate(
    model: Any,
    dataset: Any,
    cfg: DataConfig,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool | str = True,
    confusion: bool = False,
) -> AccuracyResult:
    """Run ``model`` over a labelled dataset and score top-1, top-5 and per-class accuracy.

    ``progress`` may be a string: the progress bar's label.
    """
    if batch_size < 1:
        raise DeployKitError(f"batch size {batch_size} must be at least 1")
    if limit is not None and limit < 1:
        raise DeployKitError(f"limit {limit} must be at least 1")
    name = getattr(dataset, "name", type(dataset).__name__)
    if len(dataset) == 0:
        raise DeployKitError(f"dataset {name} is empty")
    if limit is not None and limit < len(dataset) and isinstance(dataset, Dataset):
        # Score exactly the first `limit` items, as a subset with its own fingerprint.
        dataset = Subset(dataset, range(limit), name=f"{name} (first {limit})")
        name = dataset.name
    classes = tuple(getattr(dataset, "classes", ()) or ())
    start = time.perf_counter()
    preds_top1: list[np.ndarray] = []
    hits5: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    n_out = None
    mapping = None
    with _predictor(model) as (fn, profile):
        feed, pad = _batch_plan(profile, batch_size)
        label = progress if isinstance(progress, str) else f"validating on {name}"
        for x, y in iter_batches(dataset, cfg, feed, limit=limit, progress=label if progress else False):
            n = len(x)
            if pad and n < feed:
                x = np.concatenate([x, np.repeat(x[-1:], feed - n, axis=0)])
            logits = np.asarray(fn(x), dtype=np.float32)
            if logits.ndim != 2 or logits.shape[0] < n:
                raise DeployKitError(f"model output has shape {logits.shape}; expected {n} rows of class scores")
            logits = logits[:n]
            if n_out is None:
                n_out = logits.shape[1]
                if classes and len(classes) > n_out:
                    raise DeployKitError(
                        f"dataset {name} has {len(classes)} classes but the model has only {n_out} outputs"
                    )
                mapping = _label_map(classes, cfg, n_out)
            if mapping is not None:
                y = mapping[y]
            if y.size and y.max() >= n_out:
                raise DeployKitError(f"dataset {name} has label {int(y.max())} but the model has {n_out} outputs")
            preds_top1.append(logits.argmax(axis=1))
            if n_out >= 5:
                top5 = np.argpartition(-logits, 4, axis=1)[:, :5]
                hits5.append((top5 == y[:, None]).any(axis=1))
            truths.append(y)
    pred = np.concatenate(preds_top1)
    true = np.concatenate(truths)
    count = len(true)
    top1 = float((pred == true).mean())
    top5 = float(np.concatenate(hits5).mean()) if hits5 else None
    if not classes:
        classes = tuple(str(i) for i in range(n_out or 0))
    per_class = []
    for i, cname in enumerate(classes):
        idx = int(mapping[i]) if mapping is not None else i
        mask = true == idx
        total = int(mask.sum())
        hit = int((pred[mask] == idx).sum())
        per_class.append(
            {"class": cname, "index": idx, "count": total, "correct": hit, "accuracy": (hit / total) if total else None}
        )
    conf = None
    if confusion:
        conf = np.zeros((n_out, n_out), dtype=np.int64)
        np.add.at(conf, (true, pred), 1)
    fingerprint = dataset.fingerprint() if hasattr(dataset, "fingerprint") else None
    return AccuracyResult(
        dataset=name,
        count=count,
        top1=top1,
        top5=top5,
        per_class=per_class,
        classes=classes,
        fingerprint=fingerprint,
        confusion=conf,
        seconds=time.perf_counter() - start,
    )


def accuracy_gate(
    result: AccuracyResult | float, reference_top1: float, ratio: float = DEFAULT_GATE
) -> tuple[bool, str]:
    """MLPerf rule: pass when top-1 keeps at least ``ratio`` of the FP32 reference's top-1."""
    from deploykit.artifact import accuracy_gate as gate

    return gate(result.top1 if isinstance(result, AccuracyResult) else float(result), reference_top1, ratio)


def plot_accuracy(result: AccuracyResult, path: Any, title: str | None = None) -> Any:
    """PNG with per-class accuracy bars and, when recorded, the confusion matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deploykit._io import atomic_write_bytes

    names = [str(r["class"]) for r in result.per_class]
    accs = [0.0 if r["accuracy"] is None else r["accuracy"] for r in result.per_class]
    show_conf = result.confusion is not None and len(result.confusion) <= 50
    fig, axes = plt.subplots(1, 2 if show_conf else 1, figsize=(13 if show_conf else 7, 5.5))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    ax.barh(range(len(names)), accs, color="tab:blue")
    ax.axvline(result.top1, color="tab:red", linestyle="--", label=f"top-1 {result.top1:.2%}")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.legend(loc="lower right")
    ax.set_title("per-class accuracy")
    if show_conf:
        conf = result.confusion
        rows = conf.sum(axis=1, keepdims=True)
        frac = np.divide(conf, rows, out=np.zeros(conf.shape, dtype=float), where=rows > 0)
        im = axes[1].imshow(frac, cmap="Blues", vmin=0, vmax=1)
        ticks = range(len(conf))
        by_index = {r["index"]: str(r["class"]) for r in result.per_class}
        labels = [by_index.get(i, str(i)) for i in ticks]
        axes[1].set_xticks(ticks, labels, rotation=90, fontsize=7)
        axes[1].set_yticks(ticks, labels, fontsize=7)
        axes[1].set_xlabel("predicted")
        axes[1].set_ylabel("true")
        axes[1].set_title("confusion (row-normalised)")
        fig.colorbar(im, ax=axes[1], fraction=0.046)
    fig.suptitle(title or f"{result.dataset}: {result.count} images")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
