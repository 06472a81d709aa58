"""PyTorch eager (or torch.compile) as a runner: the reference every other backend is held to."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deploykit.backends.base import Runner, RunnerError, Shape, check_feed
from deploykit.errors import DeployKitError

PRECISIONS = ("fp32", "fp16")


def cuda_available() -> bool:
    """True when this torch build sees a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def check_torch_device(device: str) -> str:
    """Normalise 'cpu' / 'cuda' / 'cuda:N'; an absent GPU is a one-line error."""
    import torch

    dev = device.strip().lower()
    if dev == "gpu":
        dev = "cuda"
    if dev == "cpu":
        return dev
    if not dev.startswith("cuda"):
        raise DeployKitError(f"device '{device}' is not one of cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise DeployKitError(f"device '{device}' requested but torch ({torch.__version__}, {build}) sees no CUDA GPU")
    if ":" in dev:
        idx = dev.split(":", 1)[1]
        if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
            raise DeployKitError(
                f"device '{device}' does not exist; {torch.cuda.device_count()} CUDA device(s) visible"
            )
    return dev


class TorchRunner(Runner):
    """Run an ``nn.Module`` in eval mode; FP16, channels-last and CUDA-graph replay on CUDA."""

    backend = "torch"

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        cuda_graph: bool = False,
        compile: bool | str = False,
        threads: int | None = None,
        input_names: Sequence[str] = ("input",),
        output_names: Sequence[str] = ("logits",),
        input_shape: Sequence[int] | None = None,
    ) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise DeployKitError(f"TorchRunner needs a torch.nn.Module, got {type(model).__name__}")
        if precision not in PRECISIONS:
            raise DeployKitError(f"torch backend precision '{precision}' is not one of {', '.join(PRECISIONS)}")
        device = check_torch_device(device)
        if device == "cpu" and precision == "fp16":
            raise DeployKitError("fp16 with the torch backend needs a CUDA device; use --precision fp32 on cpu")
        if device == "cpu" and cuda_graph:
            raise DeployKitError("CUDA-graph replay needs a CUDA device; drop cuda_graph on cpu")
        if threads is not None and threads < 1:
            raise DeployKitError(f"threads must be at least 1, got {threads}")
        name = getattr(model, "model_name", type(model).__name__)
        tags = [precision] + (["channels_last"] if channels_last else []) + (["cuda_graph"] if cuda_graph else [])
        if compile:
            tags.append("compile" if compile is True else f"compile:{compile}")
        super().__init__(f"torch[{name},{','.join(tags)}]", device)
        self.model = model
        self.precision = precision
        self.channels_last = channels_last
        self.cuda_graph = cuda_graph
        self.compile = compile
        self.threads = threads
        self._input_names = list(input_names)
        self._out_names = list(output_names)
        cfg = getattr(model, "data_config", None)
        if input_shape is not None:
            self._chw: tuple | None = tuple(int(d) for d in input_shape)
        elif cfg is not None:
            self._chw = tuple(cfg.input_size)
        else:
            self._chw = None
        if len(self._input_names) != 1:
            raise DeployKitError("TorchRunner runs single-input image models; pass one input name")
        self._module: Any = None
        self._graphs: dict[tuple, tuple] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def _activate(self) -> None:
        import torch

        self._prev_threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # process-wide in torch: restored on deactivate
        module = self.model
        if self.device != "cpu" or self.precision != "fp32" or self.channels_last:
            module = copy.deepcopy(module)  # .to()/.half() work in place: leave the caller's model as it was
        module = module.eval().to(self.device)
        if self.precision == "fp16":
            module = module.half()
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.compile:
            mode = None if self.compile is True else str(self.compile)
            module = torch.compile(module, mode=mode)
        self._module = module

    def _deactivate(self) -> None:
        import torch

        self._module = None
        self._graphs.clear()
        if self.threads is not None:
            torch.set_num_threads(self._prev_threads)
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    # -- metadata -------------------------------------------------------------------------------
    def _input_metadata(self) -> dict[str, tuple[np.dtype, Shape]]:
        shape: Shape = ("batch", *(self._chw or (None, None, None)))
        return {self._input_names[0]: (np.dtype(np.float32), shape)}

    def _output_names(self) -> list[str]:
        return self._out_names

    def _options(self) -> dict[str, Any]:
        import torch

        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "cuda_graph": self.cuda_graph,
            "compile": self.compile,
            "threads": self.threads if self.threads is not None else torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
        }

    # -- inference ------------------------------------------------------------------------------
    def _input_dtype(self):
        import torch

        return torch.float16 if self.precision == "fp16" else None

    def _to_device(self, arr: np.ndarray):
        from deploykit.models.inference import to_tensor

        return to_tensor(arr, self.device, self._input_dtype(), self.channels_last)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from deploykit.models.inference import run_model, to_numpy

        name = self._input_names[0]
        dtype, shape = self._input_metadata()[name]
        arr = check_feed(name, feeds[name], dtype, shape, self.name)
        try:
            if self.cuda_graph:
                with torch.inference_mode():
                    ys = to_numpy(self._replay(arr), outputs="all")
            else:
                ys = run_model(
                    self._module,
                    arr,
                    device=self.device,
                    dtype=self._input_dtype(),
                    channels_last=self.channels_last,
                    outputs="all",
                    eval_mode=False,  # the module was put in eval mode on activate
                )
        except DeployKitError as e:  # a model returning something that is not tensors
            raise RunnerError(f"{self.name}: {e}") from None
        if len(ys) != len(self._out_names):
            raise RunnerError(
                f"{self.name}: model returned {len(ys)} outputs but {len(self._out_names)} names were given"
            )
        return dict(zip(self._out_names, ys))

    def _replay(self, arr: np.ndarray):
        """Capture one CUDA graph per input shape, then replay it with the new data copied in."""
        import torch

        key = tuple(arr.shape)
        if key not in self._graphs:
            static_x = self._to_device(arr)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up outside the capture, as torch's docs ask
                for _ in range(3):
                    self._module(static_x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_y = self._module(static_x)
            self._graphs[key] = (graph, static_x, static_y)
        graph, static_x, static_y = self._graphs[key]
        static_x.copy_(self._to_device(arr))
        graph.replay()
        return static_y

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
