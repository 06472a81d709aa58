"""A TensorRT engine made of strict stand-ins, whose "kernels" run on the fake CUDA runtime.

``serve_engine`` makes the next ``trt.Runtime(...)`` deserialise to an ICudaEngine stand-in with
the given I/O tensors; its execution context checks every call against NVIDIA's signatures (the
World's own checks stay in place), keeps the shapes and addresses the runner binds, and on
``execute_async_v3`` enqueues ``compute`` on the fake stream: reading the bound input buffers and
writing the bound output buffers, so a wrong address, shape or copy shows in the numbers.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Tensor:
    name: str
    dtype: str  # trt.DataType member name
    shape: tuple[int, ...]  # -1 for the dynamic batch
    is_input: bool
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None


@dataclass
class EngineLog:
    """What the runner did to the stand-ins."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    addresses: dict[str, int] = field(default_factory=dict)
    enqueues: int = 0
    device_at_deserialize: int | None = None
    device_at_context: int | None = None
    engine: Any = None
    context: Any = None
    runtime: Any = None


def _then(method: Any, fn: Callable[..., Any]) -> None:
    """Keep the World's signature check on ``method`` and answer with ``fn``'s result."""
    checker = method.side_effect

    def side_effect(*args: Any, **kwargs: Any) -> Any:
        checker(*args, **kwargs)
        return fn(*args, **kwargs)

    method.side_effect = side_effect


NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "INT8": np.int8}


def serve_engine(
    world: Any,
    fake: Any,
    tensors: list[Tensor],
    compute: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    output_shape: Callable[[dict[str, tuple[int, ...]], str], tuple[int, ...]],
) -> EngineLog:
    """Make the next ``trt.Runtime(...).deserialize_cuda_engine`` return this engine."""
    trt, real = world.module, world.trt
    log = EngineLog()
    by_name = {t.name: t for t in tensors}

    engine = world.strict("ICudaEngine")
    world.set(engine, num_io_tensors=len(tensors))
    _then(engine.get_tensor_name, lambda i: tensors[i].name)
    _then(engine.get_tensor_dtype, lambda n: getattr(real.DataType, by_name[n].dtype))
    _then(
        engine.get_tensor_mode,
        lambda n: real.TensorIOMode.INPUT if by_name[n].is_input else real.TensorIOMode.OUTPUT,
    )
    _then(engine.get_tensor_shape, lambda n: real.Dims(list(by_name[n].shape)))
    _then(engine.get_tensor_profile_shape, lambda n, i: [real.Dims(list(s)) for s in by_name[n].profile])

    context = world.strict("IExecutionContext")

    def set_input_shape(name: str, shape: Any) -> bool:
        log.shapes[name] = tuple(int(d) for d in shape)
        return True

    def set_tensor_address(name: str, memory: int) -> bool:
        log.addresses[name] = int(memory)
        return True

    def get_tensor_shape(name: str) -> Any:
        inputs = {n: s for n, s in log.shapes.items() if by_name[n].is_input}
        return real.Dims(list(output_shape(inputs, name)))

    def execute(stream_handle: int) -> bool:
        log.enqueues += 1
        ins = {t.name: t for t in tensors if t.is_input}
        outs = [t for t in tensors if not t.is_input]
        shapes = dict(log.shapes)
        addresses = dict(log.addresses)

        def kernel() -> None:
            arrays = {}
            for n, t in ins.items():
                dtype = np.dtype(NP[t.dtype])
                count = int(np.prod(shapes[n]))
                raw = (ctypes.c_uint8 * (count * dtype.itemsize)).from_address(addresses[n])
                arrays[n] = np.frombuffer(raw, dtype=dtype).reshape(shapes[n]).copy()
            results = compute(arrays)
            for t in outs:
                out = np.ascontiguousarray(results[t.name], dtype=NP[t.dtype])
                ctypes.memmove(addresses[t.name], out.ctypes.data, out.nbytes)

        fake.enqueue(stream_handle, kernel)
        return True

    _then(context.set_input_shape, set_input_shape)
    _then(context.set_tensor_address, set_tensor_address)
    _then(context.get_tensor_shape, get_tensor_shape)
    _then(context.execute_async_v3, execute)

    def create_context(*args: Any, **kwargs: Any) -> Any:
        log.device_at_context = fake.current
        return context

    _then(engine.create_execution_context, create_context)

    make_runtime = trt.Runtime

    def runtime_factory(*args: Any, **kwargs: Any) -> Any:
        rt = make_runtime(*args, **kwargs)

        def deserialize(*a: Any, **k: Any) -> Any:
            log.device_at_deserialize = fake.current
            return engine

        _then(rt.deserialize_cuda_engine, deserialize)
        log.runtime = rt
        return rt

    runtime_factory._dk_spec = make_runtime._dk_spec
    trt.Runtime = runtime_factory
    log.engine, log.context = engine, context
    return log
