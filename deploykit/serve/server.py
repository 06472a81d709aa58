"""``deploykit serve``: artifacts behind a real Triton server (HTTP, gRPC, metrics) started by PyTriton.

The inference function of each model is the torch-free :class:`~deploykit.runtime.Predictor`;
Triton does the request handling, dynamic batching, health/ready endpoints and Prometheus metrics.
Requests carry the preprocessed input tensor, exactly like the repository written by
``deploykit triton``, so a client talks to either server the same way.
"""

from __future__ import annotations

import os
import re
import socket
import sysconfig
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError, MissingExtraError
from deploykit.runtime.predictor import Predictor

LOOPBACK = "127.0.0.1"


def python_libdir_first() -> str:
    """Put the running interpreter's LIBDIR first on LD_LIBRARY_PATH for the server process.

    Triton's Python-backend stub links libpython; without this it finds another (or no) Python.
    PyTriton copies ``os.environ`` when it starts the server, so this must run before that.
    """
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    parts = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p and p != libdir]
    os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *parts] if libdir else parts)
    return os.environ["LD_LIBRARY_PATH"]


def import_pytriton() -> Any:
    """The pytriton package, or a one-line error naming the extra that installs it."""
    try:
        import pytriton.triton  # noqa: F401
    except ImportError:
        raise MissingExtraError("nvidia-pytriton", "serve", "deploykit serve") from None
    import pytriton

    return pytriton


@dataclass
class ServedModel:
    """One artifact as served: its Triton model name and the predictor behind it."""

    name: str
    predictor: Predictor
    max_batch_size: int


@dataclass
class ServerInfo:
    """The addresses a started server listens on."""

    http_url: str
    grpc_url: str
    metrics_url: str
    models: list[str] = field(default_factory=list)


def model_names(predictors: Sequence[Predictor]) -> list[str]:
    """Triton model names: the model's name, or the artifact folder's when two share a model name."""
    names = [p.name for p in predictors]
    if len(set(names)) != len(names):
        names = [re.sub(r"[^A-Za-z0-9._-]", "_", p.artifact.path.name) for p in predictors]
    if len(set(names)) != len(names):
        raise DeployKitError(f"two artifacts would be served under one name: {', '.join(names)}")
    return names


def infer_function(predictor: Predictor) -> Callable[..., dict[str, np.ndarray]]:
    """PyTriton inference callable: Triton's batched input tensor in, the runtime's logits out."""
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        if set(inputs) != {predictor.input_name}:
            raise DeployKitError(f"expected input '{predictor.input_name}', got {', '.join(sorted(inputs))}")
        return {predictor.output_name: predictor.infer(inputs[predictor.input_name])}

    return infer


class Server:
    """A Triton server over one or more artifacts; ``start`` returns once every model is ready."""

    def __init__(
        self,
        artifacts: Sequence[str | os.PathLike],
        *,
        host: str = LOOPBACK,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        instances: int = 1,
        threads: int | None = None,
        max_queue_delay_us: int = 100,
        log_file: str | os.PathLike | None = None,
    ) -> None:
        if not artifacts:
            raise DeployKitError("serve needs at least one artifact")
        if instances < 1:
            raise DeployKitError(f"instances must be at least 1, got {instances}")
        ports = {"HTTP": http_port, "gRPC": grpc_port, "metrics": metrics_port}
        for what, port in ports.items():
            if not 1 <= port <= 65535:
                raise DeployKitError(f"{what} port {port} is not in 1..65535")
        if len(set(ports.values())) != 3:
            raise DeployKitError(
                f"HTTP, gRPC and metrics ports must differ (got {http_port}, {grpc_port}, {metrics_port})"
            )
        import_pytriton()
        from deploykit.artifact import Artifact

        loaded = [Artifact.load(a, verify=True) for a in artifacts]
        for art in loaded:  # refused before any engine is deserialised
            if art.manifest.format != "onnx":
                raise DeployKitError(
                    f"{art.path}: deploykit serve runs ONNX artifacts; serve an engine with "
                    "`deploykit triton` and NVIDIA's Triton container"
                )
        predictors = [Predictor(art, threads=threads, spin=False) for art in loaded]
        self.models = []
        for name, pred in zip(model_names(predictors), predictors):
            top = pred.batch.max if pred.batch.dynamic and pred.batch.min == 1 else 0
            self.models.append(ServedModel(name, pred, top))
        self.host, self.instances, self.delay = host, instances, max_queue_delay_us
        self.ports = (http_port, grpc_port, metrics_port)
        self.log_file = log_file
        self._triton: Any = None
        self._lock = threading.Lock()

    def start(self) -> ServerInfo:
        """Start Triton, bind every model and wait until they are ready."""
        python_libdir_first()
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig

        http, grpc, metrics = self.ports
        cfg = TritonConfig(
            http_address=self.host,
            http_port=http,
            grpc_address=self.host,
            grpc_port=grpc,
            metrics_address=self.host,
            metrics_port=metrics,
            allow_metrics=True,
            allow_gpu_metrics=_has_nvidia_gpu(),
            log_file=Path(self.log_file) if self.log_file else None,
            exit_on_error=True,
        )
        with self._lock:
            triton = Triton(config=cfg)
            try:
                for m in self.models:
                    p = m.predictor
                    dims = p.input_shape if m.max_batch_size else (p.batch.max, *p.input_shape)
                    out = tuple(d for d in p.artifact.manifest.outputs[0].shape[1 if m.max_batch_size else 0 :])
                    triton.bind(
                        model_name=m.name,
                        infer_func=[infer_function(p)] * self.instances,
                        inputs=[Tensor(name=p.input_name, dtype=p.input_dtype.type, shape=tuple(dims))],
                        outputs=[Tensor(name=p.output_name, dtype=np.float32, shape=out)],
                        config=ModelConfig(
                            batching=m.max_batch_size > 0,
                            max_batch_size=max(m.max_batch_size, 1),
                            batcher=DynamicBatcher(max_queue_delay_microseconds=self.delay),
                        ),
                        strict=True,
                    )
                triton.run()
            except Exception as e:
                triton.stop()
                if isinstance(e, DeployKitError):
                    raise
                raise DeployKitError(f"Triton server failed to start ({type(e).__name__}: {e})") from None
            self._triton = triton
        return ServerInfo(
            http_url=f"http://{self.host}:{http}",
            grpc_url=f"{self.host}:{grpc}",
            metrics_url=f"http://{self.host}:{metrics}/metrics",
            models=[m.name for m in self.models],
        )

    def is_alive(self) -> bool:
        """True while the Triton server and its model proxies are running."""
        return self._triton is not None and self._triton.is_alive()

    def stop(self) -> None:
        """Shut Triton down and release the predictors (idempotent)."""
        with self._lock:
            if self._triton is not None:
                self._triton.stop()
                self._triton = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now (bind to port 0, read what the kernel chose, release)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind((LOOPBACK, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _has_nvidia_gpu() -> bool:
    """GPU metrics only where there is a GPU (Triton prints an NVML error otherwise)."""
    from deploykit.machine import gpu_info

    try:
        return bool(gpu_info())
    except Exception:  # machine probing must never stop a server
        return False
