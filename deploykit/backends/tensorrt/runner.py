"""Run a serialized TensorRT 10 engine through the name-based tensor API (enqueueV3).

Buffers are torch CUDA tensors (torch is a core dependency), so no pycuda / cuda-python is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from deploykit.backends.base import Runner, RunnerError, Shape, check_feed
from deploykit.backends.tensorrt import import_tensorrt
from deploykit.errors import DeployKitError


def _torch_dtype(np_dtype: np.dtype):
    import torch

    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype


class TensorRTRunner(Runner):
    """Deserialize an engine, bind torch CUDA buffers by tensor name and run execute_async_v3."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike, device: str = "cuda", name: str | None = None) -> None:
        import_tensorrt()
        import torch

        path = Path(engine_path)
        if not path.is_file():
            raise DeployKitError(f"{path}: TensorRT engine file not found")
        if not device.startswith("cuda"):
            raise DeployKitError(f"TensorRT engines run on CUDA devices only, not '{device}'")
        if not torch.cuda.is_available():
            raise DeployKitError("the TensorRT backend needs a CUDA GPU, and torch sees none")
        super().__init__(f"tensorrt[{name or path.name}]", device)
        self.path = path
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._inputs: dict[str, tuple[np.dtype, Shape]] = {}
        self._outputs: dict[str, np.dtype] = {}
        self._profiles: dict[str, tuple] = {}
        self._out_buffers: dict[tuple, dict[str, Any]] = {}

    def _activate(self) -> None:
        trt = import_tensorrt()
        import torch

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise DeployKitError(
                f"{self.path}: TensorRT {trt.__version__} could not deserialize this engine "
                "(built by another TensorRT version or for another GPU?)"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self.device)
        for i in range(engine.num_io_tensors):
            tname = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(tname)))
            if engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT:
                dims = tuple(engine.get_tensor_shape(tname))
                shape = tuple(("batch" if j == 0 else None) if d < 0 else int(d) for j, d in enumerate(dims))
                self._inputs[tname] = (dtype, shape)
                if any(d < 0 for d in dims):
                    lo, opt, hi = engine.get_tensor_profile_shape(tname, 0)
                    self._profiles[tname] = (tuple(lo), tuple(opt), tuple(hi))
            else:
                self._outputs[tname] = dtype

    def _deactivate(self) -> None:
        self._out_buffers.clear()
        self._context = None
        self._engine = None
        self._stream = None

    def _input_metadata(self) -> dict[str, tuple[np.dtype, Shape]]:
        return dict(self._inputs)

    def _output_names(self) -> list[str]:
        return list(self._outputs)

    def _options(self) -> dict[str, Any]:
        trt = import_tensorrt()
        return {"engine": str(self.path), "tensorrt": trt.__version__, "profiles": {k: list(v) for k, v in self._profiles.items()}}

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ctx = self._context
        keep = []
        with torch.cuda.stream(self._stream):
            for tname, (dtype, shape) in self._inputs.items():
                arr = check_feed(tname, feeds[tname], dtype, shape, self.name)
                if tname in self._profiles:
                    lo, _, hi = self._profiles[tname]
                    if not all(a <= s <= b for a, s, b in zip(lo, arr.shape, hi)):
                        raise RunnerError(
                            f"{self.name}: input '{tname}' shape {arr.shape} is outside the engine's profile {lo}..{hi}"
                        )
                t = torch.from_numpy(arr).to(self.device, non_blocking=True)
                keep.append(t)
                ctx.set_input_shape(tname, tuple(arr.shape))
                ctx.set_tensor_address(tname, t.data_ptr())
            key = tuple(tuple(feeds[n].shape) for n in self._inputs)
            if key not in self._out_buffers:
                self._out_buffers[key] = {
                    n: torch.empty(tuple(ctx.get_tensor_shape(n)), dtype=_torch_dtype(dt), device=self.device)
                    for n, dt in self._outputs.items()
                }
            outs = self._out_buffers[key]
            for n, t in outs.items():
                ctx.set_tensor_address(n, t.data_ptr())
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise RunnerError(f"{self.name}: execute_async_v3 failed (see the TensorRT log above)")
            result = {n: t.cpu() for n, t in outs.items()}
        self._stream.synchronize()
        return {n: t.numpy() for n, t in result.items()}

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
