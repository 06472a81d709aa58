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
    from deploykit.export.to_onnx import check_opset
    from deploykit.models.registry import get_spec

    spec = get_spec(name)  # unknown model: one-line error with suggestions, before any work
    opset = check_opset(opset)
    from deploykit.export.to_onnx import batch_profile

    batch_profile(batch, dynamic_batch, opt_batch, max_batch, min_batch)  # bad sizes fail before any work
    if fp16_io and not fp16:
        raise DeployKitError("float16 inputs/outputs (fp16_io) need fp16=True")
    out_dir = Path(out) if out is not None else default_out_dir(spec.name, fp16)
    precision = "fp16" if fp16 else "fp32"
    created_parent = _missing_parents(out_dir)

    ui = _Progress(progress)
    try:
        with ui, ArtifactWriter(out_dir, force=force) as writer:
            return _build(
                writer,
                spec,
                weights,
                num_classes,
                overrides,
                opset,
                batch,
                dynamic_batch,
                fp16,
                fp16_io,
                optimize,
                data,
                data_limit,
                exporter,
                precision,
                ui,
                opt_batch,
                max_batch,
                seed,
                min_batch,
            )
    except BaseException:
        _remove_empty(created_parent)
        raise


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


def _build(
    writer: ArtifactWriter,
    spec: Any,
    weights: Any,
    num_classes: int | None,
    overrides: dict[str, Any] | None,
    opset: int,
    batch: int | None,
    dynamic_batch: bool,
    fp16: bool,
    fp16_io: bool,
    optimize: bool,
    data: str | None,
    data_limit: int,
    exporter: str,
    precision: str,
    ui: _Progress,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    seed: int = 0,
    min_batch: int | None = None,
) -> Artifact:
    import onnx

    from deploykit.export.to_onnx import check_onnx, export_onnx, save_onnx
    from deploykit.parity import check_gate

    dataset = None
    if data is not None:
        from deploykit.parity import open_data

        with ui.step(f"opening {data}"):
            dataset = open_data(data)
    with ui.step(f"loading {spec.name}" + (f" from {weights}" if weights else f" (random init, seed {seed})")):
        model = _load(spec.name, weights, num_classes, overrides, seed)
        cfg: DataConfig = model.data_config
        # Without a checkpoint the seed is the weights: recorded so any stage can rebuild the model.
        weights_info: dict[str, Any] = {"init": "random", "seed": seed}
        if weights is not None:
            wp = Path(weights)
            weights_info = {"file": wp.name, "path": str(wp.resolve()), "sha256": sha256_file(wp)}

    main = writer.dir / MAIN_FILE
    with ui.step(f"exporting ONNX (opset {opset})"):
        info = export_onnx(
            model,
            cfg,
            main,
            opset=opset,
            batch=batch,
            dynamic_batch=dynamic_batch,
            exporter=exporter,
            model_name=spec.name,
            precision="fp32",
            opt_batch=opt_batch,
            max_batch=max_batch,
            min_batch=min_batch,
        )
    ui.done(f"exported with the {info.exporter} exporter in {info.seconds:.1f} s")

    with ui.step("running PyTorch on the parity inputs"):
        ref = _reference(model, cfg, None if info.batch.dynamic else info.batch.max, dataset, data, data_limit)

    def verify(stage: str, gate_precision: str, io_fp16: bool = False) -> _Checked:
        with ui.step(f"checking parity ({stage})"):
            checked = _check(main, ref, io_fp16)
        fails = check_gate(checked.seeded, gate_precision)
        if checked.data is not None:
            fails += [f"{f} on {data}" for f in check_gate(checked.data, gate_precision)]
        if fails:
            raise GateError(
                f"{spec.name}: {gate_precision.upper()} parity gate failed after {stage} "
                f"(ONNX Runtime vs PyTorch): {'; '.join(fails)}"
            )
        ui.done(f"parity after {stage}: {checked.seeded.summary()}")
        return checked

    checked = verify("export", "fp32")
    stages: list[tuple[str, dict[str, Any]]] = [
        (
            "export",
            {
                "params": {**info.params(), "input_size": list(cfg.input_size), "num_classes": cfg.num_classes},
                "seconds": round(info.seconds, 3),
                "parity": _parity_dict(checked),
            },
        )
    ]
    notes: list[str] = []

    if optimize:
        from deploykit.optimize import optimize_model

        with ui.step("optimising the graph"):
            start = time.perf_counter()
            result = optimize_model(onnx.load(str(main)))
            seconds = time.perf_counter() - start
            _restamp(result.model, spec.name, cfg, "fp32")
            save_onnx(result.model, main)
            check_onnx(main, expected_classes=cfg.num_classes)
        checked = verify("optimize", "fp32")
        stages.append(
            (
                "optimize",
                {
                    "params": {"passes": result.passes},
                    "modified": bool(result.modified),
                    "seconds": round(seconds, 3),
                    "report": result.to_dict(),
                    "parity": _parity_dict(checked),
                },
            )
        )

    if fp16:
        from deploykit.export.fp16 import convert_to_fp16

        with ui.step("converting to FP16"):
            half = convert_to_fp16(onnx.load(str(main)), keep_io_types=not fp16_io)
            _restamp(half, spec.name, cfg, "fp16")
            save_onnx(half, main)
            check_onnx(main, expected_classes=cfg.num_classes)
        checked = verify("fp16 conversion", "fp16", io_fp16=fp16_io)
        stages.append(("fp16", {"params": {"keep_io_types": not fp16_io}, "parity": _parity_dict(checked)}))

    io_dtype = "float16" if fp16_io else "float32"
    manifest = Manifest(
        model=spec.name,
        family=spec.family,
        format="onnx",
        precision=precision,
        main_file=MAIN_FILE,
        data_config=cfg,
        inputs=[TensorSpec(t.name, io_dtype, list(t.shape)) for t in info.inputs],
        outputs=[TensorSpec(t.name, io_dtype, list(t.shape)) for t in info.outputs],
        batch=info.batch,
        opset=opset,
        weights=weights_info,
    )
    for stage, entry in stages:
        manifest.add_stage(stage, **entry)
    manifest.results["parity"] = {
        "reference": "pytorch",
        "backend": "onnxruntime-cpu",
        "precision": precision,
        "gate": _gate_dict(precision),
        "passed": True,
        **_parity_dict(checked),
    }
    if notes:
        manifest.results["notes"] = notes
    with ui.step("writing the artifact"):
        artifact = writer.commit(manifest)
    ui.done(f"wrote {artifact.path}")
    return artifact


def _load(name: str, weights: Any, num_classes: int | None, overrides: dict[str, Any] | None, seed: int):
    from deploykit.models.weights import load_model

    model = load_model(
        name, weights=None if weights is None else str(weights), num_classes=num_classes, overrides=overrides, seed=seed
    )
    return model.eval()


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


def _reference(model: Any, cfg: DataConfig, chunk: int | None, dataset: Any, data: str | None, data_limit: int) -> _Ref:
    from deploykit.parity import dataset_inputs, parity_inputs

    n = PARITY_SAMPLES if chunk is None else chunk * math.ceil(PARITY_SAMPLES / chunk)
    x = parity_inputs(cfg, n, seed=PARITY_SEED)
    ref = _Ref(seeded_x=x, seeded_y=_torch_run(model, x, chunk), chunk=chunk)
    if dataset is not None:
        batches = list(dataset_inputs(dataset, cfg, data_limit, batch=chunk or 16))
        dx = np.concatenate(batches) if batches else np.zeros((0, *cfg.input_size), np.float32)
        if chunk is not None and len(dx) % chunk:
            dx = dx[: len(dx) - len(dx) % chunk]  # a fixed-batch graph takes whole batches only
        if len(dx) == 0:
            raise DeployKitError(f"--data {data}: no images to compare")
        ref.data_x, ref.data_y = dx, _torch_run(model, dx, chunk)
    return ref


def _torch_run(model: Any, x: np.ndarray, chunk: int | None) -> np.ndarray:
    import torch

    step = chunk or 16
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), step):
            outs.append(model(torch.from_numpy(x[i : i + step])).float().numpy())
    return np.concatenate(outs)


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

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def step(self, text: str) -> Any:
        return task(self.progress, text)

    def done(self, text: str) -> None:
        note(self.progress, text)
