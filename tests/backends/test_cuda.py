"""The CUDA layer (deploykit.backends.cuda): no torch, no TensorRT.

On CPU it runs against a stand-in whose every function is checked, by name and parameter names,
against NVIDIA's real cuda-bindings when they are installed; the ``gpu`` tests run the real thing
(allocation, pinned copies both ways, stream sync, a captured and replayed graph) on any CUDA GPU.
"""

from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import pytest
from fake_cudart import FUNCTIONS, FakeCudart, cudaDeviceProp, cudaError_t, install

from deploykit.backends import cuda
from deploykit.errors import DeployKitError, MissingExtraError

HAS_BINDINGS = importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None


@pytest.mark.skipif(not HAS_BINDINGS, reason="cuda-bindings is not installed (pip install 'deploykit[tensorrt]')")
def test_stand_in_matches_the_real_bindings():
    from cuda.bindings import runtime as real

    for name in FUNCTIONS:
        assert hasattr(real, name), f"cuda-bindings has no {name}"
        fake_params = list(inspect.signature(getattr(FakeCudart, name)).parameters)[1:]
        assert list(inspect.signature(getattr(real, name)).parameters) == fake_params, name
    for enum_name in ("cudaError_t", "cudaMemcpyKind", "cudaStreamCaptureMode"):
        real_members = set(getattr(real, enum_name).__members__)
        assert set(getattr(FakeCudart, enum_name).__members__) <= real_members, enum_name
    assert real.cudaStreamNonBlocking == FakeCudart.cudaStreamNonBlocking
    for field in ("name", "major", "minor", "integrated", "totalGlobalMem"):
        assert hasattr(real.cudaDeviceProp(), field), field


def test_device_names():
    assert [cuda.device_index(d) for d in ("cuda", "cuda:0", "cuda:3", "CUDA:1", 2)] == [0, 0, 3, 1, 2]
    for bad in ("cpu", "cuda:x", "cuda:", "tpu:0", -1):
        with pytest.raises(DeployKitError):
            cuda.device_index(bad)


def test_missing_bindings_name_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cuda(name, *args, **kwargs):
        if name.split(".")[0] == "cuda":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(cuda, "_MODULE", None)
    monkeypatch.setattr(builtins, "__import__", no_cuda)
    with pytest.raises(MissingExtraError, match=r"'cuda-bindings' package.*pip install 'deploykit\[tensorrt\]'"):
        cuda.device_count()


def test_errors_are_one_line_naming_the_call(monkeypatch):
    fake = install(monkeypatch, FakeCudart(count_error=cudaError_t.cudaErrorInsufficientDriver))
    with pytest.raises(DeployKitError, match=r"^CUDA cudaGetDeviceCount failed \(cudaErrorInsufficientDriver: "):
        cuda.device_count()
    assert not cuda.cuda_available()
    fake.count_error = None
    fake.fail["cudaMalloc"] = cudaError_t.cudaErrorMemoryAllocation
    with pytest.raises(DeployKitError, match=r"CUDA cudaMalloc\(4096\) failed \(cudaErrorMemoryAllocation") as info:
        cuda.DeviceBuffer(4096)
    assert "\n" not in str(info.value)


def test_device_choice_and_properties(monkeypatch):
    fake = install(monkeypatch, FakeCudart([cudaDeviceProp(), cudaDeviceProp(b"Orin\0junk", 8, 7, 1, 1 << 30)]))
    assert cuda.set_device("cuda:1") == 1 and fake.current == 1
    info = cuda.device_info("cuda:1")
    assert (info.name, info.compute_capability, info.integrated, info.total_memory) == ("Orin", "8.7", True, 1 << 30)
    assert cuda.device_info(0).integrated is False
    with pytest.raises(DeployKitError, match=r"'cuda:2' does not exist: this machine has 2 CUDA device\(s\)"):
        cuda.set_device("cuda:2")


def _round_trip(use_graph: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pinned host -> device -> device -> pinned host, directly or through a captured graph."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    stream = cuda.Stream()
    src, dst = cuda.PinnedBuffer(x.shape, x.dtype), cuda.PinnedBuffer(x.shape, x.dtype)
    a, b = cuda.DeviceBuffer(src.nbytes), cuda.DeviceBuffer(src.nbytes)
    try:

        def work() -> None:
            stream.copy_to_device(a.ptr, src.ptr, src.nbytes)
            stream.copy_device(b.ptr, a.ptr, src.nbytes)
            stream.copy_to_host(dst.ptr, b.ptr, src.nbytes)

        if use_graph:
            graph = stream.capture(work)
            src.array[...] = x
            graph.launch(stream)
            stream.synchronize()
            first = dst.array.copy()
            src.array[...] = 2 * x  # a replay copies what the buffers hold now
            graph.launch(stream)
            stream.synchronize()
            graph.destroy()
            return first, dst.array.copy()
        src.array[...] = x
        work()
        stream.synchronize()
        return x, dst.array.copy()
    finally:
        for buf in (src, dst, a, b):
            buf.free()
        stream.destroy()


def test_copies_and_graph_on_the_stand_in(monkeypatch):
    fake = install(monkeypatch)
    x, got = _round_trip(use_graph=False)
    np.testing.assert_array_equal(got, x)
    first, second = _round_trip(use_graph=True)
    np.testing.assert_array_equal(second, 2 * first)
    assert fake.live() == {"device": 0, "pinned": 0, "streams": 0, "graphs": 0, "execs": 0, "events": 0}
    # during capture nothing ran: the copies were recorded, then replayed twice by cudaGraphLaunch
    names = [c[0] for c in fake.calls]
    start = names.index("cudaStreamBeginCapture")
    assert names[start : start + 5] == ["cudaStreamBeginCapture", *["cudaMemcpyAsync"] * 3, "cudaStreamEndCapture"]
    assert names.count("cudaGraphLaunch") == 2


def test_failed_capture_leaves_the_stream_usable(monkeypatch):
    fake = install(monkeypatch)
    stream = cuda.Stream()

    def broken() -> None:
        raise DeployKitError("enqueue failed")

    with pytest.raises(DeployKitError, match="enqueue failed"):
        stream.capture(broken)
    assert fake.capturing == {} and fake.live()["graphs"] == 0
    stream.destroy()


# -- on a GPU: the real cuda-bindings ------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_device_properties():
    info = cuda.device_info(0)
    major, minor = map(int, info.compute_capability.split("."))
    assert info.name and major >= 3 and minor >= 0 and info.total_memory > 0
    assert cuda.set_device("cuda:0") == 0


@pytest.mark.gpu
def test_gpu_pinned_round_trip_and_stream():
    x, got = _round_trip(use_graph=False)
    np.testing.assert_array_equal(got, x)


@pytest.mark.gpu
def test_gpu_graph_capture_and_replay():
    first, second = _round_trip(use_graph=True)
    np.testing.assert_array_equal(second, 2 * first)


@pytest.mark.gpu
def test_gpu_events_time_a_copy():
    stream = cuda.Stream()
    buf = cuda.PinnedBuffer((1 << 20,), np.float32)
    dev = cuda.DeviceBuffer(buf.nbytes)
    start, end = cuda.Event(), cuda.Event()
    try:
        start.record(stream)
        stream.copy_to_device(dev.ptr, buf.ptr, buf.nbytes)
        end.record(stream)
        end.synchronize()
        assert start.elapsed_ms(end) > 0
    finally:
        start.destroy()
        end.destroy()
        dev.free()
        buf.free()
        stream.destroy()
