"""Predictor: an artifact's own preprocessing, batching and top-k, for applications and servers.

Imports stay torch-free on purpose: the manifest, data config and transforms modules import only
numpy and Pillow, and sessions come from :func:`deploykit.onnx_io.ort_session` (which imports
``onnx`` only for the functions that read model files) or, for OpenVINO, from
:func:`deploykit.openvino_io.ov_compile`.

``backend="auto"`` reads the artifact's ``results["runtime_choice"]`` record (written where the
runtimes were timed against each other on the artifact): its ``best`` backend when the record was
measured on this machine (same :func:`~deploykit.machine.machine_slug`) and that backend is
installed here, else ONNX Runtime. :attr:`Predictor.backend_reason` says which and why.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.artifact import Artifact, BatchProfile
from deploykit.data.config import DataConfig
from deploykit.data.transforms import ImageLike, preprocess_batch
from deploykit.errors import DeployKitError

if TYPE_CHECKING:
    from deploykit.backends.tensorrt.guard import RunningEnv

BACKENDS = ("onnxruntime", "openvino", "openvino-bf16", "tensorrt")
AUTO = "auto"
# OpenVINO backends -> the inference precision they ask for (explicit: never OpenVINO's default)
OV_PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}
# The backends that run each artifact format.
RUNS = {"onnx": ("onnxruntime", "openvino", "openvino-bf16"), "tensorrt-engine": ("tensorrt",)}
# The backend that runs each artifact format when none is named.
DEFAULT_BACKEND = {"onnx": "onnxruntime", "tensorrt-engine": "tensorrt"}
NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, most probable first."""

    labels: tuple[str, ...]
    indices: tuple[int, ...]
    probabilities: tuple[float, ...]
    source: str | None = None  # the file the image came from, when it was a path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by ``deploykit predict --json``)."""
        return {
            "source": self.source,
            "top": [
                {"label": lab, "index": i, "probability": p}
                for lab, i, p in zip(self.labels, self.indices, self.probabilities)
            ],
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Predictor:
    """Run one artifact on images or preprocessed arrays; safe to share between threads.

    All state is fixed at construction, except OpenVINO's per-batch static compiles, which are
    added (at most four kept) under the lock. ONNX Runtime's ``InferenceSession.run`` is
    thread-safe; the TensorRT runner and OpenVINO infer requests serve one call at a time, so their
    calls are serialised by a lock.
    """

    def __init__(
        self,
        artifact: Artifact,
        backend: str | None = None,
        threads: int | None = None,
        spin: bool = True,
        running: RunningEnv | None = None,
        device: str | None = None,
        expected_batch: int | None = None,
    ) -> None:
        m = artifact.manifest
        self.artifact = artifact
        self.name = m.model
        self.data_config: DataConfig = m.data_config
        self.batch: BatchProfile = m.batch
        if len(m.inputs) != 1 or not m.outputs:
            raise DeployKitError(
                f"{artifact.manifest_path}: the runtime needs one image input and a logits output "
                f"(manifest lists {len(m.inputs)} input(s), {len(m.outputs)} output(s))"
            )
        self.input_name = m.inputs[0].name
        self.output_name = m.outputs[0].name
        if m.inputs[0].dtype not in NUMPY_DTYPES:
            raise DeployKitError(f"{artifact.manifest_path}: input dtype '{m.inputs[0].dtype}' is not supported")
        self.input_dtype = np.dtype(NUMPY_DTYPES[m.inputs[0].dtype])
        self.input_shape = tuple(self.data_config.input_size)  # C, H, W
        #: the backend that runs the artifact, and why it was chosen (``backend="auto"`` picks one)
        if expected_batch is not None and (not isinstance(expected_batch, int) or expected_batch < 1):
            raise DeployKitError(f"expected_batch must be a positive integer, got {expected_batch!r}")
        self.backend, self.backend_reason = choose_backend(artifact, backend, batch=expected_batch)
        if device is not None and self.backend != "tensorrt" and device.strip().lower() != "cpu":
            raise DeployKitError(
                f"{artifact.path}: device '{device}' is for engine artifacts; {self.backend} runs on the CPU"
            )
        #: what the backend was configured with (OpenVINO: read back from the compiled model)
        self.runtime_config: dict[str, Any] = {"backend": self.backend}
        self._lock: threading.Lock | None = None
        self._ov_cache: Any = None
        if self.backend == "onnxruntime":
            from deploykit.onnx_io import deployment_settings, ort_session

            settings = {**deployment_settings(threads).ort_kwargs(), "spin": spin}  # what every timer times
            self._session = ort_session(artifact.main_path, **settings, where=str(artifact.main_path))
            self._runner = None
            self.runtime_config.update(threads=threads, spinning=spin, precision="as stored")
        elif self.backend in OV_PRECISION:
            from deploykit.openvino_io import compiled_by_batch

            # a static compile per batch size run (2x faster than a dynamic-batch compile on an INT8
            # DenseNet-121; see ov_compile), LATENCY hint: the Predictor runs one batch at a time.
            # A fixed-batch artifact compiles once; a dynamic one compiles its opt batch now (so a
            # model OpenVINO refuses fails here) and any other size on its first call.
            self._session = self._runner = None
            path = artifact.main_path
            self._ov_cache = compiled_by_batch(
                path, precision=OV_PRECISION[self.backend], threads=threads, where=str(path)
            )
            self._ov_cache.get(m.batch.max if not m.batch.dynamic else m.batch.opt)
            self._lock = threading.Lock()  # one infer request per compile: calls are serialised
            self._ov_record()
        else:
            from deploykit.backends.tensorrt.runner import engine_artifact_runner

            # the guard refuses an engine built for another TensorRT or GPU before loading it; no torch
            self._session = None
            runner = engine_artifact_runner(artifact, device=device or "cuda", running=running)
            runner.batch_profile, runner.data_config = m.batch, m.data_config
            self._runner = runner.activate()
            self._lock = threading.Lock()

    @classmethod
    def from_artifact(
        cls,
        path: str | os.PathLike,
        backend: str | None = None,
        threads: int | None = None,
        spin: bool = True,
        running: RunningEnv | None = None,
        device: str | None = None,
        expected_batch: int | None = None,
    ) -> Predictor:
        """Load an artifact directory, verifying every file's hash against its manifest first.

        ``running`` (a :class:`~deploykit.backends.tensorrt.guard.RunningEnv`) stands in for this
        machine's TensorRT and GPU when an engine artifact is checked before loading. ``device``:
        the GPU an engine runs on (``cuda:N``; default the first); ONNX backends run on the CPU.
        ``expected_batch``: the batch size calls will mostly carry; ``backend="auto"`` picks the
        runtime measured fastest nearest that batch (default: at batch 1).
        """
        art = Artifact.load(path, verify=True)
        return cls(
            art,
            backend=backend,
            threads=threads,
            spin=spin,
            running=running,
            device=device,
            expected_batch=expected_batch,
        )

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names from the manifest, or the class indices as strings when it has none."""
        cfg = self.data_config
        return cfg.labels if cfg.labels is not None else tuple(str(i) for i in range(cfg.num_classes))

    # -- arrays ------------------------------------------------------------------------------
    def check_batch(self, x: Any, where: str = "input") -> np.ndarray:
        """A preprocessed N,C,H,W array of the artifact's dtype, or a one-line error saying why not."""
        if not isinstance(x, np.ndarray):
            raise DeployKitError(f"{where}: expected a numpy array, got {type(x).__name__}")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise DeployKitError(
                f"{where}: array shape {tuple(x.shape)} is not N x {' x '.join(map(str, self.input_shape))}"
            )
        if x.dtype != self.input_dtype:
            if x.dtype.kind != "f":
                raise DeployKitError(
                    f"{where}: array dtype {x.dtype} is not {self.input_dtype} (a preprocessed float array)"
                )
            x = x.astype(self.input_dtype)
        if x.shape[0] == 0:
            raise DeployKitError(f"{where}: empty batch")
        return np.ascontiguousarray(x)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch that fits the artifact's profile (float32 N x classes)."""
        x = self.check_batch(x)
        self.batch.check(x.shape[0], where=str(self.artifact.path))
        if self._session is None and self._runner is None and self._ov_cache is None:
            raise DeployKitError(f"{self.artifact.path}: predictor is closed")
        if self._session is not None:
            out = self._session.run([self.output_name], {self.input_name: x})[0]
        elif self._ov_cache is not None:
            with self._lock:  # type: ignore[union-attr]
                known = x.shape[0] in self._ov_cache.shapes
                compiled, request = self._ov_cache.get(x.shape[0])
                out = np.array(request.infer({self.input_name: x})[compiled.output(self.output_name)])
                if not known:
                    self._ov_record()
        else:
            with self._lock:  # type: ignore[union-attr]
                out = self._runner.infer({self.input_name: x})[self.output_name]  # type: ignore[union-attr]
        return np.asarray(out, dtype=np.float32)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits for any number of preprocessed images, split and padded to the batch profile."""
        x = self.check_batch(x)
        step = self.batch.max
        outs = []
        for start in range(0, x.shape[0], step):
            chunk = x[start : start + step]
            n = chunk.shape[0]
            if not self.batch.dynamic and n < step:  # a fixed-batch artifact: pad the last chunk
                pad = np.zeros((step - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            elif self.batch.dynamic and n < self.batch.min:
                pad = np.zeros((self.batch.min - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            outs.append(self.infer(chunk)[:n])
        return np.concatenate(outs)

    # -- images ------------------------------------------------------------------------------
    def preprocess(self, images: Iterable[ImageLike]) -> np.ndarray:
        """Images (paths, PIL images, bytes, uint8 arrays) → the artifact's input batch."""
        return preprocess_batch(list(images), self.data_config).astype(self.input_dtype, copy=False)

    def predict(self, images: ImageLike | Sequence[ImageLike] | np.ndarray, topk: int = 5) -> list[Prediction]:
        """Top-k labels, indices and probabilities per image.

        ``images``: one image or a list of them (paths, PIL images, bytes, uint8 H x W (x C)
        arrays), or an already-preprocessed float N x C x H x W array.
        """
        if topk < 1:
            raise DeployKitError(f"topk must be at least 1, got {topk}")
        items = _as_list(images)
        if isinstance(items, np.ndarray):
            x, sources = items, [None] * items.shape[0]
        else:
            sources = [str(im) if isinstance(im, (str, os.PathLike)) else None for im in items]
            if not items:
                return []
            x = self.preprocess(items)
        return self.top(self.logits(x), topk, sources)

    def top(self, logits: np.ndarray, topk: int = 5, sources: Sequence[str | None] | None = None) -> list[Prediction]:
        """Turn logits into top-k Predictions (probabilities by softmax)."""
        probs = softmax(logits)
        k = min(topk, probs.shape[1])
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        names = self.labels
        sources = sources or [None] * probs.shape[0]
        return [
            Prediction(
                labels=tuple(names[i] for i in row),
                indices=tuple(int(i) for i in row),
                probabilities=tuple(float(probs[n, i]) for i in row),
                source=src,
            )
            for n, (row, src) in enumerate(zip(order, sources))
        ]

    def close(self) -> None:
        """Release the backend (the TensorRT context; ORT sessions are freed with the object)."""
        if self._runner is not None:
            self._runner.deactivate()
        self._session = self._runner = self._ov_cache = None

    def _ov_record(self) -> None:
        """runtime_config: the latest compile's settings read back, and every static shape compiled."""
        cache = self._ov_cache
        self.runtime_config.update(cache.config)
        self.runtime_config["static_batch"] = True
        self.runtime_config["compiled_input_shapes"] = {str(b): s for b, s in cache.shapes.items()}

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def choose_backend(artifact: Artifact, backend: str | None = None, batch: int | None = None) -> tuple[str, str]:
    """(backend, why): the named backend checked against the artifact's format, or ``auto``'s pick.

    ``batch``: the batch size the deployment runs at; ``auto`` then takes the record's choice at the
    measured batch nearest to it (a DenseNet-121 INT8 file on a Sapphire Rapids: ONNX Runtime at
    batch 1, OpenVINO 2.8x faster at batch 32), else its batch-1 choice.
    """
    m = artifact.manifest
    default = DEFAULT_BACKEND[m.format]
    if backend is None:
        return default, f"the default for a {m.format} artifact"
    name = backend.strip().lower()
    if name == AUTO:
        if m.format != "onnx":
            return default, f"auto: a {m.format} artifact runs on {default} only"
        return _auto_backend(m.results.get("runtime_choice"), where=str(artifact.manifest_path), batch=batch)
    if name not in BACKENDS:
        raise DeployKitError(f"backend '{backend}' is not one of {', '.join(BACKENDS + (AUTO,))}")
    if name not in RUNS[m.format]:
        raise DeployKitError(
            f"{artifact.path}: a {m.format} artifact runs on {' or '.join(RUNS[m.format])}, not {name}"
        )
    if name in OV_PRECISION:
        _ov_usable(name, raise_error=True)
    return name, "named by the caller"


def _nearest_batch(measured: list[str], batch: int) -> str | None:
    """The measured batch (record keys) nearest to ``batch`` on a log scale; the smaller on a tie."""
    import math

    sizes = sorted(int(b) for b in measured if str(b).isdigit() and int(b) > 0)
    if not sizes:
        return None
    return str(min(sizes, key=lambda b: (abs(math.log(b) - math.log(batch)), b)))


def _auto_backend(record: Any, where: str, batch: int | None = None) -> tuple[str, str]:
    """The runtime a runtime_choice record measured fastest on this machine, installed here: at the
    measured batch nearest ``batch`` when given, else ``best`` (batch 1); else onnxruntime."""
    if not isinstance(record, dict) or not record.get("best"):
        return "onnxruntime", "auto: the artifact has no runtime_choice record; ONNX Runtime"
    from deploykit.machine import machine_slug

    here, there, best = machine_slug(), record.get("machine"), str(record["best"])
    by_batch = record.get("by_batch") or {}
    at = _nearest_batch(list(by_batch), batch) if batch is not None and by_batch else None
    if at is not None:
        best = str(by_batch[at])
    if there != here:
        return "onnxruntime", f"auto: runtime_choice was measured on {there}, not this machine ({here}); ONNX Runtime"
    if best not in RUNS["onnx"]:
        return "onnxruntime", f"auto: runtime_choice names '{best}', which the runtime does not run; ONNX Runtime"
    why_not = _ov_usable(best) if best in OV_PRECISION else None
    if why_not:
        return "onnxruntime", f"auto: runtime_choice picks {best} but {why_not}; ONNX Runtime"
    order = sorted(by_batch, key=lambda b: (len(str(b)), str(b)))  # "1", "8", "32": numeric order
    detail = ", ".join(f"batch {b}: {by_batch[b]}" for b in order)
    at_text = f" at batch {at} (nearest measured to {batch})" if at is not None else ""
    return best, f"auto: fastest{at_text} on this machine ({here}) in {where}'s runtime_choice" + (
        f" ({detail})" if detail else ""
    )


def _ov_usable(name: str, raise_error: bool = False) -> str | None:
    """Why an OpenVINO backend cannot run here (None when it can); with ``raise_error`` the one-line error."""
    import importlib.util

    from deploykit.openvino_io import check_precision, import_openvino

    try:
        if importlib.util.find_spec("openvino") is None:
            import_openvino(f"The {name} backend")  # raises MissingExtraError naming the extra
        check_precision(OV_PRECISION[name], where=f"backend {name}")
    except DeployKitError as e:
        if raise_error:
            raise
        return str(e)
    return None


def _as_list(images: Any) -> list[Any] | np.ndarray:
    if isinstance(images, np.ndarray):
        if images.dtype.kind == "f" and images.ndim == 4:
            return images  # already preprocessed
        if images.dtype == np.uint8 and images.ndim == 4:
            return list(images)  # a stack of uint8 images
        if images.dtype == np.uint8 and images.ndim in (2, 3):
            return [images]
        raise DeployKitError(
            f"array of shape {images.shape} and dtype {images.dtype}: expected a float N x C x H x W "
            "batch or uint8 image(s)"
        )
    if isinstance(images, (str, os.PathLike, bytes, bytearray)) or hasattr(images, "getpixel"):
        return [images]
    return list(images)


def image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named, with each folder expanded to the images in it (sorted, recursive)."""
    from PIL import Image

    exts = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            if not found:
                raise DeployKitError(f"{p}: folder holds no image files")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise DeployKitError(f"{p}: image file not found")
    return out
