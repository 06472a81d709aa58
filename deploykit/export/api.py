"""``export_model``: zoo model + checkpoint -> optimised, parity-proven ONNX artifact directory.

Every step writes into an :class:`ArtifactWriter`'s temporary directory, and the artifact is
renamed into place only after the final graph passed its parity gate against PyTorch; any
failure (bad checkpoint, exporter crash, gate) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploykit._io import sha256_file
from deploykit.artifact import Artifact, ArtifactWriter, Manifest, TensorSpec
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError, GateError
from deploykit.progress import note, task

MAIN_FILE = "model.onnx"
PARITY_SAMPLES = 8  # fixed-seed inputs per parity check
DATA_LIMIT = 64  # real images compared when --data is given
PARITY_SEED = 0


def default_out_dir(model_name: str, fp16: bool = False) -> Path:
    """``artifacts/<model>/`` (``artifacts/<model>-fp16/`` for FP16) under the working directory."""
    return Path("artifacts") / (f"{model_name}-fp16" if fp16 else model_name)


def export_model(
    name: str,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    overrides: dict[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    opset: int | None = None,
    batch: int | None = None,
    dynamic_batch: bool = True,
    fp16: bool = False,
    optimize: bool = True,
    data: str | None = None,
    force: bool = False,
    progress: bool = True,
    *,
    fp16_io: bool = False,
    exporter: str = "auto",
    data_limit: int = DATA_LIMIT,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    seed: int = 0,
    min_batch: int | None = None,
) -> Artifact:
    """Export a zoo model to a verified ONNX artifact directory and return it.

    Steps: load the model and checkpoint, export ONNX, optimise the graph (unless
    ``optimize=False``), convert to FP16 when asked, then compare ONNX Runtime with PyTorch on
    fixed-seed inputs (plus up to ``data_limit`` real images from ``data``) and gate the result.
    """
    from deploykit.export.to_onnx import batch_profile, check_opset
    from deploykit.models.registry import get_spec

    spec = get_spec(name)  # unknown model: one-line error with suggestions, before any work
    opset = check_opset(opset)
    batch_profile(batch, dynamic_batch, opt_batch, max_batch, min_batch)  # bad sizes fail before any work
    if fp16_io and not fp16:
        raise DeployKitError("float16 inputs/outputs (fp16_io) need fp16=True")
    out_dir = Path(out) if out is not None else default_out_dir(spec.name, fp16)
    job = _Job(
        source=_Source(spec, weights, num_classes, overrides, seed),
        graph=_GraphOptions(opset, batch, dynamic_batch, exporter, opt_batch, max_batch, min_batch),
        convert=_Conversions(optimize, fp16, fp16_io),
        data=_ParityData(data, data_limit),
    )
    created_parent = _missing_parents(out_dir)
    try:
        with ArtifactWriter(out_dir, force=force) as writer:
            return _build(writer, job, _Progress(progress))
    except BaseException:
        _remove_empty(created_parent)
        raise


# ------------------------------------------------------------------------ what to build, and how


@dataclass(frozen=True)
class _Source:
    """Which model and weights (a checkpoint, or a random init from ``seed``)."""

    spec: Any  # ModelSpec
    weights: str | os.PathLike | None
    num_classes: int | None
    overrides: dict[str, Any] | None
    seed: int


@dataclass(frozen=True)
class _GraphOptions:
    """How the ONNX graph is exported: opset, exporter and batch profile."""

    opset: int
    batch: int | None
    dynamic_batch: bool
    exporter: str
    opt_batch: int | None
    max_batch: int | None
    min_batch: int | None


@dataclass(frozen=True)
class _Conversions:
    """Graph rewrites after export, each followed by its own parity check."""

    optimize: bool
    fp16: bool
    fp16_io: bool

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "fp32"


@dataclass(frozen=True)
class _ParityData:
    """Real images compared besides the fixed-seed inputs (``path`` None: none)."""

    path: str | None
    limit: int


@dataclass(frozen=True)
class _Job:
    """One export: the caller's arguments, validated and grouped by the step that reads them."""

    source: _Source
    graph: _GraphOptions
    convert: _Conversions
    data: _ParityData


@dataclass
class _Loaded:
    """The model in eval mode, its data config and the weights record for the manifest."""

    model: Any
    cfg: DataConfig
    weights_info: dict[str, Any]


@dataclass
class _Checked:
    """Outputs of one ONNX graph compared with PyTorch."""

    seeded: Any  # ParityResult on the fixed-seed batch
    data: Any | None = None  # ParityResult on real images


@dataclass
class _Ref:
    """PyTorch reference outputs, computed once and reused for every graph."""

    seeded_x: np.ndarray
    seeded_y: np.ndarray
    data_x: np.ndarray | None = None
    data_y: np.ndarray | None = None
    chunk: int | None = None  # fixed batch size of the graph, None when dynamic


@dataclass
class _Stage:
    """One provenance entry for the manifest, with the parity check that closed it."""

    name: str
    entry: dict[str, Any]
    checked: _Checked


# ------------------------------------------------------------------------------------ the steps


def _build(writer: ArtifactWriter, job: _Job, ui: _Progress) -> Artifact:
    """Load, export, then rewrite the graph step by step, gating parity after each; then commit."""
    dataset = _open_data(job.data, ui)
    loaded = _load_model(job.source, ui)
    main = writer.dir / MAIN_FILE
    info = _export(loaded, job.source.spec.name, job.graph, main, ui)
    with ui.step("running PyTorch on the parity inputs"):
        ref = _reference(loaded, None if info.batch.dynamic else info.batch.max, dataset, job.data)
    gate = _Gate(main, ref, job.source.spec.name, job.data.path, ui)
    stages = [_export_stage(info, loaded.cfg, gate.verify("export", "fp32"))]
    if job.convert.optimize:
        stages.append(_optimize(main, job.source.spec.name, loaded.cfg, gate, ui))
    if job.convert.fp16:
        stages.append(_convert_fp16(main, job.source.spec.name, loaded.cfg, job.convert.fp16_io, gate, ui))
    manifest = _manifest(job, loaded, info, stages)
    with ui.step("writing the artifact"):
        artifact = writer.commit(manifest)
    ui.done(f"wrote {artifact.path}")
    return artifact


def _open_data(data: _ParityData, ui: _Progress) -> Any:
    """The dataset of real images to compare on, or None without ``data``."""
    if data.path is None:
        return None
    from deploykit.parity import open_data

    with ui.step(f"opening {data.path}"):
        return open_data(data.path)


def _load_model(source: _Source, ui: _Progress) -> _Loaded:
    """The model in eval mode, with the record of where its weights came from."""
    from deploykit.models.weights import load_model

    weights = source.weights
    name = source.spec.name
    with ui.step(f"loading {name}" + (f" from {weights}" if weights else f" (random init, seed {source.seed})")):
        model = load_model(
            name,
            weights=None if weights is None else str(weights),
            num_classes=source.num_classes,
            overrides=source.overrides,
            seed=source.seed,
        ).eval()
        # Without a checkpoint the seed is the weights: recorded so any stage can rebuild the model.
        weights_info: dict[str, Any] = {"init": "random", "seed": source.seed}
        if weights is not None:
            wp = Path(weights)
            weights_info = {"file": wp.name, "path": str(wp.resolve()), "sha256": sha256_file(wp)}
        return _Loaded(model, model.data_config, weights_info)


def _export(loaded: _Loaded, name: str, graph: _GraphOptions, path: Path, ui: _Progress) -> Any:
    """Export the FP32 graph to ``path``; returns the exporter's ExportInfo."""
    from deploykit.export.to_onnx import export_onnx

    with ui.step(f"exporting ONNX (opset {graph.opset})"):
        info = export_onnx(
            loaded.model,
            loaded.cfg,
            path,
            opset=graph.opset,
            batch=graph.batch,
            dynamic_batch=graph.dynamic_batch,
            exporter=graph.exporter,
            model_name=name,
            precision="fp32",
            opt_batch=graph.opt_batch,
            max_batch=graph.max_batch,
            min_batch=graph.min_batch,
        )
    ui.done(f"exported with the {info.exporter} exporter in {info.seconds:.1f} s")
    return info


@dataclass
class _Gate:
    """Compares the graph at ``path`` with the PyTorch reference and refuses it past the gate."""

    path: Path
    ref: _Ref
    model_name: str
    data_path: str | None
    ui: _Progress

    def verify(self, stage: str, gate_precision: str, io_fp16: bool = False) -> _Checked:
        """Parity after ``stage``; a GateError naming every failed bound when it does not hold."""
        from deploykit.parity import check_gate

        with self.ui.step(f"checking parity ({stage})"):
            checked = _check(self.path, self.ref, io_fp16)
        fails = check_gate(checked.seeded, gate_precision)
        if checked.data is not None:
            fails += [f"{f} on {self.data_path}" for f in check_gate(checked.data, gate_precision)]
        if fails:
            raise GateError(
                f"{self.model_name}: {gate_precision.upper()} parity gate failed after {stage} "
                f"(ONNX Runtime vs PyTorch): {'; '.join(fails)}"
            )
        self.ui.done(f"parity after {stage}: {checked.seeded.summary()}")
        return checked


def _export_stage(info: Any, cfg: DataConfig, checked: _Checked) -> _Stage:
    params = {**info.params(), "input_size": list(cfg.input_size), "num_classes": cfg.num_classes}
    entry = {"params": params, "seconds": round(info.seconds, 3), "parity": _parity_dict(checked)}
    return _Stage("export", entry, checked)


def _optimize(path: Path, name: str, cfg: DataConfig, gate: _Gate, ui: _Progress) -> _Stage:
    """Run the graph passes over the model at ``path`` in place, then gate parity."""
    import onnx

    from deploykit.export.to_onnx import check_onnx, save_onnx
    from deploykit.optimize import optimize_model

    with ui.step("optimising the graph"):
        start = time.perf_counter()
        result = optimize_model(onnx.load(str(path)))
        seconds = time.perf_counter() - start
        _restamp(result.model, name, cfg, "fp32")
        save_onnx(result.model, path)
        check_onnx(path, expected_classes=cfg.num_classes)
    checked = gate.verify("optimize", "fp32")
    entry = {
        "params": {"passes": result.passes},
        "modified": bool(result.modified),
        "seconds": round(seconds, 3),
        "report": result.to_dict(),
        "parity": _parity_dict(checked),
    }
    return _Stage("optimize", entry, checked)


def _convert_fp16(path: Path, name: str, cfg: DataConfig, fp16_io: bool, gate: _Gate, ui: _Progress) -> _Stage:
    """Convert the model at ``path`` to FP16 in place (FP32 inputs/outputs unless ``fp16_io``), then gate."""
    import onnx

    from deploykit.export.fp16 import convert_to_fp16
    from deploykit.export.to_onnx import check_onnx, save_onnx

    with ui.step("converting to FP16"):
        half = convert_to_fp16(onnx.load(str(path)), keep_io_types=not fp16_io)
        _restamp(half, name, cfg, "fp16")
        save_onnx(half, path)
        check_onnx(path, expected_classes=cfg.num_classes)
    checked = gate.verify("fp16 conversion", "fp16", io_fp16=fp16_io)
    return _Stage("fp16", {"params": {"keep_io_types": not fp16_io}, "parity": _parity_dict(checked)}, checked)


def _manifest(job: _Job, loaded: _Loaded, info: Any, stages: list[_Stage]) -> Manifest:
    """The artifact's manifest: what it is, its provenance and the last graph's parity."""
    precision = job.convert.precision
    io_dtype = "float16" if job.convert.fp16_io else "float32"
    manifest = Manifest(
        model=job.source.spec.name,
        family=job.source.spec.family,
        format="onnx",
        precision=precision,
        main_file=MAIN_FILE,
        data_config=loaded.cfg,
        inputs=[TensorSpec(t.name, io_dtype, list(t.shape)) for t in info.inputs],
        outputs=[TensorSpec(t.name, io_dtype, list(t.shape)) for t in info.outputs],
        batch=info.batch,
        opset=job.graph.opset,
        weights=loaded.weights_info,
    )
    for stage in stages:
        manifest.add_stage(stage.name, **stage.entry)
    manifest.results["parity"] = {
        "reference": "pytorch",
        "backend": "onnxruntime-cpu",
        "precision": precision,
        "gate": _gate_dict(precision),
        "passed": True,
        **_parity_dict(stages[-1].checked),
    }
    return manifest


def _restamp(proto: Any, name: str, cfg: DataConfig, precision: str) -> None:
    import json

    import deploykit
    from deploykit.export.to_onnx import set_metadata

    set_metadata(
        proto,
        {
            "deploykit.model": name,
            "deploykit.data_config": json.dumps(cfg.to_dict(), sort_keys=True),
            "deploykit.version": deploykit.__version__,
            "deploykit.precision": precision,
        },
    )


def _reference(loaded: _Loaded, chunk: int | None, dataset: Any, data: _ParityData) -> _Ref:
    """PyTorch outputs on the fixed-seed inputs and the real images, in the graph's batch size."""
    from deploykit.models.inference import run_model
    from deploykit.parity import dataset_inputs, parity_inputs

    cfg = loaded.cfg
    n = PARITY_SAMPLES if chunk is None else chunk * math.ceil(PARITY_SAMPLES / chunk)
    x = parity_inputs(cfg, n, seed=PARITY_SEED)
    ref = _Ref(seeded_x=x, seeded_y=run_model(loaded.model, x, chunk or 16), chunk=chunk)
    if dataset is not None:
        batches = list(dataset_inputs(dataset, cfg, data.limit, batch=chunk or 16))
        dx = np.concatenate(batches) if batches else np.zeros((0, *cfg.input_size), np.float32)
        if chunk is not None and len(dx) % chunk:
            dx = dx[: len(dx) - len(dx) % chunk]  # a fixed-batch graph takes whole batches only
        if len(dx) == 0:
            raise DeployKitError(f"--data {data.path}: no images to compare")
        ref.data_x, ref.data_y = dx, run_model(loaded.model, dx, chunk or 16)
    return ref


def _check(path: Path, ref: _Ref, io_fp16: bool) -> _Checked:
    from deploykit.onnx_io import ort_session
    from deploykit.parity import compare_outputs

    sess = ort_session(path)
    in_name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        step = ref.chunk or 16
        outs = []
        for i in range(0, len(x), step):
            xb = x[i : i + step]
            outs.append(sess.run(None, {in_name: xb.astype(np.float16) if io_fp16 else xb})[0])
        return np.concatenate(outs).astype(np.float32)

    checked = _Checked(seeded=compare_outputs(ref.seeded_y, run(ref.seeded_x)))
    if ref.data_x is not None:
        checked.data = compare_outputs(ref.data_y, run(ref.data_x))
    return checked


def _parity_dict(checked: _Checked) -> dict[str, Any]:
    out: dict[str, Any] = {"fixed_seed": {"seed": PARITY_SEED, **checked.seeded.to_dict()}}
    if checked.data is not None:
        out["data"] = checked.data.to_dict()
    return out


def _gate_dict(precision: str) -> dict[str, Any]:
    import dataclasses

    from deploykit.parity import gate_for

    return {k: v for k, v in dataclasses.asdict(gate_for(precision)).items() if v is not None}


def _missing_parents(out_dir: Path) -> Path | None:
    """The outermost ancestor of ``out_dir`` that does not exist yet (removed again on failure)."""
    top = None
    for p in out_dir.absolute().parents:
        if p.exists():
            break
        top = p
    return top


def _remove_empty(top: Path | None) -> None:
    if top is None or not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


class _Progress:
    """The export's steps as deploykit.progress tasks and notes (shown only by the caller's reporter)."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress

    def step(self, text: str) -> Any:
        return task(self.progress, text)

    def done(self, text: str) -> None:
        note(self.progress, text)
