"""``validate``: accuracy of an artifact (or a zoo model) on labelled data, gated against FP32.

For an artifact the reference is, in order: the accuracy already recorded in the nearest FP32
ancestor's manifest for the same dataset fingerprint; that ancestor evaluated now; the PyTorch
model rebuilt from the weights the manifest records (so an FP32 export is checked against the
framework it came from). With none of these the result says so and no gate is applied.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit._io import atomic_write_json
from deploykit.errors import DeployKitError
from deploykit.harness.accuracy import DEFAULT_GATE, AccuracyResult, accuracy_gate, evaluate

CONFUSION_MAX_CLASSES = 100  # past this the confusion matrix is left out of JSON and manifests


@dataclass
class ValidationReport:
    """Everything one ``validate`` run found, for the terminal table and JSON."""

    target: str
    kind: str  # "artifact" or "model"
    model: str
    precision: str
    backend: str
    result: AccuracyResult
    reference: dict[str, Any] | None = None  # {"source", "top1", "top5", "path"?}
    gate: dict[str, Any] | None = None  # {"ratio", "passed", "message"}
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """False only when a gate was applied and failed."""
        return self.gate is None or bool(self.gate["passed"])

    def to_dict(self) -> dict[str, Any]:
        small = len(self.result.classes) <= CONFUSION_MAX_CLASSES
        return {
            "target": self.target,
            "kind": self.kind,
            "model": self.model,
            "precision": self.precision,
            "backend": self.backend,
            "accuracy": self.result.to_dict(confusion=small),
            "reference": self.reference,
            "gate": self.gate,
            "passed": self.passed,
            "notes": self.notes,
        }


def validate(
    target: str | os.PathLike,
    data: str,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    overrides: dict[str, Any] | None = None,
    gate: float = DEFAULT_GATE,
    batch_size: int = 64,
    limit: int | None = None,
    json_path: str | os.PathLike | None = None,
    threads: int | None = None,
    progress: bool = True,
    record: bool = True,
    plot_path: str | os.PathLike | None = None,
    backend: str | None = None,
    device: str = "cpu",
) -> ValidationReport:
    """Score TARGET (artifact directory or zoo model name) on ``data`` and apply the FP32 gate.

    ``backend`` runs an artifact (default: onnxruntime for ONNX, tensorrt for an engine artifact).
    """
    from deploykit.artifact import is_artifact_dir
    from deploykit.data.specs import open_dataset

    if not 0 < gate <= 1:
        raise DeployKitError(f"accuracy gate {gate} must be in (0, 1] (e.g. 0.99 for 99% of FP32)")
    dataset = open_dataset(data)
    path = Path(target)
    if is_artifact_dir(path):
        if weights is not None or num_classes is not None or overrides:
            raise DeployKitError(
                f"{path}: --weights, --num-classes and data-config options apply to a "
                "zoo model name; an artifact carries its own weights and data config"
            )
        report = _validate_artifact(
            path, dataset, gate, batch_size, limit, threads, progress, record, backend=backend, device=device
        )
    elif path.exists():
        raise DeployKitError(f"{path}: not an artifact directory (no manifest.json) and not a zoo model name")
    else:
        with _torch_threads(threads):
            report = _validate_model(str(target), dataset, weights, num_classes, overrides, batch_size, limit, progress)
    if json_path is not None:
        try:
            atomic_write_json(json_path, report.to_dict())
        except OSError as e:
            raise DeployKitError(f"{json_path}: cannot write JSON ({e.strerror})") from None
    if plot_path is not None:
        from deploykit.harness.accuracy import plot_accuracy

        title = f"{report.model} ({report.precision}, {report.backend}) on {report.result.dataset}"
        try:
            plot_accuracy(report.result, plot_path, title=title)
        except OSError as e:
            raise DeployKitError(f"{plot_path}: cannot write the plot ({e.strerror})") from None
    return report


# ----------------------------------------------------------------------------------- zoo model


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run PyTorch with ``threads`` threads for the duration, then restore the caller's setting."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _validate_model(
    name: str,
    dataset: Any,
    weights: Any,
    num_classes: int | None,
    overrides: dict[str, Any] | None,
    batch_size: int,
    limit: int | None,
    progress: bool,
) -> ValidationReport:
    from deploykit.models.weights import load_model

    model = load_model(
        name, weights=None if weights is None else str(weights), num_classes=num_classes, overrides=overrides or None
    )
    result = evaluate(
        model, dataset, model.data_config, batch_size=batch_size, limit=limit, progress=progress, confusion=True
    )
    notes = ["a PyTorch model is its own FP32 reference: no gate applied"]
    if weights is None:
        notes.append("no --weights given: the model is randomly initialised")
    return ValidationReport(
        target=name,
        kind="model",
        model=getattr(model, "model_name", name),
        precision="fp32",
        backend="torch",
        result=result,
        notes=notes,
    )


# ------------------------------------------------------------------------------------- artifact


def _validate_artifact(
    path: Path,
    dataset: Any,
    ratio: float,
    batch_size: int,
    limit: int | None,
    threads: int | None,
    progress: bool,
    record: bool,
    backend: str | None = None,
    device: str = "cpu",
) -> ValidationReport:
    from deploykit.artifact import Artifact, accuracy_record

    art = Artifact.load(path)
    cfg = art.data_config
    from deploykit.backends import backend_name

    # make_runner checks the backend is installed, after an engine artifact's guard
    backend = backend_name(backend or ("tensorrt" if art.manifest.format == "tensorrt-engine" else "onnxruntime"))
    result = _evaluate_artifact(art, dataset, cfg, batch_size, limit, threads, progress, backend, device)
    notes: list[str] = []
    reference = _reference(art, dataset, result, batch_size, limit, threads, progress, notes)
    gate = None
    if reference is not None:
        passed, message = accuracy_gate(result, reference["top1"], ratio)
        gate = {"ratio": ratio, "passed": passed, "message": message}
    else:
        notes.append("no FP32 reference available: accuracy reported, no gate applied")
    report = ValidationReport(
        target=str(path),
        kind="artifact",
        model=art.manifest.model,
        precision=art.manifest.precision,
        backend=backend,
        result=result,
        reference=reference,
        gate=gate,
        notes=notes,
    )
    if record:
        details = result.to_dict(confusion=len(result.classes) <= CONFUSION_MAX_CLASSES)
        details.pop("dataset", None)
        details.pop("top1", None)
        entry = accuracy_record(
            dataset=result.dataset,
            top1=result.top1,
            reference_top1=reference["top1"] if reference else None,
            gate=ratio if reference else None,
            reference=reference,
            backend=backend,
            **details,
        )
        art.record_result("accuracy", entry)
    return report


def _evaluate_artifact(
    art: Any,
    dataset: Any,
    cfg: Any,
    batch_size: int,
    limit: int | None,
    threads: int | None,
    progress: bool | str,
    backend: str = "onnxruntime",
    device: str = "cpu",
) -> AccuracyResult:
    from deploykit.backends import make_runner

    if art.manifest.format != "onnx" and backend != "tensorrt":
        raise DeployKitError(f"{art.path}: a {art.manifest.format} artifact runs only with --backend tensorrt")
    runner = make_runner(art, backend, device=device, threads=None if backend == "tensorrt" else threads, verify=False)
    with runner:
        return evaluate(runner, dataset, cfg, batch_size=batch_size, limit=limit, progress=progress, confusion=True)


def _fp32_ancestor(art: Any, notes: list[str]) -> Any | None:
    """The nearest FP32 artifact up the parent chain whose model file is unchanged, if any."""
    from deploykit._io import sha256_file
    from deploykit.artifact import Artifact, is_artifact_dir

    seen = {str(art.path.resolve())}
    current = art
    while current.manifest.parent:
        ref = current.manifest.parent
        ppath = Path(str(ref.get("path", "")))
        if not ref.get("path") or not is_artifact_dir(ppath):
            notes.append(f"parent artifact {ppath} is no longer there")
            return None
        if str(ppath.resolve()) in seen:
            notes.append(f"parent chain of {art.path} loops at {ppath}")
            return None
        seen.add(str(ppath.resolve()))
        try:
            parent = Artifact.load(ppath)
        except DeployKitError as e:
            notes.append(f"parent artifact unusable: {e}")
            return None
        want = ref.get("main_sha256")
        if want and sha256_file(parent.main_path) != want:
            notes.append(f"parent artifact {ppath} was replaced since {current.path} was made from it")
            return None
        if parent.manifest.precision == "fp32":
            return parent
        current = parent
    return None


def _reference(
    art: Any,
    dataset: Any,
    result: AccuracyResult,
    batch_size: int,
    limit: int | None,
    threads: int | None,
    progress: bool,
    notes: list[str],
) -> dict[str, Any] | None:
    """FP32 reference accuracy for ``art`` on the same data (see the module docstring)."""
    ancestor = _fp32_ancestor(art, notes) if art.manifest.parent else None
    if ancestor is not None:
        recorded = ancestor.manifest.results.get("accuracy")
        if (
            isinstance(recorded, dict)
            and recorded.get("fingerprint") == result.fingerprint
            and recorded.get("top1") is not None
        ):
            return {
                "source": "recorded in the FP32 parent's manifest",
                "path": str(ancestor.path),
                "top1": recorded["top1"],
                "top5": recorded.get("top5"),
            }
        label = f"FP32 parent on {result.dataset}" if progress else False
        ref = _evaluate_artifact(ancestor, dataset, ancestor.data_config, batch_size, limit, threads, label)
        return {
            "source": "FP32 parent artifact evaluated now",
            "path": str(ancestor.path),
            "top1": ref.top1,
            "top5": ref.top5,
        }
    weights = art.manifest.weights or {}
    if not weights:
        notes.append(f"{art.path}: the manifest records no weights to rebuild the PyTorch model from")
        return None
    from deploykit.backends import make_runner

    try:
        runner = make_runner(art, "torch", threads=threads, verify=False)
    except DeployKitError as e:
        notes.append(f"PyTorch reference unavailable: {e}")
        return None
    with runner:
        ref = evaluate(
            runner,
            dataset,
            art.data_config,
            batch_size=batch_size,
            limit=limit,
            progress=f"PyTorch reference on {result.dataset}" if progress else False,
        )
    return {
        "source": "PyTorch model rebuilt from the recorded weights",
        "path": str(weights.get("path") or weights.get("file")),
        "top1": ref.top1,
        "top5": ref.top5,
    }


# ------------------------------------------------------------------------------------- display


def render(report: ValidationReport, console: Any = None) -> None:
    """Print the report as rich tables: summary, per-class accuracy, gate verdict."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    r = report.result
    summary = Table(title=f"{report.model} ({report.precision}, {report.backend}) on {r.dataset}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("target", report.target)
    summary.add_row("images", str(r.count))
    summary.add_row("top-1", f"{r.top1:.2%}")
    summary.add_row("top-5", "n/a (fewer than 5 classes)" if r.top5 is None else f"{r.top5:.2%}")
    if report.reference is not None:
        ref = report.reference
        summary.add_row("FP32 reference top-1", f"{ref['top1']:.2%} ({ref['source']})")
        summary.add_row("drop vs FP32", f"{(ref['top1'] - r.top1) * 100:+.2f} points")
    summary.add_row("time", f"{r.seconds:.1f} s ({r.count / max(r.seconds, 1e-9):.0f} images/s)")
    console.print(summary)
    per_class = Table(title="Per-class accuracy")
    per_class.add_column("class")
    per_class.add_column("images", justify="right")
    per_class.add_column("correct", justify="right")
    per_class.add_column("accuracy", justify="right")
    for row in r.per_class:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.2%}"
        per_class.add_row(str(row["class"]), str(row["count"]), str(row["correct"]), acc)
    console.print(per_class)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")
    if report.gate is not None:
        style = "bold green" if report.gate["passed"] else "bold red"
        console.print(f"[{style}]accuracy gate: {report.gate['message']}[/{style}]")
