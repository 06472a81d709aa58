"""``import_onnx``: any ONNX image classifier (another exporter's, a zoo's) -> a deploykit artifact.

On the way in the file is read with the same guards as every ONNX file (custom domains, external
data that leaves its folder), checked with the ONNX checker and strict shape inference, upgraded
to the project's opset with ``onnx.version_converter`` when older, loaded by ONNX Runtime, and
compared on fixed-seed inputs with the source file as given. The manifest's ``import`` stage
records the source (sha256, producer, IR version, opset) and every change the importer made.
Like every stage, the artifact is written whole or not at all.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from deploykit._io import sha256_file
from deploykit.artifact import Artifact, ArtifactWriter, BatchProfile, Manifest, TensorSpec
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError, GateError
from deploykit.export.api import _missing_parents, _remove_empty
from deploykit.onnx_io import first_line, load_onnx, ort_session, save_onnx
from deploykit.progress import note, task

MAIN_FILE = "model.onnx"
IMPORTED_FAMILY = "imported"
PARITY_SAMPLES = 8
PARITY_SEED = 0
# The project's opsets (deploykit.export.to_onnx, which imports torch, keeps the same numbers).
PROJECT_OPSET = 18
MIN_OPSET = 13
MAX_OPSET = 20
DEFAULT_MAX_BATCH = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class SourceInfo:
    """What the imported file was, for the manifest's ``import`` stage."""

    path: str
    sha256: str
    bytes: int
    producer_name: str
    producer_version: str
    ir_version: int
    opset: int
    external_data: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_out_dir(name: str) -> Path:
    """``artifacts/<name>/`` under the working directory, as ``export`` does."""
    return Path("artifacts") / name


def import_onnx(
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    family: str = IMPORTED_FAMILY,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
    seed: int = PARITY_SEED,
) -> Artifact:
    """Turn the ONNX classifier at ``source`` into a checked fp32 artifact directory and return it.

    ``overrides`` takes the data-config fields ``export`` takes (``image_size``, ``mean``, ``std``,
    ``labels``, plus ``interpolation`` and ``crop_pct``); the input size must be given when the
    model's height and width are symbolic. ``family`` picks the INT8 recipe (``imported``: defaults).
    """
    src = Path(source)
    name = _check_name(name if name is not None else _name_from(src), "model name")
    family = _check_name(family, "family")
    out_dir = Path(out) if out is not None else default_out_dir(name)
    created_parent = _missing_parents(out_dir)
    try:
        return _import(src, out_dir, name, family, overrides or {}, force, progress, seed)
    except BaseException:
        _remove_empty(created_parent)  # folders made for the output go again: nothing is left behind
        raise


def _import(
    src: Path, out_dir: Path, name: str, family: str, overrides: dict[str, Any], force: bool, progress: bool, seed: int
) -> Artifact:
    with ArtifactWriter(out_dir, force=force, reads=(src,)) as writer:  # a taken output fails before any work
        with task(progress, f"reading {src}"):
            model = load_onnx(src, check=False)  # not ONNX, custom domains, escaping external data
            info = _source_info(src, model)
        changes: list[str] = []
        with task(progress, "checking the graph (ONNX checker, opset, shape inference)"):
            _checker(model, src)
            model = _upgrade(model, src, info.opset, changes)
            model = _infer_shapes(model, src)
        iface = _interface(model, src, overrides, changes, name, family)
        cfg = iface.data_config
        _stamp(model, name, cfg)
        main = writer.dir / MAIN_FILE
        with task(progress, "writing and loading the model in ONNX Runtime"):
            external = save_onnx(model, main)
            ort_session(main, where=f"{src} (as imported)")
        with task(progress, "checking parity with the source file"):
            parity = _parity(src, main, cfg, iface.batch, seed)
        note(progress, f"parity with {src.name}: {parity.summary()}")
        manifest = Manifest(
            model=name,
            family=family,
            format="onnx",
            precision="fp32",
            main_file=MAIN_FILE,
            data_config=cfg,
            inputs=[iface.input],
            outputs=[iface.output],
            batch=iface.batch,
            opset=_opset(model),
            weights=None,
        )
        parity_entry = {"fixed_seed": {"seed": seed, **parity.to_dict()}}
        manifest.add_stage(
            "import",
            source=info.to_dict(),
            params={
                "family": family,
                "overrides": sorted(overrides),
                "external_data": external,
            },
            changes=changes,
            parity=parity_entry,
        )
        manifest.results["parity"] = {
            "reference": "source ONNX file",
            "backend": "onnxruntime-cpu",
            "precision": "fp32",
            "passed": True,
            **parity_entry,
        }
        if iface.notes:
            manifest.results["notes"] = list(iface.notes)
        return writer.commit(manifest)


# ----------------------------------------------------------------------------------- the checks


def _name_from(path: Path) -> str:
    """The file's stem as a model name: other characters become '-' ("my model (v2)" -> "my-model-v2")."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-._")[:64]
    return name or "model"


def _check_name(value: str, what: str) -> str:
    value = str(value)
    if not _NAME.match(value):
        raise DeployKitError(
            f"{what} '{value[:80]}' must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return value


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _source_info(path: Path, model: onnx.ModelProto) -> SourceInfo:
    from deploykit.onnx_io import _all_tensors, _has_external

    external = sorted(
        {
            e.value
            for t in _all_tensors(onnx.load(str(path), load_external_data=False))
            if _has_external(t)
            for e in t.external_data
            if e.key == "location"
        }
    )
    opset = _opset(model)
    if opset == 0:
        raise DeployKitError(f"{path}: imports no standard ONNX opset (ai.onnx); not an image classifier graph")
    return SourceInfo(
        path=str(path.resolve()),
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        ir_version=int(model.ir_version),
        opset=opset,
        external_data=external,
    )


def _checker(model: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise DeployKitError(f"{path}: invalid ONNX model ({first_line(e)})") from None


def _upgrade(model: onnx.ModelProto, path: Path, opset: int, changes: list[str]) -> onnx.ModelProto:
    """Older opsets go up to the project's; one past what ONNX Runtime and TensorRT take comes down."""
    if MIN_OPSET <= opset <= MAX_OPSET and opset >= PROJECT_OPSET:
        return model
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, PROJECT_OPSET)
        onnx.checker.check_model(converted)
    except Exception as e:  # noqa: BLE001 - the converter raises RuntimeError/InferenceError/ValidationError
        raise DeployKitError(
            f"{path}: opset {opset} cannot be converted to opset {PROJECT_OPSET} ({_converter_reason(e)})"
        ) from None
    changes.append(f"opset {opset} -> {PROJECT_OPSET} (onnx.version_converter)")
    if converted.ir_version < model.ir_version:
        converted.ir_version = model.ir_version
    return converted


def _converter_reason(e: BaseException) -> str:
    text = first_line(e)
    for marker in ("failed: ", "Assertion "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return text.replace("'%s'", "").removeprefix("Warning: ").strip()[:200] or type(e).__name__


def _infer_shapes(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as e:
        raise DeployKitError(f"{path}: shape inference failed ({first_line(e)})") from None


@dataclass
class _Interface:
    input: TensorSpec
    output: TensorSpec
    batch: BatchProfile
    data_config: DataConfig
    notes: list[str]


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _dtype(vi: onnx.ValueInfoProto) -> str:
    if not vi.type.HasField("tensor_type"):
        return "not a tensor"
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).name
    except (KeyError, TypeError, ValueError):
        return f"onnx type {vi.type.tensor_type.elem_type}"


def _interface(
    model: onnx.ModelProto, path: Path, overrides: dict[str, Any], changes: list[str], name: str, family: str
) -> _Interface:
    """One float32 NCHW image input and one [N, classes] output, and the data config to feed them."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    fed = [i for i in g.input if i.name not in inits]
    if len(fed) != 1:
        names = ", ".join(i.name for i in fed) or "none"
        raise DeployKitError(
            f"{path}: has {len(fed)} inputs ({names}); deploykit imports image classifiers with one NCHW image input"
        )
    if len(g.output) != 1:
        names = ", ".join(o.name for o in g.output)
        raise DeployKitError(f"{path}: has {len(g.output)} outputs ({names}); expected one [N, classes] output")
    inp, outp = fed[0], g.output[0]
    in_dims, out_dims = _dims(inp), _dims(outp)
    for vi, what in ((inp, "input"), (outp, "output")):
        if _dtype(vi) != "float32":
            raise DeployKitError(f"{path}: {what} '{vi.name}' is {_dtype(vi)}; deploykit imports float32 models")
    if len(in_dims) != 4 or not isinstance(in_dims[1], int) or in_dims[1] not in (1, 3):
        raise DeployKitError(
            f"{path}: input '{inp.name}' has shape {_show(in_dims)}; expected [N, C, H, W] with C = 1 or 3"
        )
    if len(out_dims) != 2 or not isinstance(out_dims[1], int) or out_dims[1] < 1:
        raise DeployKitError(f"{path}: output '{outp.name}' has shape {_show(out_dims)}; expected [N, classes]")
    channels, classes = in_dims[1], out_dims[1]
    size = _image_size(path, inp.name, in_dims, overrides.get("image_size"))
    if not isinstance(in_dims[2], int) or not isinstance(in_dims[3], int):
        _fix_dims(inp, {2: size[0], 3: size[1]})
        changes.append(f"input '{inp.name}' height and width fixed to {size[0]}x{size[1]} (--input-size)")
    batch = _batch(path, inp, outp, in_dims[0], out_dims[0], changes)
    cfg, notes = _data_config(path, channels, size, classes, overrides, name, family)
    shape_in = [batch_dim(in_dims[0], batch), channels, size[0], size[1]]
    shape_out = [batch_dim(out_dims[0], batch), classes]
    return _Interface(
        TensorSpec(inp.name, "float32", shape_in), TensorSpec(outp.name, "float32", shape_out), batch, cfg, notes
    )


def batch_dim(dim: int | str | None, batch: BatchProfile) -> int | str:
    if batch.dynamic:
        return dim if isinstance(dim, str) else "batch"
    return batch.max


def _show(dims: list[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]" if dims else "unknown"


def _image_size(path: Path, name: str, dims: list, override: Any) -> tuple[int, int]:
    h, w = dims[2], dims[3]
    if override is not None:
        oh, ow = (int(v) for v in override)
        if (isinstance(h, int) and h != oh) or (isinstance(w, int) and w != ow):
            raise DeployKitError(f"{path}: input '{name}' is {h}x{w} in the model but --input-size says {oh}x{ow}")
        return oh, ow
    if not isinstance(h, int) or not isinstance(w, int):
        raise DeployKitError(
            f"{path}: input '{name}' has a symbolic height/width ({_show(dims)}); pass --input-size H,W"
        )
    return h, w


def _fix_dims(vi: onnx.ValueInfoProto, values: dict[int, int]) -> None:
    for i, v in values.items():
        d = vi.type.tensor_type.shape.dim[i]
        d.Clear()
        d.dim_value = v


def _batch(
    path: Path, inp: onnx.ValueInfoProto, outp: onnx.ValueInfoProto, n_in: Any, n_out: Any, changes: list[str]
) -> BatchProfile:
    """A fixed batch stays fixed; a symbolic one becomes the profile 1..32 export promises."""
    if isinstance(n_in, int) and n_in > 0:
        if isinstance(n_out, int) and n_out != n_in:
            raise DeployKitError(
                f"{path}: input batch {n_in} but output batch {n_out}; expected [N, classes] for N images"
            )
        return BatchProfile(min=n_in, opt=n_in, max=n_in, dynamic=False)
    for vi in (inp, outp):
        d = vi.type.tensor_type.shape.dim[0]
        if not d.dim_param:
            d.Clear()
            d.dim_param = "batch"
            changes.append(f"unnamed batch dim of '{vi.name}' named 'batch'")
    return BatchProfile(min=1, opt=1, max=DEFAULT_MAX_BATCH, dynamic=True)


def _has_recipe(name: str, family: str) -> bool:
    from deploykit.quantize.recipes import FAMILY_RECIPES

    return any(k.lower() in FAMILY_RECIPES for k in (name, name.rstrip("0123456789_x"), family))


def _data_config(
    path: Path,
    channels: int,
    size: tuple[int, int],
    classes: int,
    overrides: dict[str, Any],
    name: str,
    family: str,
) -> tuple[DataConfig, list[str]]:
    notes: list[str] = []
    fields: dict[str, Any] = {"input_size": (channels, *size), "num_classes": classes}
    if not _has_recipe(name, family):
        notes.append(
            f"family '{family}' has no INT8 recipe: deploykit quantize will use the default recipe "
            "(--family resnet, densenet, googlenet or inception picks one)"
        )
    for key in ("mean", "std"):
        if overrides.get(key) is not None:
            vals = tuple(float(v) for v in overrides[key])
            if channels == 1 and len(set(vals)) == 1:
                vals = vals[:1]
            fields[key] = vals
    missing = [k for k in ("mean", "std") if k not in fields]
    if missing and channels == 1:
        raise DeployKitError(f"{path}: a 1-channel model needs --mean and --std (no default normalisation fits it)")
    if missing:
        notes.append(f"no {' or '.join('--' + k for k in missing)} given: ImageNet's normalisation is assumed")
    for key in ("labels", "interpolation", "crop_pct"):
        if overrides.get(key) is not None:
            fields[key] = overrides[key]
    if "labels" in fields and len(fields["labels"]) != classes:
        raise DeployKitError(f"{path}: {len(fields['labels'])} labels given for the model's {classes} classes")
    try:
        return DataConfig(**fields), notes
    except DeployKitError as e:
        raise DeployKitError(f"{path}: {e}") from None


def _stamp(model: onnx.ModelProto, name: str, cfg: DataConfig) -> None:
    """The same metadata ``export`` writes, so a bare model file still says how to feed it."""
    import deploykit

    meta = {
        "deploykit.model": name,
        "deploykit.data_config": json.dumps(cfg.to_dict(), sort_keys=True),
        "deploykit.version": deploykit.__version__,
        "deploykit.precision": "fp32",
    }
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))


def _parity(src: Path, stored: Path, cfg: DataConfig, batch: BatchProfile, seed: int):
    """Fixed-seed inputs through the source file and the stored model (both ONNX Runtime, CPU)."""
    from deploykit.parity import check_gate, compare_outputs, parity_inputs

    step = batch.max if not batch.dynamic else PARITY_SAMPLES
    n = step * math.ceil(PARITY_SAMPLES / step)
    x = parity_inputs(cfg, n, seed=seed)
    ref_sess = ort_session(src, where=f"{src} (source)")
    new_sess = ort_session(stored, where=f"{src} (as imported)")

    def run(sess: Any) -> np.ndarray:
        name = next(i.name for i in sess.get_inputs())
        return np.concatenate([sess.run(None, {name: x[i : i + step]})[0] for i in range(0, n, step)])

    try:
        ref, out = run(ref_sess), run(new_sess)
    except Exception as e:  # noqa: BLE001 - ORT's own error types
        raise DeployKitError(
            f"{src}: ONNX Runtime cannot run it on {cfg.input_size} images ({first_line(e)})"
        ) from None
    result = compare_outputs(ref.astype(np.float32), out.astype(np.float32))
    fails = check_gate(result, "fp32")
    if fails:
        raise GateError(f"{src}: the imported model does not match the source file: {'; '.join(fails)}")
    return result


__all__ = ["IMPORTED_FAMILY", "SourceInfo", "default_out_dir", "import_onnx"]
