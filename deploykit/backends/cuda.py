"""CUDA for the engine runtime, through NVIDIA's ``cuda-bindings`` (cuda-python), without torch or TensorRT.

TensorRT's own Python samples run engines this way: device buffers from ``cudaMalloc``, pinned
host buffers from ``cudaMallocHost`` (so copies are truly asynchronous), one stream, and CUDA
graphs captured on that stream. The module needs no TensorRT, so it can be proven on any CUDA GPU
first (tests/backends/test_cuda.py). Every failed CUDA call is a one-line DeployKitError that
names the call and CUDA's own error name.

``cuda.bindings.runtime`` is imported at first use; tests replace :func:`cudart` with a stand-in.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError, MissingExtraError

_MODULE: ModuleType | None = None


def cudart(purpose: str = "Running a TensorRT engine") -> ModuleType:
    """``cuda.bindings.runtime``, or a MissingExtraError naming the extra that installs it."""
    global _MODULE
    if _MODULE is None:
        try:
            from cuda.bindings import runtime  # type: ignore[import-not-found]
        except ImportError:
            raise MissingExtraError("cuda-bindings", "tensorrt", purpose) from None
        _MODULE = runtime
    return _MODULE


def _error_text(rt: ModuleType, err: Any) -> str:
    try:
        name = rt.cudaGetErrorName(err)[1]
        text = rt.cudaGetErrorString(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        text = text.decode() if isinstance(text, bytes) else str(text)
        return f"{name}: {text}"
    except Exception:  # an error code the bindings cannot describe
        return f"CUDA error {int(err)}"


def check(result: Any, call: str) -> Any:
    """The value(s) a cuda-bindings call returned after its error code, or a one-line error naming the call."""
    rt = cudart()
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        raise DeployKitError(f"CUDA {call} failed ({_error_text(rt, err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


# -- devices -----------------------------------------------------------------------------------
def device_index(device: str | int) -> int:
    """The CUDA device number of "cuda", "cuda:N" or N; anything else is a one-line error."""
    if isinstance(device, int) and not isinstance(device, bool):
        index = device
    else:
        text = str(device).strip().lower()
        kind, sep, num = text.partition(":")
        if kind not in ("cuda", "gpu") or (sep and not num.isdigit()):
            raise DeployKitError(f"device '{device}' is not 'cuda' or 'cuda:N'")
        index = int(num) if sep else 0
    if index < 0:
        raise DeployKitError(f"device '{device}': a CUDA device number is 0 or more")
    return index


def device_count() -> int:
    """How many CUDA devices this process sees (a missing driver or GPU is a one-line error)."""
    return int(check(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount"))


def cuda_available() -> bool:
    """True when cuda-bindings is installed and sees at least one CUDA device."""
    try:
        return device_count() > 0
    except DeployKitError:
        return False


def set_device(device: str | int) -> int:
    """Make ``cuda:N`` current for this thread (``cudaSetDevice``); returns N."""
    index = device_index(device)
    count = device_count()
    if index >= count:
        raise DeployKitError(f"device 'cuda:{index}' does not exist: this machine has {count} CUDA device(s)")
    check(cudart().cudaSetDevice(index), f"cudaSetDevice({index})")
    return index


@dataclass(frozen=True)
class DeviceInfo:
    """What the engine guard needs to know about a GPU."""

    index: int
    name: str
    compute_capability: str  # "8.6"
    integrated: bool  # Jetson / DRIVE: the GPU shares memory with the CPU
    total_memory: int  # bytes


def device_info(device: str | int = 0) -> DeviceInfo:
    """Name, compute capability and kind of ``cuda:N`` (``cudaGetDeviceProperties``)."""
    index = device_index(device)
    count = device_count()
    if index >= count:
        raise DeployKitError(f"device 'cuda:{index}' does not exist: this machine has {count} CUDA device(s)")
    prop = check(cudart().cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    name = prop.name
    name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
    return DeviceInfo(
        index=index,
        name=name.strip(),
        compute_capability=f"{int(prop.major)}.{int(prop.minor)}",
        integrated=bool(prop.integrated),
        total_memory=int(prop.totalGlobalMem),
    )


# -- memory ------------------------------------------------------------------------------------
def nbytes_of(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(math.prod(shape)) * np.dtype(dtype).itemsize


class DeviceBuffer:
    """``nbytes`` of device memory (``cudaMalloc``); ``ptr`` is the address TensorRT binds."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        # cudaMalloc(0) returns a null pointer; TensorRT wants a valid address even for empty tensors.
        self.ptr: int = int(check(cudart().cudaMalloc(max(self.nbytes, 1)), f"cudaMalloc({self.nbytes})"))

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(cudart().cudaFree(ptr), "cudaFree")

    def __enter__(self) -> DeviceBuffer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.free()


class PinnedBuffer:
    """Page-locked host memory (``cudaMallocHost``) seen as a numpy array of ``shape`` and ``dtype``.

    Copies from pageable memory are staged by the driver and synchronous; from pinned memory they
    run asynchronously on the stream, which is what a deployment (and a fair benchmark) does.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = nbytes_of(self.shape, self.dtype)
        self.ptr: int = int(check(cudart().cudaMallocHost(max(self.nbytes, 1)), f"cudaMallocHost({self.nbytes})"))
        raw = (ctypes.c_uint8 * max(self.nbytes, 1)).from_address(self.ptr)
        self.array: np.ndarray = np.frombuffer(raw, dtype=np.uint8, count=self.nbytes).view(self.dtype)
        self.array = self.array.reshape(self.shape)

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self.array = np.empty(0, dtype=self.dtype)
            check(cudart().cudaFreeHost(ptr), "cudaFreeHost")

    def __enter__(self) -> PinnedBuffer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.free()


# -- streams, graphs, events -------------------------------------------------------------------
class Stream:
    """A non-blocking CUDA stream; ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        rt = cudart()
        flags = int(getattr(rt, "cudaStreamNonBlocking", 1))
        self._stream = check(rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags")
        self.handle = int(self._stream)

    def copy_to_device(self, dst: int, src: int, nbytes: int) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(rt.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync(host to device)")

    def copy_to_host(self, dst: int, src: int, nbytes: int) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(rt.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync(device to host)")

    def copy_device(self, dst: int, src: int, nbytes: int) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        check(rt.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream), "cudaMemcpyAsync(device to device)")

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def capture(self, work: Callable[[], None]) -> Graph:
        """Record what ``work`` enqueues on this stream into a CUDA graph, to replay with one launch."""
        rt = cudart()
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        check(rt.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        try:
            work()
        except BaseException:
            ended = rt.cudaStreamEndCapture(self._stream)  # leave the stream usable; the first error wins
            if isinstance(ended, tuple) and len(ended) > 1 and int(ended[0]) == 0 and ended[1] is not None:
                rt.cudaGraphDestroy(ended[1])
            raise
        graph = check(rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        try:
            exec_ = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except DeployKitError:
            rt.cudaGraphDestroy(graph)
            raise
        return Graph(graph, exec_)

    def destroy(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            check(cudart().cudaStreamDestroy(stream), "cudaStreamDestroy")


class Graph:
    """A captured and instantiated CUDA graph."""

    def __init__(self, graph: Any, exec_: Any) -> None:
        self._graph, self._exec = graph, exec_

    def launch(self, stream: Stream) -> None:
        check(cudart().cudaGraphLaunch(self._exec, stream._stream), "cudaGraphLaunch")

    def destroy(self) -> None:
        rt = cudart()
        if self._exec is not None:
            exec_, self._exec = self._exec, None
            check(rt.cudaGraphExecDestroy(exec_), "cudaGraphExecDestroy")
        if self._graph is not None:
            graph, self._graph = self._graph, None
            check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")


class Event:
    """A CUDA event, for device time between two points on a stream (benchmarks)."""

    def __init__(self) -> None:
        self._event = check(cudart().cudaEventCreate(), "cudaEventCreate")

    def record(self, stream: Stream) -> None:
        check(cudart().cudaEventRecord(self._event, stream._stream), "cudaEventRecord")

    def synchronize(self) -> None:
        check(cudart().cudaEventSynchronize(self._event), "cudaEventSynchronize")

    def elapsed_ms(self, later: Event) -> float:
        """Milliseconds of device time from this event to ``later`` (both recorded and complete)."""
        return float(check(cudart().cudaEventElapsedTime(self._event, later._event), "cudaEventElapsedTime"))

    def destroy(self) -> None:
        if self._event is not None:
            event, self._event = self._event, None
            check(cudart().cudaEventDestroy(event), "cudaEventDestroy")


__all__ = [
    "DeviceBuffer",
    "DeviceInfo",
    "Event",
    "Graph",
    "PinnedBuffer",
    "Stream",
    "check",
    "cuda_available",
    "cudart",
    "device_count",
    "device_index",
    "device_info",
    "nbytes_of",
    "set_device",
]
