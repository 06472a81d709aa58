"""Served vs in-process: throughput and p50/p99 latency of resnet18 through `deploykit serve`.

    python benchmarks/serve/run.py                  # 1, 4 and 16 clients, 8 s each, HTTP + gRPC + in-process
    python benchmarks/serve/run.py --seconds 4 --clients 1,16

One run: export the reference resnet18 (the cached Fashion-MNIST checkpoint when there is one,
else random weights at the reference data config: speed does not depend on the weights), start
`deploykit serve` on loopback in a subprocess, then for each client count run batch-1 requests
for a fixed time from that many threads over HTTP and gRPC (tritonclient), and the same number
of threads calling `Predictor.infer` in this process. The average batch Triton executed comes
from its own metrics (inferences / executions), which shows whether dynamic batching merged
requests. Writes `<machine_slug>.json` and `.md` beside this script.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploykit._io import atomic_write_json, atomic_write_text
from deploykit.machine import describe_machine, machine_line, machine_slug
from deploykit.serve.server import free_ports, serve_threads

HERE = Path(__file__).resolve().parent
MODEL = "resnet18"


def export_reference(out: Path) -> tuple[Any, str]:
    """The reference resnet18 artifact (batch 1..16) and where its weights came from.

    Weights: the cached Fashion-MNIST checkpoint of the full recipe, else of the demo recipe
    (`make demo` trains it), at that recipe's data config; random weights only when neither is cached.
    """
    from deploykit.export import export_model
    from deploykit.reference import cached_recipe, checkpoint_path, demo_recipe, get_recipe, read_result

    weights, source, recipe = None, "random weights (no reference checkpoint cached)", get_recipe(MODEL)
    for kind, candidate in (("full", get_recipe(MODEL)), ("demo", demo_recipe(MODEL))):
        found = cached_recipe(candidate)
        if found is not None:
            recipe, weights = found, checkpoint_path(found)
            top1 = (read_result(found) or {}).get("test_top1")
            acc = f", Fashion-MNIST test top-1 {top1:.2%}" if isinstance(top1, float) else ""
            source = f"trained reference checkpoint ({kind} recipe {found.hash}{acc})"
            break
    else:
        print("no reference checkpoint cached; using random weights at the reference data config", file=sys.stderr)
    cfg = recipe.data_config()
    art = export_model(
        MODEL,
        weights=weights,
        num_classes=10,
        out=out,
        force=True,
        progress=False,
        max_batch=16,
        overrides={
            "image_size": cfg.image_size,
            "mean": cfg.mean,
            "std": cfg.std,
            "crop_pct": cfg.crop_pct,
            "labels": cfg.labels,
        },
    )
    return art, source


def drive(clients: int, seconds: float, make_call: Callable[[], Callable[[], None]]) -> dict[str, float]:
    """``clients`` threads each calling in a loop for ``seconds``: throughput and latency percentiles."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        call = make_call()
        call()  # warm-up (connection set-up), not timed
        start.wait()
        while (t0 := time.perf_counter()) < stop_at[0]:
            call()
            lat[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 1e9
    start.wait()
    t_begin = time.perf_counter()
    stop_at[0] = t_begin + seconds
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_begin
    all_lat = np.concatenate([np.asarray(x) for x in lat]) * 1e3
    return {
        "requests": int(all_lat.size),
        "throughput_rps": all_lat.size / wall,
        "p50_ms": float(np.percentile(all_lat, 50)),
        "p99_ms": float(np.percentile(all_lat, 99)),
    }


def triton_counts(metrics_port: int) -> tuple[float, float]:
    """(inferences, executions) of the model so far, from Triton's Prometheus metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()

    def value(name: str) -> float:
        m = re.search(rf'^{name}{{model="{MODEL}"[^}}]*}} ([0-9.e+]+)$', text, re.M)
        return float(m.group(1)) if m else float("nan")

    return value("nv_inference_count"), value("nv_inference_exec_count")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,4,16", help="Concurrent client counts (comma list).")
    ap.add_argument("--seconds", type=float, default=8.0, help="Measured seconds per point.")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads, both sides (default: ORT's in process, deploykit serve's when served).",
    )
    ap.add_argument("--out", type=Path, default=HERE, help="Folder for the results files.")
    args = ap.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from deploykit.runtime import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="dk-serve-bench-"))
    art, source = export_reference(tmp / MODEL)
    pred = Predictor.from_artifact(art.path, threads=args.threads)  # as an application would
    x = np.random.default_rng(0).standard_normal((1, *pred.input_shape)).astype(np.float32)

    http, grpc, metrics = free_ports(3)
    cmd = [
        sys.executable,
        "-c",
        "from deploykit.cli import main; main()",
        "serve",
        str(art.path),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--log-file",
        str(tmp / "triton.log"),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        deadline = time.monotonic() + 120
        while True:
            try:
                if ready.is_model_ready(MODEL):
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"deploykit serve did not start (exit {server.poll()})")
            time.sleep(0.5)

        def http_call() -> Callable[[], None]:
            c = httpclient.InferenceServerClient(f"127.0.0.1:{http}", network_timeout=60)
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            out = [httpclient.InferRequestedOutput(pred.output_name, binary_data=True)]  # raw bytes, not JSON
            return lambda: c.infer(MODEL, [inp], outputs=out)

        def grpc_call() -> Callable[[], None]:
            c = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
            inp = grpcclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            return lambda: c.infer(MODEL, [inp], client_timeout=60)

        def local_call() -> Callable[[], None]:
            return lambda: pred.infer(x)

        rows = []
        for n in clients:
            for mode, make in (("in-process", local_call), ("http", http_call), ("grpc", grpc_call)):
                before = triton_counts(metrics) if mode != "in-process" else None
                row = {"clients": n, "mode": mode, **drive(n, args.seconds, make), "load_avg": os.getloadavg()[0]}
                if before is not None:
                    inf, ex = (a - b for a, b in zip(triton_counts(metrics), before))
                    row["avg_batch"] = inf / ex if ex else None
                rows.append(row)
                batch = f"  avg batch {row['avg_batch']:.2f}" if row.get("avg_batch") else ""
                print(
                    f"{mode:>10} {n:>2} clients: {row['throughput_rps']:8.1f} req/s  p50 {row['p50_ms']:.2f} ms"
                    f"  p99 {row['p99_ms']:.2f} ms{batch}",
                    file=sys.stderr,
                )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()

    machine = describe_machine()
    result = {
        "model": MODEL,
        "weights": source,
        "input": list(pred.input_shape),
        "batch_profile": [1, 16],
        "seconds_per_point": args.seconds,
        "threads": args.threads,
        "threads_in_process": args.threads or "onnxruntime default",
        "threads_served": args.threads or serve_threads(1),
        "machine": machine,
        "rows": rows,
        "summary": summarise(rows),
    }
    slug = machine_slug(machine)
    atomic_write_json(args.out / f"{slug}.json", result)
    atomic_write_text(args.out / f"{slug}.md", render(result, machine_line(machine)))
    print(f"written {args.out / slug}.json and .md", file=sys.stderr)
    return 0


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The two target checks: batching gain at the most clients, served p50 gap at one client."""
    by = {(r["mode"], r["clients"]): r for r in rows}
    lo, hi = min(r["clients"] for r in rows), max(r["clients"] for r in rows)
    out: dict[str, Any] = {}
    for mode in ("http", "grpc"):
        if (mode, lo) in by and (mode, hi) in by:
            gain = by[(mode, hi)]["throughput_rps"] / by[(mode, lo)]["throughput_rps"]
            out[f"{mode}_throughput_gain_{hi}_vs_{lo}"] = gain
        if (mode, 1) in by and ("in-process", 1) in by:
            out[f"{mode}_p50_gap_ms_1_client"] = by[(mode, 1)]["p50_ms"] - by[("in-process", 1)]["p50_ms"]
    return out


def render(result: dict[str, Any], machine: str) -> str:
    lines = [
        "# Serving: `deploykit serve` (Triton via PyTriton) vs the in-process Predictor",
        "",
        f"Machine: {machine}",
        "",
        f"Model: {result['model']} {'x'.join(map(str, result['input']))}, {result['weights']}; batch-1 requests, "
        f"{result['seconds_per_point']:g} s per point, ONNX Runtime intra-op threads: in process "
        f"{result['threads_in_process']}, served {result['threads_served']}. "
        "Clients run in the benchmark process, the server in its own; both share the machine's cores. "
        "Served models run in Triton's Python-backend stub (deploykit/serve/python_model.py).",
        "",
        "Reproduce: `python benchmarks/serve/run.py`",
        "",
        "| clients | mode | req/s | p50 ms | p99 ms | avg executed batch | load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ab = f"{r['avg_batch']:.2f}" if r.get("avg_batch") else "-"
        lines.append(
            f"| {r['clients']} | {r['mode']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {ab} | {r['load_avg']:.2f} |"
        )
    lines += ["", "## Summary", ""]
    lines += [f"- {k}: {v:.2f}" for k, v in result["summary"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
