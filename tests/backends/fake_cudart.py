"""A stand-in for ``cuda.bindings.runtime`` on a machine without a GPU: "device" memory is host memory.

It mirrors the calls deploykit.backends.cuda makes, with cuda-bindings' return convention (a tuple
whose first item is a ``cudaError_t``), so the CUDA layer and the TensorRT runner run end to end
on CPU. test_cuda.py checks that every function here exists in the real cuda-bindings with the same
parameter names. Copies run at once, except during stream capture, where they are recorded and
replayed by ``cudaGraphLaunch``; ``enqueue`` lets a test's TensorRT stand-in do the same.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-bindings' names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorStreamCaptureInvalidated = 901


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


cudaStreamNonBlocking = 1  # noqa: N816


class _Handle:
    _ids = itertools.count(0x1000)

    def __init__(self) -> None:
        self.id = next(self._ids)

    def __int__(self) -> int:
        return self.id


class cudaStream_t(_Handle):  # noqa: N801
    pass


class cudaGraph_t(_Handle):  # noqa: N801
    def __init__(self, ops: list[Callable[[], None]]) -> None:
        super().__init__()
        self.ops = ops


class cudaGraphExec_t(_Handle):  # noqa: N801
    def __init__(self, graph: cudaGraph_t) -> None:
        super().__init__()
        self.ops = list(graph.ops)


class cudaEvent_t(_Handle):  # noqa: N801
    pass


@dataclass
class cudaDeviceProp:  # noqa: N801
    name: bytes = b"Fake GPU"
    major: int = 8
    minor: int = 6
    integrated: int = 0
    totalGlobalMem: int = 8 << 30  # noqa: N815


OK = cudaError_t.cudaSuccess


class FakeCudart:
    """One fake CUDA runtime; ``calls`` logs (function, args) in order, for tests that check the order."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStreamNonBlocking = cudaStreamNonBlocking

    def __init__(self, devices: list[cudaDeviceProp] | None = None, count_error: cudaError_t | None = None) -> None:
        self.devices = [cudaDeviceProp()] if devices is None else devices
        self.count_error = count_error
        self.current = 0
        self.memory: dict[int, ctypes.Array] = {}
        self.pinned: set[int] = set()
        self.streams: set[int] = set()
        self.capturing: dict[int, list[Callable[[], None]]] = {}
        self.graphs: set[int] = set()
        self.execs: set[int] = set()
        self.events: set[int] = set()
        self.calls: list[tuple] = []
        self.fail: dict[str, cudaError_t] = {}  # function name -> error it returns next time
        self.elapsed_ms = 6.0  # what cudaEventElapsedTime reports

    # -- errors --------------------------------------------------------------------------------
    def _fails(self, fn: str) -> cudaError_t | None:
        return self.fail.pop(fn, None)

    def cudaGetErrorName(self, error):  # noqa: N802
        return OK, cudaError_t(int(error)).name.encode()

    def cudaGetErrorString(self, error):  # noqa: N802
        return OK, f"fake CUDA error {int(error)}".encode()

    # -- devices -------------------------------------------------------------------------------
    def cudaGetDeviceCount(self):  # noqa: N802
        if self.count_error is not None:
            return self.count_error, None
        return OK, len(self.devices)

    def cudaSetDevice(self, device):  # noqa: N802
        self.calls.append(("cudaSetDevice", device))
        if not 0 <= device < len(self.devices):
            return (cudaError_t.cudaErrorInvalidDevice,)
        self.current = device
        return (OK,)

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        if not 0 <= device < len(self.devices):
            return cudaError_t.cudaErrorInvalidDevice, None
        return OK, self.devices[device]

    # -- memory --------------------------------------------------------------------------------
    def _alloc(self, size: int) -> int:
        buf = (ctypes.c_uint8 * size)()
        ptr = ctypes.addressof(buf)
        self.memory[ptr] = buf
        return ptr

    def cudaMalloc(self, size):  # noqa: N802
        self.calls.append(("cudaMalloc", size, self.current))
        if err := self._fails("cudaMalloc"):
            return err, 0
        return OK, self._alloc(size)

    def cudaMallocHost(self, size):  # noqa: N802
        if err := self._fails("cudaMallocHost"):
            return err, 0
        ptr = self._alloc(size)
        self.pinned.add(ptr)
        return OK, ptr

    def cudaFree(self, devPtr):  # noqa: N802, N803
        if devPtr not in self.memory or devPtr in self.pinned:
            return (cudaError_t.cudaErrorInvalidValue,)
        del self.memory[devPtr]
        return (OK,)

    def cudaFreeHost(self, ptr):  # noqa: N802
        if ptr not in self.pinned:
            return (cudaError_t.cudaErrorInvalidValue,)
        self.pinned.discard(ptr)
        del self.memory[ptr]
        return (OK,)

    def _inside(self, ptr: int, count: int) -> bool:
        for base, buf in self.memory.items():
            if base <= ptr and ptr + count <= base + ctypes.sizeof(buf):
                return True
        return False

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):  # noqa: N802
        self.calls.append(("cudaMemcpyAsync", cudaMemcpyKind(kind).name, count))
        if int(stream) not in self.streams:
            return (cudaError_t.cudaErrorInvalidValue,)
        device_dst = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        device_src = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        for ptr, on_device in ((dst, device_dst), (src, device_src)):
            if on_device and (ptr in self.pinned or not self._inside(ptr, count)):
                return (cudaError_t.cudaErrorInvalidValue,)
        self.enqueue(stream, lambda: ctypes.memmove(dst, src, count))
        return (OK,)

    def enqueue(self, stream, op: Callable[[], None]) -> None:
        """Run ``op`` now, or record it when ``stream`` is being captured (what a kernel launch does)."""
        if int(stream) in self.capturing:
            self.capturing[int(stream)].append(op)
        else:
            op()

    # -- streams and graphs --------------------------------------------------------------------
    def cudaStreamCreateWithFlags(self, flags):  # noqa: N802
        s = cudaStream_t()
        self.streams.add(int(s))
        return OK, s

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        self.calls.append(("cudaStreamSynchronize",))
        return (OK,) if int(stream) in self.streams else (cudaError_t.cudaErrorInvalidValue,)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        if int(stream) not in self.streams:
            return (cudaError_t.cudaErrorInvalidValue,)
        self.streams.discard(int(stream))
        return (OK,)

    def cudaStreamBeginCapture(self, stream, mode):  # noqa: N802
        self.calls.append(("cudaStreamBeginCapture",))
        self.capturing[int(stream)] = []
        return (OK,)

    def cudaStreamEndCapture(self, stream):  # noqa: N802
        self.calls.append(("cudaStreamEndCapture",))
        ops = self.capturing.pop(int(stream), None)
        if ops is None:
            return cudaError_t.cudaErrorInvalidValue, None
        g = cudaGraph_t(ops)
        self.graphs.add(int(g))
        return OK, g

    def cudaGraphInstantiate(self, graph, flags):  # noqa: N802
        e = cudaGraphExec_t(graph)
        self.execs.add(int(e))
        return OK, e

    def cudaGraphLaunch(self, graphExec, stream):  # noqa: N802, N803
        self.calls.append(("cudaGraphLaunch",))
        if int(graphExec) not in self.execs:
            return (cudaError_t.cudaErrorInvalidValue,)
        for op in graphExec.ops:
            self.enqueue(stream, op)
        return (OK,)

    def cudaGraphExecDestroy(self, graphExec):  # noqa: N802, N803
        self.execs.discard(int(graphExec))
        return (OK,)

    def cudaGraphDestroy(self, graph):  # noqa: N802
        self.graphs.discard(int(graph))
        return (OK,)

    # -- events --------------------------------------------------------------------------------
    def cudaEventCreate(self):  # noqa: N802
        e = cudaEvent_t()
        self.events.add(int(e))
        return OK, e

    def cudaEventRecord(self, event, stream):  # noqa: N802
        return (OK,)

    def cudaEventSynchronize(self, event):  # noqa: N802
        return (OK,)

    def cudaEventElapsedTime(self, start, end):  # noqa: N802
        return OK, self.elapsed_ms

    def cudaEventDestroy(self, event):  # noqa: N802
        self.events.discard(int(event))
        return (OK,)

    def live(self) -> dict[str, int]:
        """What is still allocated or created: all zero after a clean release."""
        return {
            "device": len(self.memory) - len(self.pinned),
            "pinned": len(self.pinned),
            "streams": len(self.streams),
            "graphs": len(self.graphs),
            "execs": len(self.execs),
            "events": len(self.events),
        }


FUNCTIONS = sorted(n for n in vars(FakeCudart) if n.startswith("cuda") and callable(getattr(FakeCudart, n)))
FUNCTIONS = [n for n in FUNCTIONS if not isinstance(getattr(FakeCudart, n), type)]


def install(monkeypatch, fake: FakeCudart | None = None) -> FakeCudart:
    """Make deploykit.backends.cuda use ``fake`` (a new FakeCudart by default) for this test."""
    from deploykit.backends import cuda

    fake = fake or FakeCudart()
    monkeypatch.setattr(cuda, "_MODULE", fake)
    return fake


def install_plain(fake: FakeCudart | None = None) -> FakeCudart:
    """The same, for a script outside pytest (the torch-free subprocess test)."""
    from deploykit.backends import cuda

    fake = fake or FakeCudart()
    cuda._MODULE = fake
    return fake
