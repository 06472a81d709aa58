"""Run a serialized TensorRT engine (TensorRT 10 and 11) through the name-based tensor API.

No torch: CUDA comes from NVIDIA's ``cuda-bindings`` (:mod:`deploykit.backends.cuda`), as in
TensorRT's own Python samples, so ``pip install 'deploykit[tensorrt]'`` on an edge box runs an
engine artifact. The runner makes ``cuda:N`` current before it deserialises the engine and
creates the context, owns one stream, and keeps, per input shape, pinned host buffers and device
buffers bound by tensor name (``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``).
With ``cuda_graph=True`` it captures copies and enqueue once per shape and replays the graph.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.backends import cuda
from deploykit.backends.base import Runner, RunnerError, Shape, check_feed
from deploykit.backends.tensorrt import import_tensorrt
from deploykit.errors import DeployKitError

# trt.DataType member name -> numpy dtype, or None where numpy has no such type. Covers every
# member of TensorRT 10.13 and 11.4 (tests/backends/tensorrt_contract/test_runner.py checks both).
TRT_DTYPES: dict[str, np.dtype | None] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "BF16": None,
    "FP8": None,
    "INT4": None,
    "FP4": None,
    "E8M0": None,
}


def numpy_dtype(trt_dtype: Any, tensor: str, where: str) -> np.dtype:
    """The numpy dtype of an engine I/O tensor, or a one-line error for types numpy cannot hold."""
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rpartition(".")[2]
    if name not in TRT_DTYPES:
        raise DeployKitError(f"{where}: tensor '{tensor}' has TensorRT type {name}, which this deploykit does not know")
    dtype = TRT_DTYPES[name]
    if dtype is None:
        raise DeployKitError(
            f"{where}: tensor '{tensor}' is {name} at the engine's boundary, which numpy cannot hold; "
            "rebuild the engine with float32/float16 (or int8/int32/int64/bool/uint8) inputs and outputs"
        )
    return dtype


class _Bound:
    """Pinned host and device buffers (and an optional CUDA graph) for one set of input shapes."""

    def __init__(self) -> None:
        self.host: dict[str, cuda.PinnedBuffer] = {}
        self.device: dict[str, cuda.DeviceBuffer] = {}
        self.graph: cuda.Graph | None = None

    def free(self) -> None:
        if self.graph is not None:
            self.graph.destroy()
            self.graph = None
        for buf in (*self.host.values(), *self.device.values()):
            buf.free()
        self.host.clear()
        self.device.clear()


class TensorRTRunner(Runner):
    """Deserialize an engine on ``cuda:N``, bind buffers by tensor name and run ``execute_async_v3``."""

    backend = "tensorrt"

    def __init__(
        self,
        engine_path: str | os.PathLike,
        device: str = "cuda",
        name: str | None = None,
        cuda_graph: bool = False,
        host_code_allowed: bool = False,
    ) -> None:
        import_tensorrt()
        cuda.cudart("The TensorRT backend")
        path = Path(engine_path)
        if not path.is_file():
            raise DeployKitError(f"{path}: TensorRT engine file not found")
        if not str(device).strip().lower().startswith(("cuda", "gpu")):
            raise DeployKitError(f"TensorRT engines run on CUDA devices only, not '{device}'")
        self.device_index = cuda.device_index(device)
        super().__init__(f"tensorrt[{name or path.name}]", f"cuda:{self.device_index}")
        self.path = path
        self.cuda_graph = bool(cuda_graph)
        # Version-compatible engines embed a lean runtime (host code); only trusted plans may run it.
        self.host_code_allowed = bool(host_code_allowed)
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: cuda.Stream | None = None
        self._inputs: dict[str, tuple[np.dtype, Shape]] = {}
        self._outputs: dict[str, np.dtype] = {}
        self._profiles: dict[str, tuple] = {}
        self._bound: dict[tuple, _Bound] = {}
        self._current: tuple | None = None

    def _activate(self) -> None:
        trt = import_tensorrt()
        where = str(self.path)
        # The engine and its context belong to the device current when they are made.
        cuda.set_device(self.device_index)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self._runtime is None:
            raise DeployKitError(f"{where}: TensorRT {trt.__version__} could not create a runtime (see its log above)")
        if self.host_code_allowed:
            self._runtime.engine_host_code_allowed = True
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise DeployKitError(
                f"{where}: TensorRT {trt.__version__} could not deserialize this engine "
                "(built by another TensorRT version or for another GPU?)"
            )
        context = engine.create_execution_context()
        if context is None:
            raise DeployKitError(f"{where}: TensorRT could not create an execution context (out of GPU memory?)")
        inputs: dict[str, tuple[np.dtype, Shape]] = {}
        outputs: dict[str, np.dtype] = {}
        profiles: dict[str, tuple] = {}
        for i in range(engine.num_io_tensors):
            tname = engine.get_tensor_name(i)
            dtype = numpy_dtype(engine.get_tensor_dtype(tname), tname, where)
            if engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT:
                dims = tuple(engine.get_tensor_shape(tname))
                inputs[tname] = (
                    dtype,
                    tuple(("batch" if j == 0 else None) if d < 0 else int(d) for j, d in enumerate(dims)),
                )
                if any(d < 0 for d in dims):
                    lo, opt, hi = engine.get_tensor_profile_shape(tname, 0)
                    profiles[tname] = (tuple(lo), tuple(opt), tuple(hi))
            else:
                outputs[tname] = dtype
        self._engine, self._context = engine, context
        self._inputs, self._outputs, self._profiles = inputs, outputs, profiles
        self._stream = cuda.Stream()

    def _deactivate(self) -> None:
        try:
            for bound in self._bound.values():
                bound.free()
            if self._stream is not None:
                self._stream.destroy()
        finally:
            self._bound.clear()
            self._current = None
            self._stream = None
            self._context = None
            self._engine = None
            self._runtime = None

    def _input_metadata(self) -> dict[str, tuple[np.dtype, Shape]]:
        return dict(self._inputs)

    def _output_names(self) -> list[str]:
        return list(self._outputs)

    def _options(self) -> dict[str, Any]:
        trt = import_tensorrt()
        return {
            "engine": str(self.path),
            "tensorrt": trt.__version__,
            "cuda_graph": self.cuda_graph,
            "profiles": {k: list(v) for k, v in self._profiles.items()},
        }

    def _bind(self, key: tuple, shapes: dict[str, tuple[int, ...]]) -> _Bound:
        """Buffers for these input shapes: allocated once, addresses set whenever the shape changes."""
        ctx = self._context
        bound = self._bound.get(key)
        if bound is None:
            bound = _Bound()
            try:
                for n, shape in shapes.items():
                    if not ctx.set_input_shape(n, shape):
                        raise RunnerError(f"{self.name}: TensorRT refused shape {shape} for input '{n}'")
                    bound.host[n] = cuda.PinnedBuffer(shape, self._inputs[n][0])
                    bound.device[n] = cuda.DeviceBuffer(bound.host[n].nbytes)
                for n, dtype in self._outputs.items():
                    shape = tuple(int(d) for d in ctx.get_tensor_shape(n))
                    if any(d < 0 for d in shape):
                        raise RunnerError(f"{self.name}: output '{n}' has an unresolved shape {shape}")
                    bound.host[n] = cuda.PinnedBuffer(shape, dtype)
                    bound.device[n] = cuda.DeviceBuffer(bound.host[n].nbytes)
            except BaseException:
                bound.free()
                raise
            self._bound[key] = bound
            self._current = None
        if self._current != key:
            for n, shape in shapes.items():
                ctx.set_input_shape(n, shape)
            for n, buf in bound.device.items():
                if not ctx.set_tensor_address(n, buf.ptr):
                    raise RunnerError(f"{self.name}: TensorRT refused the address of tensor '{n}'")
            self._current = key
        return bound

    def _enqueue(self, bound: _Bound) -> None:
        """Copies in, the engine, copies out: all on the runner's stream (also what a graph records)."""
        stream = self._stream
        assert stream is not None
        for n in self._inputs:
            stream.copy_to_device(bound.device[n].ptr, bound.host[n].ptr, bound.host[n].nbytes)
        if not self._context.execute_async_v3(stream.handle):
            raise RunnerError(f"{self.name}: execute_async_v3 failed (see the TensorRT log above)")
        for n in self._outputs:
            stream.copy_to_host(bound.host[n].ptr, bound.device[n].ptr, bound.host[n].nbytes)

    def _prepare(self, feeds: Mapping[str, np.ndarray]) -> _Bound:
        """Check the feeds, bind buffers for their shapes and fill the pinned inputs."""
        arrays: dict[str, np.ndarray] = {}
        for tname, (dtype, shape) in self._inputs.items():
            arr = check_feed(tname, feeds[tname], dtype, shape, self.name)
            if tname in self._profiles:
                lo, _, hi = self._profiles[tname]
                if not all(a <= s <= b for a, s, b in zip(lo, arr.shape, hi)):
                    raise RunnerError(
                        f"{self.name}: input '{tname}' shape {arr.shape} is outside the engine's profile {lo}..{hi}"
                    )
            arrays[tname] = arr
        shapes = {n: tuple(int(d) for d in a.shape) for n, a in arrays.items()}
        key = tuple(shapes[n] for n in self._inputs)
        cuda.check(cuda.cudart().cudaSetDevice(self.device_index), f"cudaSetDevice({self.device_index})")
        bound = self._bind(key, shapes)
        for n, arr in arrays.items():
            np.copyto(bound.host[n].array, arr, casting="no")
        return bound

    def _launch(self, bound: _Bound) -> None:
        """Queue one inference (copies in, engine, copies out): the captured graph, or a plain enqueue."""
        stream = self._stream
        assert stream is not None
        if self.cuda_graph and bound.graph is None:
            self._enqueue(bound)  # TensorRT finishes shape-dependent setup outside the capture
            stream.synchronize()
            bound.graph = stream.capture(lambda: self._enqueue(bound))
        if bound.graph is not None:
            bound.graph.launch(stream)
        else:
            self._enqueue(bound)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        bound = self._prepare(feeds)
        self._launch(bound)
        assert self._stream is not None
        self._stream.synchronize()
        return {n: bound.host[n].array.copy() for n in self._outputs}

    def device_time_ms(self, feeds: Mapping[str, np.ndarray], iters: int = 10) -> float:
        """Mean device time of one inference (copies in, engine, copies out), from CUDA events.

        Host time (what ``infer`` costs the caller) adds Python, the feed check and the final
        synchronisation; benchmarks report both.
        """
        self._require_active("device_time_ms")
        if iters < 1:
            raise DeployKitError(f"iters must be at least 1, got {iters}")
        bound = self._prepare(feeds)
        stream = self._stream
        assert stream is not None
        self._launch(bound)  # warm: capture the graph outside the timed span
        start, end = cuda.Event(), cuda.Event()
        try:
            start.record(stream)
            for _ in range(iters):
                self._launch(bound)
            end.record(stream)
            end.synchronize()
            return start.elapsed_ms(end) / iters
        finally:
            start.destroy()
            end.destroy()

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()


def engine_artifact_runner(art: Any, device: str = "cuda", running: Any = None, **opts: Any) -> TensorRTRunner:
    """A runner for an engine artifact, after the guard has checked it against what is running.

    Torch-free on purpose (``make_runner`` resolves torch modules too): the runtime's engine path.
    ``running`` (a :class:`~deploykit.backends.tensorrt.guard.RunningEnv`) stands in for this machine.
    """
    from deploykit.backends.tensorrt.guard import built_for, check_engine_artifact, engine_record, running_env

    record = engine_record(art.manifest, where=str(art.manifest_path))
    index = cuda.device_index(device if str(device).strip().lower().startswith(("cuda", "gpu")) else "cuda")
    running = running or running_env(index, purpose=f"{art.path}: an engine built with {built_for(record)}")
    check_engine_artifact(art, running)  # before TensorRT ever sees the bytes
    host_code = bool((record.get("flags") or {}).get("version_compatible"))
    return TensorRTRunner(
        art.main_path,
        device=f"cuda:{index}",
        host_code_allowed=host_code,
        name=f"{art.path.name}/{art.manifest.main_file}",
        **opts,
    )


__all__ = ["TRT_DTYPES", "TensorRTRunner", "engine_artifact_runner", "numpy_dtype"]
