#!/usr/bin/env python
"""Issue #23's check of ``quantize``'s INT8 advice on the demo's model, before and after "time what deploys".

The demo (``make demo``) quantises a ResNet-18 at 24x24 trained on Fashion-MNIST; its speed check
printed "batch 1: INT8 0.49 ms vs FP32 0.84 ms, 1.67x (faster)" where a deployment saw no gain.
This script rebuilds that pair quickly (ResNet-18 24x24, one short epoch on train[:2000]: the
speed of a graph does not depend on how well it was trained) and times it three ways, the three
alternating repetition by repetition so the machine's load falls on all of them alike:

* ``legacy``: the check as it was: both sessions alive side by side, spinning off, 8 interleaved
  rounds in the same two sessions;
* ``deployed``: :func:`deploykit.quantize.speed.check_speed` now: the deployment's settings
  (spinning on), one session alive at a time, 8 fresh-session blocks;
* ``no-spin blocks``: one session at a time but spinning off, to show what spinning alone moves.

Two steps, so only the timing runs at normal priority::

    nice -n 10 python benchmarks/int8/demo_check.py --prepare /tmp/demo-check
    python benchmarks/int8/demo_check.py --time /tmp/demo-check --repeats 3
    python benchmarks/int8/demo_check.py --pair INT8.onnx FP32.onnx --batches 1 --tag NAME   # any pair

Results: ``benchmarks/results/int8/demo-check-<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "int8"
SIZE = 24
BATCHES = [1, 32]  # artifact_batches() of the export default (1..64, optimum 1)
OVERRIDES = {"image_size": (SIZE, SIZE), "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0}


def prepare(out: Path) -> None:
    """Train briefly, export, quantise (no speed check): out/fp32 and out/int8 artifacts."""
    import torch

    from deploykit.data.datasets import FASHION_MNIST_CLASSES
    from deploykit.data.specs import open_dataset
    from deploykit.data.transforms import iter_batches
    from deploykit.export.api import export_model
    from deploykit.models.weights import load_model, save_weights
    from deploykit.quantize import quantize_artifact

    torch.manual_seed(0)
    over = {**OVERRIDES, "labels": FASHION_MNIST_CLASSES}
    model = load_model("resnet18", num_classes=10, overrides=over)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for x, y in iter_batches(open_dataset("fashion-mnist:train[:2000]"), model.data_config, 32):
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    weights = save_weights(model, out / "resnet18-24.safetensors")
    export_model(
        "resnet18", weights=weights, num_classes=10, overrides=over, out=out / "fp32", progress=False, force=True
    )
    quantize_artifact(
        out / "fp32",
        "fashion-mnist:train[:512]",
        "fashion-mnist:test[:1000]",
        out=out / "int8",
        force=True,
        speed_check=False,
    )


def legacy_check(int8: Path, fp32: Path, batches: list[int], budget_s: float = 3.0) -> list[dict[str, Any]]:
    """The speed check as it was before issue #23 (both sessions alive, spinning off, rounds in one session)."""
    from deploykit.backends.onnxruntime import OnnxRuntimeRunner
    from deploykit.harness.bench import make_feeds
    from deploykit.harness.significance import median_ratio_ci
    from deploykit.quantize.speed import MAX_ITERS, ROUNDS

    runners = {
        "int8": OnnxRuntimeRunner(int8, name="int8", spin=False).activate(),
        "fp32": OnnxRuntimeRunner(fp32, name="fp32", spin=False).activate(),
    }
    rows = []
    try:
        for batch in batches:
            x = make_feeds(runners["fp32"], batch)
            probe = 0.0
            for r in runners.values():
                r.infer(x)
                t = time.perf_counter()
                r.infer(x)
                probe += time.perf_counter() - t
            iters = int(min(MAX_ITERS, max(1, budget_s / (ROUNDS * probe))))
            med: dict[str, list[float]] = {k: [] for k in runners}
            for k in runners:
                runners[k].infer(x)  # warm-up 1
            for rnd in range(ROUNDS):
                for k in list(runners) if rnd % 2 == 0 else list(runners)[::-1]:
                    ts = []
                    for _ in range(iters):
                        t = time.perf_counter_ns()
                        runners[k].infer(x)
                        ts.append(time.perf_counter_ns() - t)
                    med[k].append(statistics.median(ts) / 1e6)
            rows.append(_row(batch, med["int8"], med["fp32"], iters, median_ratio_ci))
    finally:
        for r in runners.values():
            r.deactivate()
    return rows


def blocks_check(int8: Path, fp32: Path, batches: list[int], spin: bool, budget_s: float = 3.0) -> list[dict]:
    """One session alive at a time in fresh-session blocks, spinning as given."""
    from deploykit.backends.onnxruntime import OnnxRuntimeRunner
    from deploykit.harness.bench import benchmark_blocks, size_blocks
    from deploykit.harness.significance import median_ratio_ci
    from deploykit.quantize.speed import MAX_ITERS, ROUNDS

    runners = {"fp32": OnnxRuntimeRunner(fp32, spin=spin), "int8": OnnxRuntimeRunner(int8, spin=spin)}
    iters = size_blocks(runners["fp32"], batches, ROUNDS, 2, budget_s, MAX_ITERS)
    timed = benchmark_blocks(runners, batches, ROUNDS, iters, warmup=1, machine={})
    return [
        _row(b, timed["int8"].batches[i].round_p50_ms, timed["fp32"].batches[i].round_p50_ms, iters[b], median_ratio_ci)
        for i, b in enumerate(batches)
    ]


def _row(batch: int, i8: list[float], f32: list[float], iters: int, ci) -> dict[str, Any]:
    r = ci(i8, f32)
    return {
        "batch": batch,
        "int8_ms": statistics.median(i8),
        "fp32_ms": statistics.median(f32),
        "speedup": 1 / r.median_ratio,
        "interval": [1 / r.ci_high, 1 / r.ci_low] if r.interval else None,
        "verdict": r.verdict,
        "iters_per_round": iters,
    }


def deployed_check(int8: Path, fp32: Path, batches: list[int]) -> list[dict[str, Any]]:
    from deploykit.quantize.speed import check_speed

    sc = check_speed(int8, fp32, batches)
    return [{**b.to_dict(), "interval": list(b.interval) if b.interval else None} for b in sc.batches]


def time_all(int8: Path, fp32: Path, repeats: int, batches: list[int], model: str) -> dict[str, Any]:
    from deploykit.machine import describe_machine
    from deploykit.onnx_io import deployment_settings

    methods = {
        "legacy": lambda: legacy_check(int8, fp32, batches),
        "deployed": lambda: deployed_check(int8, fp32, batches),
        "no-spin blocks": lambda: blocks_check(int8, fp32, batches, spin=False),
    }
    runs: list[dict[str, Any]] = []
    for rep in range(repeats):
        order = list(methods) if rep % 2 == 0 else list(methods)[::-1]
        for name in order:
            load = os.getloadavg()[0]
            rows = methods[name]()
            runs.append({"repeat": rep, "method": name, "load_average": round(load, 2), "batches": rows})
            b1 = rows[0]
            print(
                f"rep {rep} {name:<15} load {load:.1f}: batch 1 INT8 {b1['int8_ms']:.3f} ms vs FP32 "
                f"{b1['fp32_ms']:.3f} ms, {b1['speedup']:.2f}x ({b1['verdict']})",
                file=sys.stderr,
                flush=True,
            )
    return {
        "model": model,
        "files": {"int8": str(int8), "fp32": str(fp32)},
        "batches": batches,
        "deployment_settings": deployment_settings().to_dict(),
        "machine": describe_machine(),
        "runs": runs,
    }


def markdown(doc: dict[str, Any]) -> str:
    from deploykit.machine import machine_line

    lines = [
        "# quantize's INT8 speed check on the demo model: as it was, and as deployed",
        "",
        f"Model: {doc['model']}. Machine: {machine_line(doc['machine'])}. ORT threads: default (2 here). "
        f"Load average at the start of each run in the table (2 cores).",
        "legacy = both sessions alive, spinning off, 8 rounds in the same sessions (the check before issue #23); "
        "deployed = `check_speed` now: deployment settings (spinning on), one session alive at a time, "
        "8 fresh-session blocks; no-spin blocks = one at a time, spinning off. Methods alternate repetition by "
        "repetition. Speed-up = FP32 / INT8 (median of per-round ratios, 95% interval).",
        "",
        "| repeat | method | load avg | batch | INT8 ms | FP32 ms | speed-up | interval | verdict |",
        "|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in doc["runs"]:
        for b in run["batches"]:
            iv = f"{b['interval'][0]:.2f}-{b['interval'][1]:.2f}" if b["interval"] else ""
            lines.append(
                f"| {run['repeat']} | {run['method']} | {run['load_average']:.1f} | {b['batch']} | "
                f"{b['int8_ms']:.3f} | {b['fp32_ms']:.3f} | {b['speedup']:.2f}x | {iv} | {b['verdict']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepare", type=Path, help="train, export and quantise into this folder")
    ap.add_argument("--time", type=Path, help="time the pair in this folder (prepared first)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pair", nargs=2, type=Path, metavar=("INT8", "FP32"), help="time these two ONNX files instead")
    ap.add_argument("--batches", type=int, nargs="+", default=BATCHES)
    ap.add_argument("--model", default=None, help="with --pair: what the files are, for the record")
    ap.add_argument("--tag", default=None, help="suffix for the result files")
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(args.prepare)
    if args.time or args.pair:
        from deploykit._io import atomic_write_json, atomic_write_text
        from deploykit.machine import machine_slug

        if args.pair:
            int8, fp32 = args.pair
            model = args.model or f"{int8.name} against {fp32.name}"
        else:
            int8, fp32 = args.time / "int8" / "model.onnx", args.time / "fp32" / "model.onnx"
            model = f"resnet18 {SIZE}x{SIZE}, Fashion-MNIST, one short epoch (train[:2000])"
        doc = time_all(int8, fp32, args.repeats, args.batches, model)
        stem = f"demo-check-{machine_slug(doc['machine'])}" + (f"-{args.tag}" if args.tag else "")
        RESULTS.mkdir(parents=True, exist_ok=True)
        atomic_write_json(RESULTS / f"{stem}.json", doc)
        md = markdown(doc)
        atomic_write_text(RESULTS / f"{stem}.md", md)
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
