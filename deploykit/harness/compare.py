"""Run several backends on the same inputs and hold each to the first one (Polygraphy's comparator).

Inputs are fixed-seed image-like batches (``parity_inputs``) or real images (``data``); every
output is compared with ``compare_outputs`` and checked against the gate for the precision in
play (the loosest precision among the runners), so an INT8 artifact is not held to FP32 limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploykit.backends.base import Runner
from deploykit.errors import DeployKitError
from deploykit.harness.runners import runner_for
from deploykit.models.registry import looks_like_model_name
from deploykit.models.weights import load_model
from deploykit.parity import ParityResult, check_gate, compare_outputs, parity_inputs

# Looser gates to the right: the gate applied is the loosest precision among the runners.
PRECISION_ORDER = ("fp32", "fp16", "bf16", "mixed", "int8")
DEFAULT_DATA_SAMPLES = 64


@dataclass
class OutputComparison:
    """One output of one backend against the reference backend's same output."""

    runner: str
    backend: str
    output: str
    reference_output: str
    parity: ParityResult
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "backend": self.backend,
            "output": self.output,
            "reference_output": self.reference_output,
            "parity": self.parity.to_dict(),
            "failures": list(self.failures),
            "passed": self.passed,
        }


@dataclass
class CompareResult:
    """Every backend's outputs against the first backend's, with the gate that was applied."""

    target: str
    reference: dict[str, Any]
    runners: list[dict[str, Any]]
    precision: str
    inputs: dict[str, Any]
    rows: list[OutputComparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[str]:
        return [f"{r.runner} {r.output}: {f}" for r in self.rows for f in r.failures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "reference": self.reference,
            "runners": self.runners,
            "precision": self.precision,
            "inputs": self.inputs,
            "rows": [r.to_dict() for r in self.rows],
            "passed": self.passed,
        }


def gate_precision(precisions: Sequence[str | None]) -> str:
    """The loosest precision among the runners (unknown ones count as fp32)."""
    known = [p for p in precisions if p in PRECISION_ORDER]
    return max(known, key=PRECISION_ORDER.index) if known else "fp32"


def compare_backends(
    target: Any,
    backends: Sequence[str | Runner] = ("torch", "onnxruntime"),
    data: str | None = None,
    batch: int = 1,
    precision: str | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    samples: int | None = None,
    seed: int = 0,
    weights: str | None = None,
    num_classes: int | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = False,
) -> CompareResult:
    """Run each backend on the same inputs; the first is the reference the others must match.

    ``backends`` holds backend names (built from ``target`` with ``make_runner``) or ready
    Runners. ``precision`` picks the gate; by default the loosest precision in play.
    """
    if len(backends) < 2:
        raise DeployKitError("compare needs at least two backends (the first is the reference)")
    if batch < 1:
        raise DeployKitError(f"batch {batch} must be at least 1")
    backends, no_torch = _imported_backends(target, backends)
    runners = _make_runners(target, backends, device, threads, batch, weights, num_classes, overrides)
    precision = precision or gate_precision([r.precision for r in runners])
    if precision not in PRECISION_ORDER:
        raise DeployKitError(f"precision '{precision}' is not one of {', '.join(PRECISION_ORDER)}")
    for r in runners:
        if r.batch_profile is not None:
            r.batch_profile.check(batch, where=r.name)

    outputs: list[dict[str, list[np.ndarray]]] = [dict() for _ in runners]
    activated: list[Runner] = []
    try:
        for r in runners:
            r.activate()
            activated.append(r)
        cfg = next((r.data_config for r in runners if r.data_config is not None), None)
        batches, inputs_info = _inputs(runners[0], cfg, data, batch, samples, seed, progress)
        for x in batches:
            for r, store in zip(runners, outputs):
                names = r.input_names
                if len(names) != 1:
                    raise DeployKitError(f"{r.name}: compare feeds single-input image models; it has {names}")
                for k, v in r.infer({names[0]: x}).items():
                    store.setdefault(k, []).append(v)
        ref_desc = runners[0].describe()
        descs = [r.describe() for r in runners]
    finally:
        for r in activated:
            r.deactivate()

    label = getattr(target, "model_name", None) or (str(target) if target is not None else runners[0].name)
    if no_torch:
        ref_desc = {**ref_desc, "note": no_torch}
    result = CompareResult(
        target=str(label), reference=ref_desc, runners=descs, precision=precision, inputs=inputs_info
    )
    ref = {k: np.concatenate(v) for k, v in outputs[0].items()}
    for r, store in zip(runners[1:], outputs[1:]):
        got = {k: np.concatenate(v) for k, v in store.items()}
        for ref_name, out_name in _match_outputs(list(ref), list(got), r.name):
            res = compare_outputs(ref[ref_name], got[out_name])
            result.rows.append(
                OutputComparison(
                    runner=r.name,
                    backend=r.backend,
                    output=out_name,
                    reference_output=ref_name,
                    parity=res,
                    failures=check_gate(res, precision),
                )
            )
    return result


def _imported_backends(target: Any, backends: Sequence[str | Runner]) -> tuple[list[str | Runner], str | None]:
    """An imported artifact has no PyTorch model: ``torch`` gives way to ONNX Runtime on its reference.

    The reference is the parent artifact (an INT8 model's FP32 parent), or for the imported
    artifact itself the source file it was imported from, when that file is still there unchanged.
    """
    from pathlib import Path

    from deploykit.artifact import Artifact, is_artifact_dir

    names = [b for b in backends if isinstance(b, str)]
    if "torch" not in [n.lower() for n in names] or not isinstance(target, (str, Path)) or not is_artifact_dir(target):
        return list(backends), None
    m = Artifact.load(target, verify=False).manifest
    if m.weights or not any(st.get("stage") == "import" for st in m.stages):
        return list(backends), None
    reference = _onnx_reference(Path(target), m)
    rest = [b for b in backends if not (isinstance(b, str) and b.lower() == "torch")]
    if not any(isinstance(b, str) and b.lower() == "onnxruntime" for b in rest):
        rest.insert(0, "onnxruntime")
    note_text = (
        f"{m.model} was imported from ONNX: there is no PyTorch reference; "
        f"ONNX Runtime on {reference} is the reference instead"
    )
    from deploykit.backends import make_runner
    from deploykit.progress import note

    note(True, note_text)
    ref_runner = make_runner(str(reference), backend="onnxruntime")
    return [ref_runner, *rest], note_text


def _onnx_reference(path: Any, m: Any) -> Any:
    from pathlib import Path

    from deploykit._io import sha256_file
    from deploykit.artifact import is_artifact_dir

    if m.parent and is_artifact_dir(m.parent.get("path", "")):
        return Path(m.parent["path"])
    src = next(st for st in m.stages if st.get("stage") == "import").get("source", {})
    src_path = Path(str(src.get("path", "")))
    if src_path.is_file() and sha256_file(src_path) == src.get("sha256"):
        return src_path
    raise DeployKitError(
        f"{path}: imported from ONNX, so there is no PyTorch reference, and its source file {src_path} is gone "
        "or changed; compare backends explicitly, e.g. --backend onnxruntime,openvino"
    )


def _make_runners(
    target: Any,
    backends: Sequence[str | Runner],
    device: str,
    threads: int | None,
    batch: int,
    weights: str | None,
    num_classes: int | None,
    overrides: dict[str, Any] | None,
) -> list[Runner]:
    if any(isinstance(b, str) for b in backends) and looks_like_model_name(target):
        # Build the PyTorch model once, so every backend runs the same weights (even random ones).
        target = load_model(str(target), weights=weights, num_classes=num_classes, overrides=overrides or None)
    runners = []
    for b in backends:
        if isinstance(b, Runner):
            runners.append(b)
        else:
            runners.append(runner_for(target, backend=b, device=device, threads=threads, batch_sizes=[batch]))
    return runners


def _inputs(
    runner: Runner, cfg: Any, data: str | None, batch: int, samples: int | None, seed: int, progress: bool
) -> tuple[list[np.ndarray], dict[str, Any]]:
    if data is None:
        n_batches = max(1, -(-(samples or batch) // batch))
        if cfg is not None:
            xs = [parity_inputs(cfg, batch, seed=seed + i) for i in range(n_batches)]
        else:  # a bare ONNX without deploykit metadata: Gaussian inputs of its own shape
            from deploykit.harness.bench import make_feeds

            xs = [next(iter(make_feeds(runner, batch, seed=seed + i).values())) for i in range(n_batches)]
        return xs, {
            "source": "parity_inputs" if cfg is not None else "gaussian",
            "seed": seed,
            "batch": batch,
            "samples": batch * n_batches,
        }
    if cfg is None:
        raise DeployKitError(
            "--data needs to know the model's preprocessing; use an artifact or a zoo model, not a bare ONNX file"
        )
    from deploykit.data.specs import open_dataset
    from deploykit.data.transforms import iter_batches

    dataset = open_dataset(data)
    limit = samples or DEFAULT_DATA_SAMPLES
    limit = min(limit, len(dataset)) // batch * batch  # whole batches only: fixed-batch artifacts need them
    if limit == 0:
        raise DeployKitError(f"--data {data}: {len(dataset)} image(s) are fewer than one batch of {batch}")
    xs = [
        np.ascontiguousarray(x, dtype=np.float32)
        for x, _ in iter_batches(dataset, cfg, batch, limit=limit, progress=progress)
    ]
    return xs, {"source": data, "batch": batch, "samples": limit}


def _match_outputs(ref: list[str], got: list[str], who: str) -> list[tuple[str, str]]:
    """Pair outputs by name when the names agree, else by position."""
    if set(ref) == set(got):
        return [(n, n) for n in ref]
    if len(ref) == len(got):
        return list(zip(ref, got))
    raise DeployKitError(f"{who}: outputs {got} cannot be matched with the reference's {ref}")


__all__ = ["CompareResult", "OutputComparison", "compare_backends", "gate_precision"]
