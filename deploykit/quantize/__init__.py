"""INT8 post-training quantisation of an FP32 artifact, behind an accuracy gate.

``quantize_artifact`` streams the calibration set once to collect statistics, calibrates, places
Q/DQ nodes for the target runtime (``onnxruntime`` or ``tensorrt``), measures top-1 on the
validation set and, when INT8 falls under ``gate`` x FP32, returns the most damaging layers to
FP32 one at a time. The result is a new artifact directory (written whole or not at all) with the
method, profile, calibration-set fingerprint, fallbacks and accuracy in its manifest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from deploykit.errors import DeployKitError

METHODS_AUTO_ORDER = ("entropy", "percentile", "mse", "max")
SENSITIVITY_IMAGES = 64
VAL_CACHE_BYTES = 256 * 2**20

log = logging.getLogger(__name__)

__all__ = ["quantize_artifact", "GateFailedError", "QuantizeWarning"]


class GateFailedError(DeployKitError):
    """INT8 accuracy stayed under the gate even after every allowed fallback."""

    report: Any = None


class QuantizeWarning(UserWarning):
    """Something the user should know (e.g. calibration and validation sets overlap)."""


# ------------------------------------------------------------------------------------ data sources


@dataclass
class _Source:
    """A calibration or validation set: a dataset spec/object or in-memory arrays."""

    name: str
    dataset: Any = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dataset) if self.dataset is not None else len(self.x)

    def fingerprint(self, limit: int | None = None) -> str:
        """sha256 naming exactly the items used (the first ``limit``)."""
        n = len(self) if limit is None else min(limit, len(self))
        if self.dataset is not None:
            if n == len(self.dataset):
                return self.dataset.fingerprint()
            from deploykit.data.datasets import Subset

            return Subset(self.dataset, range(n)).fingerprint()
        h = hashlib.sha256(np.ascontiguousarray(self.x[:n]).tobytes())
        if self.y is not None:
            h.update(np.ascontiguousarray(self.y[:n]).tobytes())
        return h.hexdigest()

    def batches(self, cfg, batch: int, limit: int | None = None,
                progress: bool | str = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self) if limit is None else min(limit, len(self))
        if self.dataset is not None:
            from deploykit.data.transforms import iter_batches

            for x, y in iter_batches(self.dataset, cfg, batch, limit=n, progress=progress):
                yield _check_shape(x, cfg, self.name), y
            return
        y = self.y if self.y is not None else np.full(len(self.x), -1, np.int64)
        for i in range(0, n, batch):
            yield _check_shape(self.x[i:i + batch], cfg, self.name), np.asarray(y[i:i + batch], np.int64)


def _check_shape(x: np.ndarray, cfg, name: str) -> np.ndarray:
    want = tuple(cfg.input_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        got = "x".join(map(str, x.shape[1:])) if x.ndim == 4 else str(x.shape)
        raise DeployKitError(
            f"{name}: images are {got} (C x H x W) but the model takes {'x'.join(map(str, want))}"
        )
    return x


def _source(data: Any, role: str) -> _Source:
    from deploykit.data.specs import open_dataset

    if data is None:
        raise DeployKitError(f"no {role} set given")
    if isinstance(data, (str, os.PathLike)):
        if Path(data).is_file():
            return _Source(name=str(data), dataset=_index_file(Path(data)))
        ds = open_dataset(str(data))
        return _Source(name=ds.name, dataset=ds)
    if isinstance(data, np.ndarray):
        return _Source(name=f"{role} array", x=data.astype(np.float32, copy=False))
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        return _Source(name=f"{role} arrays", x=data[0].astype(np.float32, copy=False), y=np.asarray(data[1]))
    if hasattr(data, "__getitem__") and hasattr(data, "fingerprint"):
        return _Source(name=getattr(data, "name", role), dataset=data)
    raise DeployKitError(f"{role} set must be a dataset spec, a folder, a Dataset or an array, not {type(data).__name__}")


INDEX_HEADER = "# deploykit calibration set:"


def _index_file(path: Path):
    """A calibration index file (calibration/make_calibration_set.py --format index) as a Subset."""
    from deploykit.data.datasets import Subset
    from deploykit.data.specs import open_dataset

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DeployKitError(f"{path}: cannot read calibration index ({e.__class__.__name__})") from None
    if not lines or not lines[0].startswith(INDEX_HEADER):
        raise DeployKitError(f"{path}: not a calibration index (first line must start with '{INDEX_HEADER}')")
    spec = lines[0][len(INDEX_HEADER):].split(",")[0].strip()
    try:
        idx = [int(x) for x in lines[1:] if x.strip()]
    except ValueError:
        raise DeployKitError(f"{path}: index lines must be integers") from None
    return Subset(open_dataset(spec), idx, name=f"{spec} via {path.name}")


def _overlap(calib: _Source, val: _Source, calib_limit: int) -> int:
    """Items shared by the calibration images actually used and the validation set."""
    if calib.dataset is not None and val.dataset is not None:
        from deploykit.data.datasets import Subset, overlap

        used = calib.dataset if len(calib.dataset) <= calib_limit else Subset(calib.dataset, range(calib_limit))
        return overlap(used, val.dataset)
    if calib.x is not None and val.x is not None:
        seen = {hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in calib.x[:calib_limit]}
        return sum(hashlib.blake2b(r.tobytes(), digest_size=16).digest() in seen for r in val.x)
    return 0


# -------------------------------------------------------------------------------------- the model


def _fold_batchnorm(model):
    """Fold Conv->BatchNormalization so each conv is quantised with its final weights."""
    from deploykit.optimize import optimize_model

    return optimize_model(model, passes=["fold_batchnorm"]).model


def _float_tensors(model) -> list[str]:
    """Every graph input and node output (the tensors a TensorRT calibration cache lists)."""
    consts = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in consts]
    for n in model.graph.node:
        if n.op_type not in ("Constant", "Shape", "QuantizeLinear"):
            names.extend(o for o in n.output if o)
    return names


# ------------------------------------------------------------------------------------------- main


def quantize_artifact(
    artifact_dir: str | os.PathLike,
    calib: Any,
    val: Any,
    profile: str = "onnxruntime",
    method: str | None = None,
    gate: float | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    recipe: str | os.PathLike | None = None,
    num_images: int | None = None,
    batch: int | None = None,
    min_images: int | None = None,
    keep_fp32: Iterable[str] | None = None,
    max_fallbacks: int | None = None,
    percentile: float | None = None,
    report: str | os.PathLike | None = None,
    threads: int | None = None,
    progress: bool = False,
    log_fn: Callable[[str], None] | None = None,
    layout: str | None = None,
    speed_check: bool = True,
):
    """Quantise an FP32 artifact to INT8 and prove it keeps ``gate`` x FP32 top-1 on ``val``.

    Returns the new :class:`~deploykit.artifact.Artifact` (its ``report`` attribute holds the
    :class:`~deploykit.quantize.report.QuantReport`). Raises :class:`GateFailedError` (after writing
    ``report`` when given) if the gate cannot be met; no artifact is written then. ``layout``
    (onnxruntime): ``vnni`` or ``avx2`` (reduced-range) weights; None picks this CPU's.
    """
    import onnx

    from deploykit.artifact import Artifact, ArtifactWriter, Manifest
    from deploykit.quantize.calibrators import CalibConfig, METHODS
    from deploykit.quantize.gate import run_gate, top1
    from deploykit.quantize.placement import PROFILES, check_layout, plan_placement, prepare_model, resolve_keep
    from deploykit.quantize.recipes import load_recipe, recipe_for
    from deploykit.quantize.report import QuantReport
    from deploykit.quantize.stats import collect_stats
    from deploykit.quantize.trt_cache import write_cache

    say = log_fn or log.info
    art = Artifact.load(artifact_dir)
    m = art.manifest
    if m.format != "onnx" or m.precision != "fp32":
        raise DeployKitError(f"{art.path}: quantisation needs an FP32 ONNX artifact, this one is {m.precision} {m.format}")
    if profile not in PROFILES:
        raise DeployKitError(f"profile '{profile}' is not one of {', '.join(PROFILES)}")
    layout = check_layout(layout) if profile == "onnxruntime" else None
    rec = load_recipe(recipe) if recipe is not None else recipe_for(m.model, m.family)
    method = method or rec.method
    if method not in METHODS + ("auto",):
        raise DeployKitError(f"method '{method}' is not one of {', '.join(METHODS + ('auto',))}")
    gate = rec.gate if gate is None else float(gate)
    if not 0 < gate <= 1:
        raise DeployKitError(f"gate {gate} must be in (0, 1]")
    num_images = num_images or rec.num_images
    batch = batch or rec.batch
    min_images = rec.min_images if min_images is None else min_images
    max_fallbacks = rec.max_fallbacks if max_fallbacks is None else max_fallbacks
    percentile = rec.percentile if percentile is None else percentile
    keep_patterns = list(rec.keep_fp32 if keep_fp32 is None else keep_fp32)
    suffix = "int8" if profile == "onnxruntime" else "int8-trt"
    out_dir = Path(out) if out is not None else art.path.with_name(f"{art.path.name}-{suffix}")
    if out_dir.exists() and not force:
        raise DeployKitError(f"{out_dir}: already exists; pass --force to replace it")
    cfg = art.data_config

    # data
    cal, vs = _source(calib, "calibration"), _source(val, "validation")
    if len(cal) == 0:
        raise DeployKitError(f"calibration set {cal.name} is empty")
    used = min(num_images, len(cal))
    if used < min_images:
        raise DeployKitError(
            f"calibration set {cal.name} has {len(cal)} images; at least {min_images} are needed"
        )
    if len(vs) == 0:
        raise DeployKitError(f"validation set {vs.name} is empty")
    if vs.dataset is None and vs.y is None:
        raise DeployKitError("validation arrays need labels: pass (x, y)")
    warns: list[str] = []
    shared = _overlap(cal, vs, used)
    if shared:
        msg = (f"calibration set {cal.name} and validation set {vs.name} share {shared} images; "
               "the accuracy measured is optimistic")
        warns.append(msg)
        warnings.warn(msg, QuantizeWarning, stacklevel=2)
        say(f"warning: {msg}")

    # model
    try:
        fp32 = onnx.load(str(art.main_path))
    except Exception as e:  # noqa: BLE001 - protobuf raises several types
        raise DeployKitError(f"{art.main_path}: cannot read ONNX ({e.__class__.__name__})") from None
    model = prepare_model(_fold_batchnorm(fp32))
    keep = resolve_keep(model, keep_patterns)
    full_plan = plan_placement(model, profile, keep, layout)
    tensors = list(full_plan.stat_tensors)
    if profile == "tensorrt":
        tensors = list(dict.fromkeys(tensors + _float_tensors(model)))

    # one streaming pass over the calibration set
    sens: list[np.ndarray] = []
    digest = hashlib.sha256()
    seen = 0

    def cal_batches() -> Iterator[np.ndarray]:
        nonlocal seen
        for x, _ in cal.batches(cfg, batch, limit=used, progress="calibrating" if progress else False):
            digest.update(np.ascontiguousarray(x, np.float32).tobytes())
            if sum(len(s) for s in sens) < SENSITIVITY_IMAGES:
                sens.append(x[: SENSITIVITY_IMAGES - sum(len(s) for s in sens)])
            seen += len(x)
            yield x

    say(f"collecting statistics of {len(tensors)} tensors over {used} calibration images")
    stats = collect_stats(model, tensors, cal_batches(), threads=threads)
    calib_info = {
        "spec": cal.name, "images": seen, "fingerprint": cal.fingerprint(used),
        "data_sha256": digest.hexdigest(), "batch": batch,
    }

    # validation: cached in memory when small, else re-streamed per measurement
    val_cache: list[tuple[np.ndarray, np.ndarray]] | None = None
    per_image = 4 * int(np.prod(cfg.input_size))
    if per_image * len(vs) <= VAL_CACHE_BYTES:
        val_cache = list(vs.batches(cfg, max(batch, 64), progress="loading validation set" if progress else False))

    def val_batches() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        return val_cache if val_cache is not None else vs.batches(cfg, max(batch, 64))

    fp32_top1 = top1(model, val_batches(), threads)
    say(f"FP32 top-1 on {vs.name}: {fp32_top1:.4f}")
    rep = QuantReport(model=m.model, profile=profile, fp32_top1=fp32_top1, gate=gate, val=vs.name,
                      calib=calib_info, warnings=warns)

    def attempt(meth: str, fallbacks: int):
        cc = CalibConfig(method=meth, percentile=percentile)
        return run_gate(model, stats, cc, profile, keep, val_batches, lambda: iter(sens), fp32_top1,
                        gate, max_fallbacks=fallbacks, threads=threads, per_channel=rec.per_channel,
                        log=say, layout=layout)

    results: dict[str, tuple] = {}
    if method == "auto":
        for meth in METHODS_AUTO_ORDER:
            results[meth] = attempt(meth, 0)
        passing = [k for k in METHODS_AUTO_ORDER if results[k][0].passed]
        if passing:
            chosen = max(passing, key=lambda k: results[k][0].top1_final)
        else:
            chosen = max(METHODS_AUTO_ORDER, key=lambda k: results[k][0].top1_initial)
            results[chosen] = attempt(chosen, max_fallbacks)
    else:
        chosen = method
        results[chosen] = attempt(chosen, max_fallbacks)
    rep.attempts = [r[0] for r in results.values()]
    rep.chosen = chosen
    best, qmodel, plan = results[chosen]
    rep.passed = best.passed

    if not best.passed:
        if report is not None:
            rep.write(report)
        exc = GateFailedError(
            f"INT8 top-1 {best.top1_final:.4f} is under the gate {gate} x FP32 {fp32_top1:.4f} = "
            f"{gate * fp32_top1:.4f} ({method}, {len(best.fallbacks)} layers returned to FP32); no artifact written"
        )
        exc.report = rep
        raise exc

    fusion = None
    if profile == "onnxruntime":
        from deploykit.quantize.placement import ort_fusion

        fused = ort_fusion(qmodel)
        fusion = {k: v for k, v in sorted(fused.items())}
        unfused = sum(fused.get(op, 0) for op in ("Conv", "FusedConv", "Gemm", "MatMul"))
        say(f"ONNX Runtime fuses {fused.get('QLinearConv', 0)} QLinearConv, {fused.get('QGemm', 0)} QGemm, "
            f"{fused.get('QLinearAdd', 0)} QLinearAdd, {fused.get('QLinearConcat', 0)} QLinearConcat; "
            f"{unfused} weighted ops left in float")

    speed = None  # does INT8 pay here? measured against the FP32 parent, recorded, said when not
    if speed_check and profile == "onnxruntime":
        from deploykit.quantize.speed import artifact_batches, check_speed

        speed = check_speed(qmodel, str(art.main_path), artifact_batches(m.batch), threads=threads, progress=say)

    # the artifact, written whole or not at all
    from deploykit.artifact import tool_versions
    from deploykit.quantize.calibrators import calibrate

    with ArtifactWriter(out_dir, force=force) as w:
        onnx.save(qmodel, str(w.dir / "model.onnx"))
        files = {"model": "model.onnx"}
        if profile == "tensorrt":
            thr = calibrate(stats, CalibConfig(method=chosen, percentile=percentile), asymmetric=False)
            scales = {t: max(v, 1e-12) / 127.0 for t, v in thr.items()}
            write_cache(w.dir / "calibration.cache", scales, art.main_path, method=chosen,
                        extra={"parent_manifest_sha256": art.manifest_sha256()})
            files["calibration_cache"] = "calibration.cache"
        written = rep.write(w.dir / "quantize_report.json")
        files["report"] = written[0].name
        if len(written) > 1:
            files["sqnr_plot"] = written[1].name
        summary = rep.to_dict()
        manifest = Manifest(
            model=m.model, family=m.family, format="onnx", precision="int8", main_file="model.onnx",
            data_config=m.data_config, inputs=m.inputs, outputs=m.outputs, batch=m.batch,
            opset=max(o.version for o in qmodel.opset_import if o.domain in ("", "ai.onnx")),
            weights=m.weights, parent=art.parent_ref(), versions=tool_versions(),
            stages=list(m.stages),
        )
        manifest.add_stage(
            "quantize",
            params={
                "profile": profile, "method": chosen, "requested_method": method, "gate": gate,
                "per_channel": rec.per_channel, "recipe": rec.name, "keep_fp32_patterns": keep_patterns,
                "layout": layout,
            },
            calibration=calib_info,
            fallbacks=summary["fallbacks"],
            kept_fp32=summary["kept_fp32"],
            placement=plan.summary(),
            ort_fused_ops=fusion,
            files=files,
        )
        manifest.results["accuracy"] = {
            "dataset": vs.name, "top1": best.top1_final, "fp32_top1": fp32_top1,
            "relative": summary["relative_accuracy"], "gate": gate, "passed": True,
        }
        manifest.results["quantize"] = {k: summary[k] for k in (
            "method", "int8_top1", "int8_top1_before_fallback", "fp32_top1", "kept_fp32", "warnings")}
        if speed is not None:
            manifest.results["int8_speed"] = speed.to_dict()
        result = w.commit(manifest)
    if report is not None:
        rep.write(report)
    result.report = rep  # type: ignore[attr-defined]
    result.speed = speed  # type: ignore[attr-defined]
    return result
