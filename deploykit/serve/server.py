"""``deploykit serve``: artifacts behind a real Triton server (HTTP, gRPC, metrics) started by PyTriton.

PyTriton supplies the Triton binary with its Python backend and starts and stops it. Each model
runs as Triton Python-backend model (:mod:`deploykit.serve.python_model`): the torch-free
:class:`~deploykit.runtime.Predictor` inside Triton's own stub process, fed through Triton's shared
memory. PyTriton's ``bind`` is not used: it forwards every batch once more, over ZeroMQ, to the
process that called it, which cost about 4 ms a request on the 2-core Zen 3 machine (an identity
model served both ways: p50 0.8 ms in the stub, 4.9 ms through ``bind``; benchmarks/serve/).
Triton does the request handling, dynamic batching, health/ready endpoints and Prometheus metrics.
Requests carry the preprocessed input tensor, exactly like the repository written by
``deploykit triton``, so a client talks to either server the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, MissingExtraError
from deploykit.runtime.predictor import Predictor
from deploykit.serve.triton_repo import model_config

LOOPBACK = "127.0.0.1"
MODEL_READY_TIMEOUT_S = 120  # loading a model in the stub on a busy 2-core machine


def serve_threads(instances: int = 1) -> int:
    """ONNX Runtime intra-op threads per served instance unless --threads says otherwise.

    The usable cores shared among the instances, with ORT's thread spinning on, like the Predictor
    in process. Measured on the quiet 2-core Zen 3 (resnet18 24x24, benchmarks/serve): two spinning
    threads served one client at p50 3.20 ms (HTTP) against 4.16 ms with one thread, and sixteen
    clients at 853 req/s against 681. (On the same machine loaded by other jobs one thread had
    been the faster, 4.4 against 5.0 ms: a busy machine is better served with --threads 1.)
    """
    from deploykit.machine import usable_cores

    return max(1, usable_cores() // max(1, instances))


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
    """One artifact as served: its Triton model name and the (checked, closed) predictor of its artifact."""

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
        backend: str | None = None,
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

        # Loading each artifact here checks its hashes, refuses an engine before anything
        # deserialises it, and checks that ONNX Runtime runs it before Triton starts; the served
        # predictors live in Triton's stub processes (python_model.py).
        loaded = [Artifact.load(a, verify=True) for a in artifacts]
        for art in loaded:
            if art.manifest.format != "onnx":
                raise DeployKitError(
                    f"{art.path}: deploykit serve runs ONNX artifacts; serve an engine with "
                    "`deploykit triton` and NVIDIA's Triton container"
                )
        # PyTriton's bundled Triton has only the Python backend, so every backend (onnxruntime,
        # openvino, openvino-bf16, auto) runs as the Predictor inside the stub; checked here first
        predictors = [Predictor(art, backend=backend, threads=1, spin=False) for art in loaded]
        self.models = []
        for name, pred in zip(model_names(predictors), predictors):
            top = pred.batch.max if pred.batch.dynamic and pred.batch.min == 1 else 0
            self.models.append(ServedModel(name, pred, top))
            pred.close()  # checked; the stub opens its own session
        self.host, self.instances, self.delay, self.threads = (
            host,
            instances,
            max_queue_delay_us,
            threads or serve_threads(instances),
        )
        self.ports = (http_port, grpc_port, metrics_port)
        self.backend = backend
        self.log_file = log_file
        self._triton: Any = None
        self._repo: Path | None = None
        self._lock = threading.Lock()

    def start(self) -> ServerInfo:
        """Write the model repository, start Triton on it and wait until every model is ready."""
        python_libdir_first()
        from pytriton.triton import Triton, TritonConfig

        http, grpc, metrics = self.ports
        with self._lock:
            self._repo = self._write_repository()
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
                model_repository=self._repo,  # PyTriton loads every model in it at start-up
            )
            triton = Triton(config=cfg)
            try:
                triton.run()
                self._wait_ready(triton)
            except Exception as e:
                triton.stop()
                shutil.rmtree(self._repo, ignore_errors=True)
                self._repo = None
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

    def _write_repository(self) -> Path:
        """A temporary Triton model repository: NAME/config.pbtxt (Python backend) and NAME/1/model.py."""
        repo = Path(tempfile.mkdtemp(prefix="deploykit-serve-"))
        source = resources.files("deploykit.serve").joinpath("python_model.py").read_text(encoding="utf-8")
        for m in self.models:
            art = m.predictor.artifact
            text, _ = model_config(
                art.manifest,
                m.name,
                max_batch=m.max_batch_size or None,
                instances=self.instances,
                kind="cpu",
                max_queue_delay_us=self.delay,
                labels=False,
                python_backend={
                    "artifact": str(art.path.resolve()),
                    "threads": str(self.threads),
                    "backend": self.backend or "",
                },
            )
            (repo / m.name / "1").mkdir(parents=True)
            (repo / m.name / "config.pbtxt").write_text(text, encoding="utf-8")
            (repo / m.name / "1" / "model.py").write_text(source, encoding="utf-8")
        return repo

    def _wait_ready(self, triton: Any) -> None:
        """Every model answers ready on Triton's HTTP endpoint, or a one-line error naming the first that does not."""
        http = self.ports[0]
        host = LOOPBACK if self.host in ("0.0.0.0", "") else self.host
        for m in self.models:
            deadline = time.monotonic() + MODEL_READY_TIMEOUT_S
            url = f"http://{host}:{http}/v2/models/{m.name}/ready"
            while True:
                try:
                    if urllib.request.urlopen(url, timeout=5).status == 200:
                        break
                except OSError:  # 400 while loading, or not listening yet
                    pass
                if not triton.is_alive() or time.monotonic() > deadline:
                    where = f" (see {self.log_file})" if self.log_file else ""
                    raise DeployKitError(f"model '{m.name}' did not become ready in Triton{where}")
                time.sleep(0.2)

    def is_alive(self) -> bool:
        """True while the Triton server and its model proxies are running."""
        return self._triton is not None and self._triton.is_alive()

    def stop(self) -> None:
        """Shut Triton down and remove its temporary model repository (idempotent)."""
        with self._lock:
            if self._triton is not None:
                self._triton.stop()
                self._triton = None
            if self._repo is not None:
                shutil.rmtree(self._repo, ignore_errors=True)
                self._repo = None

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
