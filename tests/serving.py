"""Start ``deploykit serve`` in a subprocess on free loopback ports and wait until a model is ready."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

START_TIMEOUT = 120  # seconds for Triton to start and load the model on a busy 2-core machine


@dataclass
class Served:
    """A running ``deploykit serve``: its process, ports and combined stdout/stderr file."""

    proc: subprocess.Popen
    http: int
    grpc: int
    metrics: int
    out: IO[str]


@contextmanager
def serving(artifact: Path, model: str, workdir: Path, extra: tuple[str, ...] = ()) -> Iterator[Served]:
    """``deploykit serve ARTIFACT [EXTRA...]`` until the block ends (SIGTERM, then SIGKILL after 60 s)."""
    import tritonclient.http as httpclient

    from deploykit.serve.server import free_ports

    http, grpc, metrics = free_ports(3)
    cmd = [sys.executable, "-c", "from deploykit.cli import main; main()", "serve", str(artifact),
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
           "--threads", "1", "--log-file", str(workdir / "triton.log"), *extra]  # fmt: skip
    out = open(workdir / "serve.out", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                out.seek(0)
                pytest.fail(f"deploykit serve exited with {proc.returncode}: {out.read()[-2000:]}")
            try:
                if client.is_model_ready(model):
                    break
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                pytest.fail("deploykit serve did not become ready in time")
            time.sleep(0.5)
        yield Served(proc, http, grpc, metrics, out)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()
