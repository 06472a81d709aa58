"""INT8 post-training quantisation of an FP32 artifact, behind an accuracy gate.

``quantize_artifact`` streams the calibration set once to collect statistics, calibrates, places
Q/DQ nodes for the target runtime (``onnxruntime`` or ``tensorrt``), measures top-1 on the
validation set and, when INT8 falls under ``gate`` x FP32, searches for the fewest most damaging
layers to return to FP32 (bisection on a validation subset, confirmed on the whole set; see
``gate``). ``high_precision_dtype="fp16"`` (tensorrt) then runs everything outside the Q/DQ pairs
in FP16 and gates that too. The result is a new artifact directory (written whole or not at all)
with the method, profile, calibration-set fingerprint, fallbacks and accuracy in its manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError, GateError

METHODS_AUTO_ORDER = ("entropy", "percentile", "mse", "max")
SENSITIVITY_IMAGES = 64
SEARCH_IMAGES = 2000  # the fallback search scores candidates on this many validation images
VAL_CACHE_BYTES = 256 * 2**20
FP16_EVAL_OPTIMIZATION = "basic"
CACHE_NOTE = (
    "calibration.cache is for TensorRT 10's implicit INT8 calibration only (IInt8Calibrator, "
    "removed in TensorRT 11); the Q/DQ model.onnx carries its own scales and needs no cache"
)

log = logging.getLogger(__name__)

__all__ = [
    "GateFailedError",
    "QuantizeOptions",
    "QuantizeResult",
    "QuantizeWarning",
    "prepare_for_quantization",
    "quantize_artifact",
    "quantize_model",
    "write_int8_artifact",
]


class GateFailedError(GateError):
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

    def batches(
        self, cfg, batch: int, limit: int | None = None, progress: bool | str = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = len(self) if limit is None else min(limit, len(self))
        if self.dataset is not None:
            from deploykit.data.transforms import iter_batches

            for x, y in iter_batches(self.dataset, cfg, batch, limit=n, progress=progress):
                yield _check_shape(x, cfg, self.name), y
            return
        y = self.y if self.y is not None else np.full(len(self.x), -1, np.int64)
        for i in range(0, n, batch):
            yield _check_shape(self.x[i : i + batch], cfg, self.name), np.asarray(y[i : i + batch], np.int64)


def _check_shape(x: np.ndarray, cfg, name: str) -> np.ndarray:
    want = tuple(cfg.input_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        got = "x".join(map(str, x.shape[1:])) if x.ndim == 4 else str(x.shape)
        raise DeployKitError(f"{name}: images are {got} (C x H x W) but the model takes {'x'.join(map(str, want))}")
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
    raise DeployKitError(
        f"{role} set must be a dataset spec, a folder, a Dataset or an array, not {type(data).__name__}"
    )


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
    spec = lines[0][len(INDEX_HEADER) :].split(",")[0].strip()
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


def prepare_for_quantization(model):
    """Fold Conv->BatchNormalization (each conv is quantised with its final weights) and settle
    the graph for placement: the FP32 model every INT8 variant is compared against."""
    from deploykit.optimize import optimize_model
    from deploykit.quantize.placement import prepare_model

    return prepare_model(optimize_model(model, passes=["fold_batchnorm"]).model)


def _float_tensors(model) -> list[str]:
    """Every graph input and node output (the tensors a TensorRT calibration cache lists)."""
    consts = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in consts]
    for n in model.graph.node:
        if n.op_type not in ("Constant", "Shape", "QuantizeLinear"):
            names.extend(o for o in n.output if o)
    return names


# ---------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class QuantizeOptions:
    """One quantisation run's settings: a recipe with the caller's overrides merged in."""

    profile: str = "onnxruntime"
    method: str = "entropy"
    gate: float = 0.995
    recipe: str = "default"
    num_images: int = 512
    batch: int = 32
    min_images: int = 32
    per_channel: bool = True
    keep_fp32: tuple[str, ...] = ()
    max_fallbacks: int = 10
    percentile: float = 99.99
    threads: int | None = None
    layout: str | None = None  # onnxruntime weights: "vnni" (full range) or "avx2" (7-bit); None: this CPU's
    high_precision_dtype: str = "fp32"  # tensorrt: the type of everything outside the Q/DQ pairs ("fp16": best)
    search_images: int = SEARCH_IMAGES  # validation images the fallback search scores on (0: all of them)

    @classmethod
    def from_recipe(cls, recipe: Any, **overrides: Any) -> QuantizeOptions:
        """The recipe's values, each replaced by an override that is not None; then validated."""
        base = {
            k: getattr(recipe, k)
            for k in (
                "method",
                "gate",
                "num_images",
                "batch",
                "min_images",
                "per_channel",
                "keep_fp32",
                "max_fallbacks",
                "percentile",
            )
        }
        base["recipe"] = recipe.name
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise DeployKitError(f"unknown quantisation option(s): {', '.join(sorted(unknown))}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        base["keep_fp32"] = tuple(base["keep_fp32"])
        return cls(**base).checked()

    def checked(self) -> QuantizeOptions:
        from deploykit.quantize.calibrators import METHODS
        from deploykit.quantize.placement import PROFILES

        if self.profile not in PROFILES:
            raise DeployKitError(f"profile '{self.profile}' is not one of {', '.join(PROFILES)}")
        if self.method not in METHODS + ("auto",):
            raise DeployKitError(f"method '{self.method}' is not one of {', '.join(METHODS + ('auto',))}")
        if not 0 < self.gate <= 1:
            raise DeployKitError(f"gate {self.gate} must be in (0, 1]")
        if self.num_images < 1 or self.batch < 1 or self.min_images < 1 or self.max_fallbacks < 0:
            raise DeployKitError("num_images, batch and min_images must be positive and max_fallbacks not negative")
        if self.search_images < 0:
            raise DeployKitError(f"search_images must be 0 (the whole set) or positive, got {self.search_images}")
        if self.threads is not None and self.threads < 1:
            raise DeployKitError(f"threads must be at least 1, got {self.threads}")
        from deploykit.quantize.fp16 import check_high_precision
        from deploykit.quantize.placement import CPU_PROFILES, check_layout

        check_high_precision(self.high_precision_dtype, self.profile)
        layout = check_layout(self.layout) if self.profile in CPU_PROFILES else None
        return self if layout == self.layout else dataclasses.replace(self, layout=layout)

    @property
    def out_suffix(self) -> str:
        if self.profile == "onnxruntime":
            return "int8"
        if self.profile == "openvino":
            return "int8-ov"
        return "int8-trt-fp16" if self.high_precision_dtype == "fp16" else "int8-trt"


@dataclass
class QuantizeResult:
    """What a quantisation run produced: the INT8 model, its report and every method tried."""

    options: QuantizeOptions
    model: Any  # the INT8 onnx.ModelProto
    fp32_model: Any  # the prepared FP32 model it was compared against
    plan: Any  # placement.QuantPlan
    stats: dict[str, Any]
    report: Any  # report.QuantReport
    attempts: dict[str, Any]  # method -> gate.Attempt
    calibration: dict[str, Any]
    validation: str
    fusion: dict[str, int] | None = None
    speed: Any = None  # speed.SpeedCheck: INT8 against its FP32 parent on this machine (quantize_artifact)
    artifact: Any = None  # the written Artifact (quantize_artifact), None for quantize_model alone

    @property
    def passed(self) -> bool:
        return bool(self.report.passed)

    @property
    def chosen(self) -> Any:
        return self.attempts[self.report.chosen]

    @property
    def top1(self) -> float:
        """Top-1 of the model delivered: the FP16-outside variant's when there is one."""
        hp = self.report.high_precision
        return hp["top1"] if hp else self.chosen.top1_final

    @property
    def path(self) -> Path:
        """The written artifact's directory."""
        if self.artifact is None:
            raise DeployKitError("this quantisation result was not written to an artifact")
        return self.artifact.path


# --------------------------------------------------------------------------------------- pipeline


def quantize_model(
    fp32,
    calib: Any,
    val: Any,
    data_config: Any,
    options: QuantizeOptions,
    *,
    model_name: str = "model",
    progress: bool = False,
    log_fn: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Calibrate, place Q/DQ, gate and fall back: an FP32 ONNX model in, an INT8 result out.

    Nothing is written; raises :class:`GateFailedError` (with the report) when the gate cannot
    be met. The public lower-level entry point that benchmarks and ``quantize_artifact`` share.
    """
    from deploykit.quantize.calibrators import CalibConfig
    from deploykit.quantize.gate import Validation, run_gate
    from deploykit.quantize.placement import plan_placement, resolve_keep
    from deploykit.quantize.report import QuantReport
    from deploykit.quantize.stats import collect_stats

    say = log_fn or log.info
    o, cfg = options, data_config
    cal, vs = _source(calib, "calibration"), _source(val, "validation")
    used = _check_sources(cal, vs, o)
    warns: list[str] = []
    shared = _overlap(cal, vs, used)
    if shared:
        msg = (
            f"calibration set {cal.name} and validation set {vs.name} share {shared} images; "
            "the accuracy measured is optimistic"
        )
        warns.append(msg)
        warnings.warn(msg, QuantizeWarning, stacklevel=2)
        say(f"warning: {msg}")

    model = prepare_for_quantization(fp32)
    keep = resolve_keep(model, list(o.keep_fp32))
    tensors = list(plan_placement(model, o.profile, keep, o.layout).stat_tensors)
    if o.profile == "tensorrt":
        tensors = list(dict.fromkeys(tensors + _float_tensors(model)))

    # one streaming pass over the calibration set; its first images also feed the sensitivity
    sens: list[np.ndarray] = []
    digest = hashlib.sha256()
    seen = 0

    def cal_batches() -> Iterator[np.ndarray]:
        nonlocal seen
        for x, _ in cal.batches(cfg, o.batch, limit=used, progress="calibrating" if progress else False):
            digest.update(np.ascontiguousarray(x, np.float32).tobytes())
            if sum(len(s) for s in sens) < SENSITIVITY_IMAGES:
                sens.append(x[: SENSITIVITY_IMAGES - sum(len(s) for s in sens)])
            seen += len(x)
            yield x

    say(f"collecting statistics of {len(tensors)} tensors over {used} calibration images")
    stats = collect_stats(model, tensors, cal_batches(), threads=o.threads)
    calib_info = {
        "spec": cal.name,
        "images": seen,
        "fingerprint": cal.fingerprint(used),
        "data_sha256": digest.hexdigest(),
        "batch": o.batch,
    }

    val_batches = _validation_batches(vs, cfg, o.batch, progress)
    validation = Validation(model, val_batches, _search_batches(vs, cfg, o.batch, o.search_images), o.threads)
    fp32_top1 = validation.fp32_full
    say(f"FP32 top-1 on {vs.name}: {fp32_top1:.4f} ({validation.full_images} images)")
    if validation.has_subset:
        say(
            f"the fallback search scores on {validation.search_images} evenly spaced images of them "
            f"(FP32 {validation.fp32_search:.4f}) and confirms its choice on all {validation.full_images}"
        )
    rep = QuantReport(
        model=model_name,
        profile=o.profile,
        fp32_top1=fp32_top1,
        gate=o.gate,
        val=vs.name,
        calib=calib_info,
        warnings=warns,
    )

    def attempt(meth: str, fallbacks: int, confirm: bool = True):
        return run_gate(
            model,
            stats,
            CalibConfig(method=meth, percentile=o.percentile),
            o.profile,
            keep,
            validation,
            lambda: iter(sens),
            o.gate,
            max_fallbacks=fallbacks,
            threads=o.threads,
            per_channel=o.per_channel,
            log=say,
            layout=o.layout,
            progress=progress,
            confirm=confirm,
        )

    tried: dict[str, tuple] = {}
    if o.method == "auto":
        # every calibrator scored on the search set, fully quantised; the best one goes through
        # the gate (and the fallback search when it needs one)
        for meth in METHODS_AUTO_ORDER:
            tried[meth] = attempt(meth, 0, confirm=False)
        chosen = max(METHODS_AUTO_ORDER, key=lambda k: tried[k][0].top1_initial)
        tried[chosen] = attempt(chosen, o.max_fallbacks)
    else:
        chosen = o.method
        tried[chosen] = attempt(chosen, o.max_fallbacks)
    rep.attempts = [r[0] for r in tried.values()]
    rep.chosen = chosen
    best, qmodel, plan = tried[chosen]
    rep.passed = best.passed
    result = QuantizeResult(
        options=o,
        model=qmodel,
        fp32_model=model,
        plan=plan,
        stats=stats,
        report=rep,
        attempts={k: v[0] for k, v in tried.items()},
        calibration=calib_info,
        validation=vs.name,
    )
    if not best.passed:
        ref = best.fp32_top1 if best.fp32_top1 is not None else fp32_top1
        exc = GateFailedError(
            f"INT8 top-1 {best.top1_final:.4f} on {best.images} images is under the gate {o.gate} x FP32 "
            f"{ref:.4f} = {o.gate * ref:.4f} ({o.method}, {len(best.fallbacks)} layers returned to FP32"
            f"{'; ' + best.stopped if best.stopped else ''}); no artifact written"
        )
        exc.report = rep
        raise exc
    if o.high_precision_dtype == "fp16":
        result.model = _fp16_outside(result, val_batches, say)
    if o.profile == "onnxruntime":
        from deploykit.quantize.placement import ort_fusion

        fused = ort_fusion(qmodel)
        result.fusion = dict(sorted(fused.items()))
        unfused = sum(fused.get(op, 0) for op in ("Conv", "FusedConv", "Gemm", "MatMul"))
        say(
            f"ONNX Runtime fuses {fused.get('QLinearConv', 0)} QLinearConv, {fused.get('QGemm', 0)} QGemm, "
            f"{fused.get('QLinearAdd', 0)} QLinearAdd, {fused.get('QLinearConcat', 0)} QLinearConcat; "
            f"{unfused} weighted ops left in float"
        )
    return result


def _fp16_outside(result: QuantizeResult, val_batches: Callable[[], Iterable], say: Callable[[str], None]):
    """The passing INT8 model with FP16 outside its Q/DQ pairs, gated like INT8 on the full set."""
    from deploykit.quantize.fp16 import to_fp16_outside_qdq
    from deploykit.quantize.gate import meets, top1

    o, rep = result.options, result.report
    q16, kept = to_fp16_outside_qdq(result.model, result.stats)
    say(f"FP16 outside the Q/DQ pairs (opset 19, FP16 scales); {len(kept)} nodes kept in FP32: {', '.join(kept)}")
    # basic optimisation: ONNX Runtime's QDQ fusions (extended level) build QLinearConcat & co.
    # with the float16 scales, which its CPU kernels refuse; unfused, every op runs as written
    acc = top1(q16, val_batches(), o.threads, optimization=FP16_EVAL_OPTIMIZATION)
    passed = meets(acc, rep.fp32_top1, o.gate)
    rep.high_precision = {"dtype": "fp16", "top1": acc, "kept_fp32_nodes": kept, "passed": passed}
    say(f"INT8 + FP16 top-1 {acc:.4f} (INT8 + FP32 {result.chosen.top1_final:.4f}, gate {o.gate * rep.fp32_top1:.4f})")
    if not passed:
        rep.passed = False
        exc = GateFailedError(
            f"INT8 with FP16 outside the Q/DQ pairs: top-1 {acc:.4f} is under the gate {o.gate} x FP32 "
            f"{rep.fp32_top1:.4f} = {o.gate * rep.fp32_top1:.4f} (INT8 with FP32 there passed at "
            f"{result.chosen.top1_final:.4f}: use --high-precision fp32); no artifact written"
        )
        exc.report = rep
        raise exc
    return q16


def _check_sources(cal: _Source, vs: _Source, o: QuantizeOptions) -> int:
    """The number of calibration images to use; empty or too-small sets are one-line errors."""
    if len(cal) == 0:
        raise DeployKitError(f"calibration set {cal.name} is empty")
    used = min(o.num_images, len(cal))
    if used < o.min_images:
        raise DeployKitError(f"calibration set {cal.name} has {len(cal)} images; at least {o.min_images} are needed")
    if len(vs) == 0:
        raise DeployKitError(f"validation set {vs.name} is empty")
    if vs.dataset is None and vs.y is None:
        raise DeployKitError("validation arrays need labels: pass (x, y)")
    return used


def _search_batches(
    vs: _Source, cfg: Any, batch: int, images: int
) -> Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]] | None:
    """Every k-th validation image (about ``images`` of them, kept in memory), or None when the
    set is small enough to search on whole (at most twice ``images``, or ``images`` is 0)."""
    n = len(vs)
    if images <= 0 or n <= 2 * images:
        return None
    stride = n // images
    if vs.dataset is not None:
        from deploykit.data.datasets import Subset

        sub = _Source(name=f"{vs.name}[::{stride}]", dataset=Subset(vs.dataset, range(0, n, stride)))
    else:
        sub = _Source(name=f"{vs.name}[::{stride}]", x=vs.x[::stride], y=vs.y[::stride])
    cache = list(sub.batches(cfg, max(batch, 64)))
    return lambda: cache


def _validation_batches(
    vs: _Source, cfg: Any, batch: int, progress: bool
) -> Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]:
    """Validation batches, cached in memory when small, else re-streamed per measurement."""
    if 4 * int(np.prod(cfg.input_size)) * len(vs) <= VAL_CACHE_BYTES:
        cache = list(vs.batches(cfg, max(batch, 64), progress="loading validation set" if progress else False))
        return lambda: cache
    return lambda: vs.batches(cfg, max(batch, 64))


# ------------------------------------------------------------------------------------- artifacts


def write_int8_artifact(parent: Any, result: QuantizeResult, out_dir: str | os.PathLike, force: bool = False) -> Any:
    """The INT8 artifact (model, TensorRT calibration cache, report, manifest), whole or not at all."""
    import onnx

    from deploykit.artifact import ArtifactWriter, Manifest, accuracy_record, tool_versions
    from deploykit.quantize.calibrators import CalibConfig, calibrate
    from deploykit.quantize.trt_cache import write_cache

    m, o, rep = parent.manifest, result.options, result.report
    with ArtifactWriter(out_dir, force=force, reads=(parent.path,)) as w:
        onnx.save(result.model, str(w.dir / "model.onnx"))
        files = {"model": "model.onnx"}
        if o.profile == "tensorrt":
            thr = calibrate(result.stats, CalibConfig(method=rep.chosen, percentile=o.percentile), asymmetric=False)
            scales = {t: max(v, 1e-12) / 127.0 for t, v in thr.items()}
            write_cache(
                w.dir / "calibration.cache",
                scales,
                parent.main_path,
                method=rep.chosen,
                extra={"parent_manifest_sha256": parent.manifest_sha256(), "use": CACHE_NOTE},
            )
            files["calibration_cache"] = "calibration.cache"
        written = rep.write(w.dir / "quantize_report.json")
        files["report"] = written[0].name
        if len(written) > 1:
            files["sqnr_plot"] = written[1].name
        summary = rep.to_dict()
        manifest = Manifest(
            model=m.model,
            family=m.family,
            format="onnx",
            precision="int8",
            main_file="model.onnx",
            data_config=m.data_config,
            inputs=m.inputs,
            outputs=m.outputs,
            batch=m.batch,
            opset=max(op.version for op in result.model.opset_import if op.domain in ("", "ai.onnx")),
            weights=m.weights,
            parent=parent.parent_ref(),
            versions=tool_versions(),
            stages=list(m.stages),
        )
        manifest.add_stage(
            "quantize",
            params={
                "profile": o.profile,
                "method": rep.chosen,
                "requested_method": o.method,
                "gate": o.gate,
                "per_channel": o.per_channel,
                "recipe": o.recipe,
                "keep_fp32_patterns": list(o.keep_fp32),
                "layout": o.layout,
                "high_precision_dtype": o.high_precision_dtype,
            },
            calibration=result.calibration,
            fallbacks=summary["fallbacks"],
            kept_fp32=summary["kept_fp32"],
            placement=result.plan.summary(),
            ort_fused_ops=result.fusion,
            files=files,
        )
        manifest.results["accuracy"] = accuracy_record(
            dataset=result.validation,
            top1=result.top1,
            reference_top1=rep.fp32_top1,
            gate=o.gate,
            reference="fp32 model (ONNX Runtime) on the same images",
        )
        manifest.results["quantize"] = {
            k: summary[k]
            for k in (
                "method",
                "int8_top1",
                "int8_top1_before_fallback",
                "fp32_top1",
                "kept_fp32",
                "warnings",
                "high_precision",
            )
        }
        if result.speed is not None:
            manifest.results["int8_speed"] = result.speed.to_dict()
            if result.speed.runtime_choice is not None:
                manifest.results["runtime_choice"] = result.speed.runtime_choice.to_dict()
        return w.commit(manifest)


def quantize_artifact(
    artifact_dir: str | os.PathLike,
    calib: Any,
    val: Any,
    options: QuantizeOptions | None = None,
    *,
    out: str | os.PathLike | None = None,
    force: bool = False,
    report: str | os.PathLike | None = None,
    progress: bool = False,
    log_fn: Callable[[str], None] | None = None,
    speed_check: bool = True,
    **overrides: Any,
) -> QuantizeResult:
    """Quantise an FP32 artifact to INT8 and prove it keeps ``gate`` x FP32 top-1 on ``val``.

    ``options`` defaults to the family's recipe (or ``recipe=``) merged with ``overrides``
    (``profile``, ``method``, ``gate``, ``num_images``, ``keep_fp32``, ``threads``...). Returns a
    :class:`QuantizeResult` whose ``artifact`` is the new INT8 artifact; raises
    :class:`GateFailedError` (after writing ``report`` when given) and writes no artifact when the
    gate cannot be met. With ``speed_check`` (onnxruntime profile) the INT8 model is timed against
    its FP32 parent on this machine and the verdict recorded (``result.speed``, ``int8_speed``).
    """
    from deploykit.artifact import Artifact, check_output
    from deploykit.onnx_io import load_onnx
    from deploykit.quantize.recipes import load_recipe, recipe_for

    art = Artifact.load(artifact_dir)
    m = art.manifest
    if m.format != "onnx" or m.precision != "fp32":
        raise DeployKitError(
            f"{art.path}: quantisation needs an FP32 ONNX artifact, this one is {m.precision} {m.format}"
        )
    if options is None:
        recipe = overrides.pop("recipe", None)
        rec = load_recipe(recipe) if recipe is not None else recipe_for(m.model, m.family)
        options = QuantizeOptions.from_recipe(rec, **overrides)
    elif overrides:
        raise DeployKitError("give quantisation settings either as options or as keyword overrides, not both")
    out_dir = Path(out) if out is not None else art.path.with_name(f"{art.path.name}-{options.out_suffix}")
    check_output(out_dir, force, reads=(art.path,))
    try:
        result = quantize_model(
            load_onnx(art.main_path, check=False),
            calib,
            val,
            art.data_config,
            options,
            model_name=m.model,
            progress=progress,
            log_fn=log_fn,
        )
    except GateFailedError as e:
        if report is not None and e.report is not None:
            e.report.write(report)
        raise
    from deploykit.quantize.placement import CPU_PROFILES

    if speed_check and options.profile in CPU_PROFILES:  # does INT8 pay here? recorded, said when not
        from deploykit.quantize.speed import artifact_batches, check_speed

        result.speed = check_speed(
            result.model,
            str(art.main_path),
            artifact_batches(m.batch),
            threads=options.threads,
            progress=log_fn or log.info,
            target=options.profile,  # onnxruntime or openvino: the runtime the layout was placed for
        )
    result.artifact = write_int8_artifact(art, result, out_dir, force=force)
    if report is not None:
        result.report.write(report)
    return result
