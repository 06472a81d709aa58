"""PyTorch module -> checked ONNX file with a named NCHW input, symbolic batch and metadata.

Exporter choice: torch 2.13 defaults to the dynamo (torch.export) exporter, but for these
plain feed-forward CNNs the TorchScript exporter (``dynamo=False``) gives an equivalent graph
(BatchNorm after Conv folded by both; TorchScript leaves Identity nodes the optimiser removes
and writes GlobalAveragePool/Flatten where dynamo writes ReduceMean/Reshape) 3-34x faster:
resnet18 at 64x64 takes ~0.6 s vs ~3 s, densenet201 12 s vs 273 s on a loaded 2-core machine
(benchmarks/export/results-amd-epyc-zen4-avx512vnni-2cpu.md, all 14 models pass parity both ways). So "auto"
uses TorchScript and falls back to dynamo when the legacy exporter fails or is removed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from deploykit.artifact import BatchProfile, TensorSpec
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError
from deploykit.onnx_io import EXTERNAL_DATA_THRESHOLD, weights_bytes
from deploykit.onnx_io import save_onnx as _save_onnx

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"

# Opset 18 is the dynamo exporter's native opset (no version conversion), ONNX Runtime has
# run it since 1.14 and TensorRT's parser since 8.6, so TensorRT 10 takes it. The allowed
# range stops at 20, the TorchScript exporter's and TensorRT 10.0's maximum; 13 is the oldest
# opset with the Split/Squeeze-as-input forms the optimiser and TensorRT expect.
DEFAULT_OPSET = 18
MIN_OPSET = 13
MAX_OPSET = 20

EXPORTERS = ("auto", "torchscript", "dynamo")

# protobuf cannot serialise a message over 2 GiB: past this, weights go to an external file.

log = logging.getLogger(__name__)


@dataclass
class ExportInfo:
    """What was exported and how: fed into the manifest's export stage."""

    path: Path
    opset: int
    exporter: str
    seconds: float
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batch: BatchProfile
    external_data: str | None = None  # file name beside the model, when weights live outside
    notes: list[str] = field(default_factory=list)

    def params(self) -> dict[str, Any]:
        """Export parameters for the manifest's stage entry."""
        return {
            "opset": self.opset,
            "exporter": self.exporter,
            "dynamic_batch": self.batch.dynamic,
            "batch": None if self.batch.dynamic else self.batch.max,
            "external_data": self.external_data,
        }


def check_opset(opset: int | None) -> int:
    """The opset to use, refusing one outside the range both ONNX Runtime and TensorRT 10 accept."""
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise DeployKitError(f"opset {opset!r} is not an integer")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise DeployKitError(
            f"opset {opset} is out of range; supported opsets are {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})"
        )
    return opset


DEFAULT_MAX_BATCH = 32


def batch_profile(
    batch: int | None,
    dynamic_batch: bool,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    min_batch: int | None = None,
) -> BatchProfile:
    """The batch sizes an artifact promises: fixed, or a dynamic range [1, max] tuned for opt.

    The ONNX batch dim itself is unbounded; the range is what later stages build for (a TensorRT
    optimisation profile) and what benchmarks and runtimes accept.
    """
    for label, value in (
        ("batch", batch),
        ("opt batch", opt_batch),
        ("max batch", max_batch),
        ("min batch", min_batch),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DeployKitError(f"{label} {value!r} must be a positive integer")
    if batch is not None or not dynamic_batch:
        if opt_batch is not None or max_batch is not None or min_batch is not None:
            raise DeployKitError("min/opt/max batch apply to a dynamic batch; a fixed batch has one size")
        size = 1 if batch is None else batch
        return BatchProfile(min=size, opt=size, max=size, dynamic=False)
    top = DEFAULT_MAX_BATCH if max_batch is None else max_batch
    low = 1 if min_batch is None else min_batch
    opt = low if opt_batch is None else opt_batch
    if opt > top:
        raise DeployKitError(f"opt batch {opt} is larger than max batch {top}")
    if low > opt:
        raise DeployKitError(f"min batch {low} is larger than opt batch {opt}")
    return BatchProfile(min=low, opt=opt, max=top, dynamic=True)


def export_onnx(
    model: nn.Module,
    data_config: DataConfig,
    path: str | os.PathLike,
    opset: int | None = None,
    batch: int | None = None,
    dynamic_batch: bool = True,
    *,
    exporter: str = "auto",
    model_name: str | None = None,
    precision: str = "fp32",
    opt_batch: int | None = None,
    max_batch: int | None = None,
    min_batch: int | None = None,
) -> ExportInfo:
    """Export ``model`` to ``path`` as checked ONNX: input "input" (NCHW float32), output "logits".

    ``batch`` fixes the batch size; otherwise the batch dim is symbolic ("batch") when
    ``dynamic_batch`` (the default) and 1 when not. Weights go to ``<path>.data`` only when the
    model would pass protobuf's 2 GB limit.
    """
    opset = check_opset(opset)
    if exporter not in EXPORTERS:
        raise DeployKitError(f"exporter '{exporter}' is not one of {', '.join(EXPORTERS)}")
    profile = batch_profile(batch, dynamic_batch, opt_batch, max_batch, min_batch)
    path = Path(path)
    name = model_name or getattr(model, "model_name", None) or type(model).__name__
    c, h, w = data_config.input_size
    model.eval()

    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
    except OSError as e:
        raise DeployKitError(f"{path.parent}: cannot write the ONNX file there ({e.strerror})") from None
    try:
        raw = tmpdir / "raw.onnx"
        start = time.perf_counter()
        used = _run_exporter(model, (c, h, w), raw, opset, profile, exporter, name)
        seconds = time.perf_counter() - start
        proto = onnx.load(str(raw))  # pulls in external data the exporter may have written
        _check_io(proto, name)
        _set_metadata(proto, name, data_config, precision)
        external = save_onnx(proto, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    try:
        check_onnx(path, expected_classes=data_config.num_classes)
    except BaseException:
        path.unlink(missing_ok=True)  # a file that failed its check is never left behind
        if external:
            (path.parent / external).unlink(missing_ok=True)
        raise

    batch_dim: int | str = BATCH_DIM if profile.dynamic else profile.max
    return ExportInfo(
        path=path,
        opset=opset,
        exporter=used,
        seconds=seconds,
        inputs=[TensorSpec(INPUT_NAME, "float32", [batch_dim, c, h, w])],
        outputs=[TensorSpec(OUTPUT_NAME, "float32", [batch_dim, data_config.num_classes])],
        batch=profile,
        external_data=external,
    )


def _run_exporter(
    model: nn.Module, chw: tuple[int, int, int], out: Path, opset: int, profile: BatchProfile, exporter: str, name: str
) -> str:
    """Run the chosen exporter; "auto" falls back to dynamo. Returns the exporter that worked."""
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    dynamic = profile.dynamic
    errors: list[str] = []
    for which in order:
        # The example's batch: 1 for a dynamic TorchScript trace (its dynamic_axes never
        # specialise), 2 for dynamo, which would specialise a batch of 1 to a constant.
        n = profile.max if not dynamic else (1 if which == "torchscript" else 2)
        example = torch.zeros(n, *chw)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice etc.
                if which == "torchscript":
                    _export_torchscript(model, example, out, opset, dynamic)
                else:
                    _export_dynamo(model, example, out, opset, dynamic)
            return which
        except Exception as e:  # noqa: BLE001 - any exporter crash: try the next or report it
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            errors.append(f"{which}: {type(e).__name__}: {first}")
            log.info("ONNX export of %s with the %s exporter failed: %s", name, which, e)
            last = e
    raise DeployKitError(f"ONNX export of {name} failed ({'; '.join(errors)})") from last


def _export_torchscript(model: nn.Module, example: torch.Tensor, out: Path, opset: int, dynamic: bool) -> None:
    axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic else None
    torch.onnx.export(
        model,
        (example,),
        str(out),
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=axes,
        do_constant_folding=True,
    )


def _export_dynamo(model: nn.Module, example: torch.Tensor, out: Path, opset: int, dynamic: bool) -> None:
    shapes = ({0: torch.export.Dim(BATCH_DIM, min=1)},) if dynamic else None
    for noisy in ("torch.onnx", "torch.export", "torch._dynamo"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=shapes,
        optimize=True,
        verbose=False,
    )
    program.save(str(out), external_data=weights_bytes(program.model_proto) >= EXTERNAL_DATA_THRESHOLD)


def _check_io(proto: onnx.ModelProto, name: str) -> None:
    ins = [i.name for i in proto.graph.input]
    outs = [o.name for o in proto.graph.output]
    if ins != [INPUT_NAME] or outs != [OUTPUT_NAME]:
        raise DeployKitError(
            f"{name}: exported graph has inputs {ins} and outputs {outs}; expected one input "
            f"'{INPUT_NAME}' and one output '{OUTPUT_NAME}' (does forward() return a single tensor?)"
        )


def _set_metadata(proto: onnx.ModelProto, name: str, cfg: DataConfig, precision: str) -> None:
    import deploykit

    meta = {
        "deploykit.model": name,
        "deploykit.data_config": json.dumps(cfg.to_dict(), sort_keys=True),
        "deploykit.version": deploykit.__version__,
        "deploykit.precision": precision,
    }
    set_metadata(proto, meta)


def set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    """Set (replace) ``metadata_props`` entries on a model."""
    keep = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in meta.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=k, value=str(v)))


def get_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    """``metadata_props`` as a dict."""
    return {p.key: p.value for p in proto.metadata_props}


def save_onnx(proto: onnx.ModelProto, path: str | os.PathLike, threshold: int | None = None) -> str | None:
    """``onnx_io.save_onnx`` with this module's external-data threshold (tests lower it)."""
    return _save_onnx(proto, path, EXTERNAL_DATA_THRESHOLD if threshold is None else threshold)


def check_onnx(path: str | os.PathLike, expected_classes: int | None = None) -> None:
    """Full onnx.checker pass plus shape inference; the output must come out as [batch, classes]."""
    path = Path(path)
    try:
        # full_check adds strict shape inference, which also fails when an inferred shape
        # contradicts a declared one, so the declared output shape below is a proven one.
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DeployKitError(f"{path}: ONNX check failed ({first})") from None
    if expected_classes is None:
        return
    model = onnx.load(str(path), load_external_data=False)
    if not model.graph.output[0].type.tensor_type.HasField("shape"):
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    out = model.graph.output[0].type.tensor_type.shape.dim
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in out]
    if len(dims) != 2 or dims[1] != expected_classes:
        raise DeployKitError(f"{path}: output shape {dims} does not match the data config's {expected_classes} classes")


def export_module(model: nn.Module, data_config: DataConfig | None = None) -> onnx.ModelProto:
    """Export an nn.Module in memory (deploykit's exporter, dynamic batch) for ONNX Runtime to run."""
    cfg = data_config if data_config is not None else getattr(model, "data_config", None)
    if not isinstance(cfg, DataConfig):
        raise DeployKitError(
            f"{type(model).__name__} has no data_config; build it with deploykit.models.create_model "
            "or set model.data_config so its input size is known"
        )
    tmp = Path(tempfile.mkdtemp(prefix="deploykit-export-"))
    try:
        export_onnx(model, cfg, tmp / "model.onnx")
        return onnx.load(str(tmp / "model.onnx"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
