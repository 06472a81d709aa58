"""The one ONNX / ONNX Runtime layer: load and check a file, save it (external data past 2 GB),
and make a session, with one set of options, for every stage.

``onnx`` is imported only by the functions that read or write models, so the torch-free runtime
can make sessions through this module with nothing but onnxruntime installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import DeployKitError, MissingExtraError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# ORT graph optimisation levels by deploykit's names.
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
CPU = ("CPUExecutionProvider",)
# protobuf cannot serialise a message over 2 GiB: past this, weights go to an external file.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**24
EXTERNAL_DATA_SUFFIX = ".data"


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's text (ORT and onnx errors run to many lines)."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


# -- sessions ----------------------------------------------------------------------------------
class MissingOnnxRuntimeError(MissingExtraError):
    """Neither onnxruntime nor onnxruntime-gpu is installed: name both extras, in one line."""

    def __init__(self, purpose: str) -> None:
        DeployKitError.__init__(
            self,
            f"{purpose} needs ONNX Runtime, which is not installed; install it with: pip install 'deploykit[cpu]' "
            "(or 'deploykit[gpu]' for onnxruntime-gpu on an NVIDIA GPU, never both)",
        )
        self.package, self.extra = "onnxruntime", "cpu"


def import_onnxruntime(purpose: str = "Running an ONNX model") -> Any:
    """``onnxruntime`` (from the onnxruntime or the onnxruntime-gpu wheel), or a one-line error naming the extras."""
    try:
        import onnxruntime
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "onnxruntime":
            raise
        raise MissingOnnxRuntimeError(purpose) from None
    return onnxruntime


@dataclass(frozen=True)
class SessionSettings:
    """What shapes an ONNX Runtime session's speed: its threads, their spinning, graph optimisation."""

    threads: int | None = None  # intra-op threads; None: ORT's default, one per physical core
    inter_op_threads: int | None = None  # None: ORT's default (sequential execution uses none)
    spin: bool = True  # idle worker threads spin between calls (ORT's default)
    optimization: str = "all"

    def ort_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`ort_session` / :func:`session_options`."""
        return {
            "threads": self.threads,
            "inter_op_threads": self.inter_op_threads,
            "spin": self.spin,
            "optimization": self.optimization,
        }

    def to_dict(self) -> dict[str, Any]:
        """For the record beside every figure timed with these settings."""
        return {
            "intra_op_threads": self.threads if self.threads is not None else "default (one per physical core)",
            "inter_op_threads": self.inter_op_threads if self.inter_op_threads is not None else "default",
            "spinning": self.spin,
            "execution_mode": "sequential",
            "graph_optimization": self.optimization,
        }


def deployment_settings(threads: int | None = None) -> SessionSettings:
    """The session settings a deployment runs with, and so the ones every speed figure is timed with.

    The one source for :class:`deploykit.runtime.Predictor` (and through it ``deploykit serve``'s
    Triton stub, which passes its per-instance ``threads``) and for every timer (``quantize``'s
    speed check, ``bench``, ``benchmarks/``): ORT's defaults, thread spinning on. Spinning is what
    a deployed session does, and it changes comparisons: issue #23 timed the demo's ResNet-18 at
    24x24 (Zen 4, 2 cores) with FP32 at 0.673 ms without spinning and 0.383 ms with it, while INT8
    moved only from 0.447 to 0.397 ms, so the check without spinning reported a 1.67x INT8 gain a
    deployment never saw. Timers keep one session alive at a time, so no idle session spins on
    the cores of the one being timed.
    """
    return SessionSettings(threads=threads)


def session_options(
    threads: int | None = None,
    inter_op_threads: int | None = None,
    optimization: str = "all",
    spin: bool = True,
    optimized_model_path: str | os.PathLike | None = None,
    profile_prefix: str | None = None,
) -> Any:
    """ORT SessionOptions from deploykit's vocabulary; errors only on the console."""
    ort = import_onnxruntime()

    if optimization not in OPT_LEVELS:
        raise DeployKitError(f"graph optimisation level '{optimization}' is not one of {', '.join(OPT_LEVELS)}")
    if threads is not None and threads < 1:
        raise DeployKitError(f"threads must be at least 1, got {threads}")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[optimization])
    if threads is not None:
        so.intra_op_num_threads = threads
    if inter_op_threads is not None:
        so.inter_op_num_threads = inter_op_threads
    if not spin:
        # Idle worker threads spin between calls; with several sessions alive (an interleaved
        # benchmark, a server) the idle ones would steal the cores from the one that is working.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def ort_session(
    model: str | os.PathLike | bytes | onnx.ModelProto,
    *,
    providers: Sequence[str] = CPU,
    provider_options: Sequence[dict] | None = None,
    threads: int | None = None,
    inter_op_threads: int | None = None,
    optimization: str = "all",
    spin: bool = True,
    optimized_model_path: str | os.PathLike | None = None,
    profile_prefix: str | None = None,
    where: str | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` over a path, serialized bytes or a ModelProto.

    Every stage makes its sessions here; a model ORT refuses is a one-line DeployKitError naming
    ``where`` (the file, or the label given).
    """
    ort = import_onnxruntime()

    so = session_options(threads, inter_op_threads, optimization, spin, optimized_model_path, profile_prefix)
    if isinstance(model, (str, os.PathLike)):
        src: Any = str(model)
        label = where or str(model)
        if not Path(model).is_file():
            raise DeployKitError(f"{label}: ONNX file not found")
    elif isinstance(model, (bytes, bytearray)):
        src, label = bytes(model), where or "in-memory model"
    elif hasattr(model, "SerializeToString"):
        src, label = model.SerializeToString(), where or (model.graph.name or "in-memory model")
    else:
        raise DeployKitError(f"an ONNX Runtime session needs a path, bytes or ModelProto, got {type(model).__name__}")
    try:
        return ort.InferenceSession(
            src,
            sess_options=so,
            providers=list(providers),
            provider_options=list(provider_options) if provider_options else None,
        )
    except Exception as e:  # ORT raises its own pybind exception types for bad files
        if _fp16_qdq_fusion_refused(e) and optimization in ("extended", "all"):
            # ORT's Q/DQ fusions (QLinearConcat, QLinearConv, ...) take float32 scales only and reject
            # the fused graph of a Q/DQ model with float16 scales (the TensorRT `best` artifact, FP16
            # outside the pairs); unfused, at the basic level, ORT runs it correctly.
            return ort_session(
                model,
                providers=providers,
                provider_options=provider_options,
                threads=threads,
                inter_op_threads=inter_op_threads,
                optimization="basic",
                spin=spin,
                optimized_model_path=optimized_model_path,
                profile_prefix=profile_prefix,
                where=where,
            )
        raise DeployKitError(f"{label}: ONNX Runtime cannot load it ({first_line(e)})") from None


def _fp16_qdq_fusion_refused(e: BaseException) -> bool:
    text = str(e)
    return "tensor(float16)" in text and "QLinear" in text


# -- GPU execution providers, configured as a deployment configures them ------------------------
def gpu_provider_options(
    providers: Sequence[str],
    *,
    device_id: int = 0,
    trt_cache_dir: str | os.PathLike | None = None,
    trt_profile: dict[str, tuple[Sequence[int], Sequence[int], Sequence[int]]] | None = None,
) -> list[dict[str, Any]]:
    """Options for each provider in ``providers`` (same order), for ``ort_session(provider_options=...)``.

    Every GPU provider gets ``device_id``. The TensorRT EP keeps its engines and its timing cache in
    ``trt_cache_dir`` (else it rebuilds every session), and builds one profile over the artifact's
    batch range, ``trt_profile`` = input name -> (min, opt, max) shapes (else it rebuilds for each
    new batch size). It never gets ``trt_fp16_enable``/``trt_int8_enable``: precision is the
    artifact's (an FP16 or Q/DQ ONNX), not a flag that would let TensorRT pick lower precision.
    """
    if device_id < 0:
        raise DeployKitError(f"device_id must be 0 or more, got {device_id}")
    out: list[dict[str, Any]] = []
    for p in providers:
        if p == "CUDAExecutionProvider":
            out.append({"device_id": device_id})
        elif p == "TensorrtExecutionProvider":
            opts: dict[str, Any] = {"device_id": device_id}
            if trt_cache_dir is not None:
                cache = str(Path(trt_cache_dir))
                opts |= {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": cache,
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": cache,
                }
            if trt_profile:
                for key, i in (
                    ("trt_profile_min_shapes", 0),
                    ("trt_profile_opt_shapes", 1),
                    ("trt_profile_max_shapes", 2),
                ):
                    opts[key] = ",".join(
                        f"{name}:{'x'.join(str(int(d)) for d in shapes[i])}" for name, shapes in trt_profile.items()
                    )
            out.append(opts)
        else:
            out.append({})
    return out


# -- files -------------------------------------------------------------------------------------
def _looks_like_onnx(data: bytes) -> bool:
    # A ModelProto starts with field 1 (ir_version, varint) or field 8 (opset_import) in practice.
    return data[:1] in (b"\x08", b"\x42", b"\x12", b"\x1a", b"\x3a")


def _all_tensors(model: onnx.ModelProto):
    from onnx.external_data_helper import _get_all_tensors

    return _get_all_tensors(model)


def _has_external(tensor: onnx.TensorProto) -> bool:
    import onnx

    return tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL


def check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """External data must live inside the model's own directory (no absolute paths, no '..')."""
    base = path.parent.resolve()
    for tensor in _all_tensors(model):
        if not _has_external(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if not location:
            raise DeployKitError(f"{path}: tensor '{tensor.name}' has external data with no location")
        if os.path.isabs(location) or not (base / location).resolve().is_relative_to(base):
            raise DeployKitError(
                f"{path}: tensor '{tensor.name}' points to external data '{location}' outside its directory"
            )
        if not (base / location).is_file():
            raise DeployKitError(f"{path}: external data file '{location}' for tensor '{tensor.name}' is missing")


# Op domains deploykit's stages read and write; anything else is a custom op nobody here can run.
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def check_domains(model: onnx.ModelProto, path: Path, custom_ops: bool = False) -> None:
    """Every node's op domain must be one the model imports and, unless ``custom_ops``, a standard one."""
    imported = {o.domain for o in model.opset_import}
    functions = {(f.domain, f.name) for f in model.functions}
    for node in model.graph.node:
        if (node.domain, node.op_type) in functions:
            continue
        if node.domain not in KNOWN_DOMAINS and not custom_ops:
            raise DeployKitError(
                f"{path}: node '{node.name or node.op_type}' uses op {node.op_type} from unknown domain "
                f"'{node.domain}' (custom ops are not supported)"
            )
        if node.domain not in imported and not (node.domain == "ai.onnx" and "" in imported):
            raise DeployKitError(
                f"{path}: node '{node.name or node.op_type}' uses domain '{node.domain or 'ai.onnx'}' "
                "that the model does not import"
            )


def load_onnx(path: str | os.PathLike, check: bool = True, custom_ops: bool = False) -> onnx.ModelProto:
    """Read an ONNX file (and its external data) or raise a one-line error saying what is wrong.

    Ops from unknown domains are refused unless ``custom_ops`` (a caller that only rewrites the
    graph and never runs it, such as ``optimize --no-verify``).
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.exists():
        raise DeployKitError(f"{p}: file not found")
    if not p.is_file():
        raise DeployKitError(f"{p}: not a file")
    data = p.read_bytes()
    if not data:
        raise DeployKitError(f"{p}: empty file, not an ONNX model")
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        kind = "truncated or corrupt ONNX protobuf" if _looks_like_onnx(data) else "not an ONNX file"
        raise DeployKitError(f"{p}: {kind} ({type(e).__name__})") from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise DeployKitError(f"{p}: not an ONNX file (no IR version or graph)")
    check_domains(model, p, custom_ops)
    check_external_data(model, p)
    if any(_has_external(t) for t in _all_tensors(model)):
        try:
            onnx.load_external_data_for_model(model, str(p.parent))
        except (OSError, ValueError) as e:
            raise DeployKitError(f"{p}: cannot read its external data ({e})") from None
    if check:
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as e:
            raise DeployKitError(f"{p}: invalid ONNX model ({first_line(e)})") from None
        except UnicodeDecodeError:
            raise DeployKitError(f"{p}: invalid ONNX model (a name or attribute is not valid UTF-8)") from None
    return model


def check_declared_inputs(path: str | os.PathLike, specs: Sequence[Any], where: str | None = None) -> None:
    """The graph inputs an ONNX file declares must be the ones its manifest promises.

    ``specs`` are the manifest's TensorSpecs (name, dtype, shape); a symbolic dim on either side
    matches anything, a fixed one must be equal. Reads the graph only, never external data.
    """
    import numpy as np

    try:
        import onnx
    except ImportError:  # the torch-free runtime may run with onnxruntime alone
        return
    label = where or str(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # ORT names the precise problem when it loads the file
        return
    if not model.HasField("graph"):
        raise DeployKitError(f"{label}: not an ONNX model (no graph)")
    init = {i.name for i in model.graph.initializer}
    declared = {i.name: i for i in model.graph.input if i.name not in init}
    for spec in specs:
        vi = declared.get(spec.name)
        if vi is None:
            raise DeployKitError(
                f"{label}: the manifest's input '{spec.name}' is not an input of the model "
                f"(it declares {', '.join(declared) or 'none'})"
            )
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        clash = len(dims) != len(spec.shape) or any(
            isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(dims, spec.shape)
        )
        if clash:
            raise DeployKitError(
                f"{label}: input '{spec.name}' is declared {dims} in the model but {list(spec.shape)} in the manifest"
            )
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        except (KeyError, TypeError, ValueError):
            dtype = f"onnx type {tt.elem_type}"
        if dtype != str(spec.dtype):
            raise DeployKitError(
                f"{label}: input '{spec.name}' is {dtype} in the model but {spec.dtype} in the manifest"
            )


def weights_bytes(model: onnx.ModelProto) -> int:
    """Bytes held in initializers (what decides whether the model needs external data)."""
    return sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike, threshold: int | None = None) -> str | None:
    """Write a model atomically; weights go to ``<name>.data`` beside it past the 2 GB protobuf limit.

    The model (and its data file) are written into a temporary sibling directory and renamed into
    place, so a crash leaves the previous file untouched. Returns the external data file's name,
    or None when everything fits in one file.
    """
    import onnx

    path = Path(path)
    limit = EXTERNAL_DATA_THRESHOLD if threshold is None else threshold
    data_name = path.name + EXTERNAL_DATA_SUFFIX
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        external = weights_bytes(model) >= limit
        if external:
            onnx.save_model(
                model,
                str(tmp / path.name),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
            os.replace(tmp / data_name, path.parent / data_name)
        else:
            try:
                onnx.save_model(model, str(tmp / path.name))
            except ValueError as e:  # protobuf's own 2 GB refusal
                raise DeployKitError(f"{path}: model exceeds the 2 GB protobuf limit ({first_line(e)})") from None
            (path.parent / data_name).unlink(missing_ok=True)  # a stale data file from an earlier save
        os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return data_name if external else None


__all__ = [
    "CPU",
    "EXTERNAL_DATA_SUFFIX",
    "EXTERNAL_DATA_THRESHOLD",
    "KNOWN_DOMAINS",
    "OPT_LEVELS",
    "SessionSettings",
    "check_declared_inputs",
    "check_domains",
    "check_external_data",
    "deployment_settings",
    "first_line",
    "gpu_provider_options",
    "import_onnxruntime",
    "load_onnx",
    "ort_session",
    "save_onnx",
    "session_options",
    "weights_bytes",
]
