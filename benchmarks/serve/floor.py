"""The serving floor: an identity model served the two ways PyTriton allows, one client, interleaved.

    python benchmarks/serve/floor.py                 # 2000 requests per way and protocol

The model returns zeros for a 3x32x32 float32 input, so the time is all request path: client,
HTTP or gRPC, Triton's core and dynamic batcher, and the hop to the Python code:

- ``bind``: PyTriton's own way, ``Triton.bind(infer_func)``: Triton's Python-backend stub
  forwards each batch over ZeroMQ to the process that called ``bind`` and waits for the answer;
- ``stub``: a Python-backend ``model.py`` that answers inside the stub (how ``deploykit serve``
  now runs the Predictor, deploykit/serve/python_model.py).

Both servers run at once, each in its own process; requests alternate between them in rounds so
load from other jobs on the machine falls on both alike. Prints a table and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from deploykit.serve.server import free_ports, python_libdir_first

SHAPE = (3, 32, 32)
IDENTITY_MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            n = pb_utils.get_input_tensor_by_name(r, "input").as_numpy().shape[0]
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("output", np.zeros((n, 10), np.float32))]))
        return out
"""
CONFIG = """name: "identity"
backend: "python"
max_batch_size: 16
input [ { name: "input" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def serve(way: str, http: int, grpc: int, metrics: int, log: Path) -> None:
    """Run one server until SIGTERM (this script started as a child)."""
    python_libdir_first()
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    repo = None
    if way == "stub":
        repo = Path(tempfile.mkdtemp(prefix="dk-floor-"))
        (repo / "identity" / "1").mkdir(parents=True)
        (repo / "identity" / "config.pbtxt").write_text(CONFIG)
        (repo / "identity" / "1" / "model.py").write_text(IDENTITY_MODEL_PY)
    cfg = TritonConfig(
        http_address="127.0.0.1",
        http_port=http,
        grpc_address="127.0.0.1",
        grpc_port=grpc,
        metrics_address="127.0.0.1",
        metrics_port=metrics,
        log_file=log,
        model_repository=repo,
    )
    triton = Triton(config=cfg)
    if way == "bind":

        @batch
        def identity(input: np.ndarray) -> dict[str, np.ndarray]:  # noqa: A002 - the tensor's name
            return {"output": np.zeros((input.shape[0], 10), np.float32)}

        triton.bind(
            model_name="identity",
            infer_func=identity,
            inputs=[Tensor(name="input", dtype=np.float32, shape=SHAPE)],
            outputs=[Tensor(name="output", dtype=np.float32, shape=(10,))],
            config=ModelConfig(max_batch_size=16, batcher=DynamicBatcher(max_queue_delay_microseconds=100)),
            strict=True,
        )
    triton.run()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    triton.stop()
    if repo is not None:
        shutil.rmtree(repo, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="Requests per way and protocol.")
    ap.add_argument("--serve", nargs=5, metavar=("WAY", "HTTP", "GRPC", "METRICS", "LOG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        way, http, grpc, metrics, log = args.serve
        serve(way, int(http), int(grpc), int(metrics), Path(log))
        return 0

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    tmp = Path(tempfile.mkdtemp(prefix="dk-floor-"))
    procs, ports = {}, {}
    for way in ("bind", "stub"):
        ports[way] = free_ports(3)
        cmd = [sys.executable, __file__, "--serve", way, *map(str, ports[way]), str(tmp / f"{way}.log")]
        procs[way] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    x = np.zeros((1, *SHAPE), np.float32)
    calls = {}
    try:
        for way, (http, grpc, _) in ports.items():
            h = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
            deadline = time.monotonic() + 180
            while True:
                try:
                    if h.is_model_ready("identity"):
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                if procs[way].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{way} server did not start")
                time.sleep(0.5)
            hi = httpclient.InferInput("input", list(x.shape), "FP32")
            hi.set_data_from_numpy(x)
            ho = [httpclient.InferRequestedOutput("output", binary_data=True)]
            g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
            gi = grpcclient.InferInput("input", list(x.shape), "FP32")
            gi.set_data_from_numpy(x)
            calls[(way, "http")] = lambda h=h, hi=hi, ho=ho: h.infer("identity", [hi], outputs=ho)
            calls[(way, "grpc")] = lambda g=g, gi=gi: g.infer("identity", [gi])
        for call in calls.values():
            for _ in range(50):  # warm-up: connections, first-call allocations
                call()
        lat: dict[tuple[str, str], list[float]] = {k: [] for k in calls}
        rounds = 20
        for _ in range(rounds):
            for key, call in calls.items():
                for _ in range(args.requests // rounds):
                    t0 = time.perf_counter()
                    call()
                    lat[key].append(time.perf_counter() - t0)
        load = os.getloadavg()
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        {
            "way": way,
            "protocol": proto,
            "p50_ms": float(np.median(v) * 1e3),
            "p99_ms": float(np.percentile(v, 99) * 1e3),
            "requests": len(v),
        }
        for (way, proto), v in lat.items()
    ]
    print("| way | protocol | p50 ms | p99 ms | requests |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['way']} | {r['protocol']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['requests']} |")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
