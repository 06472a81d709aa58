"""Run a serialized TensorRT 10 engine through the name-based tensor API (``execute_async_v3``).

Buffers are torch CUDA tensors (torch is a core dependency), so no pycuda / cuda-python is needed.
The runner owns a CUDA stream, keeps one set of device input/output buffers per input shape and,
with ``cuda_graph=True``, captures the enqueue once per shape and replays the graph afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.backends.base import Runner, RunnerError, Shape, check_feed
from deploykit.backends.tensorrt import import_tensorrt
from deploykit.errors import DeployKitError


def _torch_dtype(np_dtype: np.dtype):
    import torch

    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype


class _Bound:
    """Device buffers (and an optional captured CUDA graph) for one set of input shapes."""

    def __init__(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.graph: Any = None


class TensorRTRunner(Runner):
    """Deserialize an engine, bind torch CUDA buffers by tensor name and run execute_async_v3."""

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
        self.cuda_graph = bool(cuda_graph)
        # Version-compatible engines embed a lean runtime (host code); only trusted plans may run it.
        self.host_code_allowed = bool(host_code_allowed)
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._inputs: dict[str, tuple[np.dtype, Shape]] = {}
        self._outputs: dict[str, np.dtype] = {}
        self._profiles: dict[str, tuple] = {}
        self._bound: dict[tuple, _Bound] = {}
        self._current: tuple | None = None

    def _activate(self) -> None:
        trt = import_tensorrt()
        import torch

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.host_code_allowed:
            self._runtime.engine_host_code_allowed = True
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
        self._bound.clear()
        self._current = None
        self._context = None
        self._engine = None
        self._stream = None

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

    def _bind(self, key: tuple, arrays: dict[str, np.ndarray]) -> _Bound:
        """Buffers for these input shapes: allocated once, addresses set whenever the shape changes."""
        import torch

        ctx = self._context
        bound = self._bound.get(key)
        if bound is None:
            ins = {n: torch.empty(a.shape, dtype=_torch_dtype(a.dtype), device=self.device) for n, a in arrays.items()}
            for n, t in ins.items():
                ctx.set_input_shape(n, tuple(t.shape))
            outs = {
                n: torch.empty(tuple(ctx.get_tensor_shape(n)), dtype=_torch_dtype(dt), device=self.device)
                for n, dt in self._outputs.items()
            }
            bound = self._bound[key] = _Bound(ins, outs)
            self._current = None
        if self._current != key:
            for n, t in bound.inputs.items():
                ctx.set_input_shape(n, tuple(t.shape))
                ctx.set_tensor_address(n, t.data_ptr())
            for n, t in bound.outputs.items():
                ctx.set_tensor_address(n, t.data_ptr())
            self._current = key
        return bound

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise RunnerError(f"{self.name}: execute_async_v3 failed (see the TensorRT log above)")

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        arrays: dict[str, np.ndarray] = {}
        for tname, (dtype, shape) in self._inputs.items():
            arr = check_feed(tname, feeds[tname], dtype, shape, self.name)
            if tname in self._profiles:
                lo, _, hi = self._profiles[tname]
                if not all(a <= s <= b for a, s, b in zip(lo, arr.shape, hi)):
                    raise RunnerError(
                        f"{self.name}: input '{tname}' shape {arr.shape} is outside the engine's profile {lo}..{hi}"
                    )
            arrays[tname] = np.ascontiguousarray(arr)
        key = tuple(arrays[n].shape for n in self._inputs)
        with torch.cuda.stream(self._stream):
            bound = self._bind(key, arrays)
            for n, arr in arrays.items():
                bound.inputs[n].copy_(torch.from_numpy(arr), non_blocking=False)
            if self.cuda_graph and bound.graph is None:
                self._enqueue()  # TensorRT finishes shape-dependent setup outside the capture
                self._stream.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=self._stream):
                    self._enqueue()
                bound.graph = graph
            if bound.graph is not None:
                bound.graph.replay()
            else:
                self._enqueue()
            result = {n: t.to("cpu", non_blocking=False) for n, t in bound.outputs.items()}
        self._stream.synchronize()
        return {n: t.numpy() for n, t in result.items()}

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
