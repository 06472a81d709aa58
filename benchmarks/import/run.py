"""deploykit's optimiser against onnxslim on graphs written in other exporters' styles.

The graphs are built here (tests/optimize/foreign.py, no downloads): the TorchScript exporter at
opset 9/11 with initializers listed as graph inputs and BatchNorm kept (``export``), the same
networks as an old converter spells them (``legacy``: BatchNorm as Unsqueeze+Mul+Add over Constant
nodes, Sum residuals, a Reshape+MatMul+Add head), and a hand-built opset-9 graph (ConstantOfShape
and Reshape-made weights, an LRN). Random weights with non-trivial BatchNorm statistics.

For each graph: node and BatchNorm counts (BatchNormalization nodes plus per-channel Mul+Add
pairs) before, after deploykit's default pipeline and after onnxslim; output parity of both with
the source (ORT, its optimiser off); and ORT latency of deploykit's graph over onnxslim's, timed
round-robin (one run of each per round, one session of each alive, 1 intra-op thread, ORT's
default optimisations on, batch 1) so background load hits both alike. Ratio < 1: deploykit faster.

    python benchmarks/import/run.py            # 9 graphs, 60 rounds
    python benchmarks/import/run.py --quick    # hand-built + googlenet, 10 rounds
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

MODELS = (("resnet50", 9, 96), ("densenet121", 11, 96), ("googlenet", 9, 96), ("inception_v3", 11, 128))


def graphs(quick: bool):
    from tests.optimize.foreign import hand_built, legacy_style, zoo_export

    yield "hand-built (opset 9, IR 3)", hand_built()
    for name, opset, size in MODELS[2:3] if quick else MODELS:
        base = zoo_export(name, size, opset)
        yield f"{name} export (opset {opset}, {size}px)", base
        yield f"{name} legacy (opset {opset}, {size}px)", legacy_style(base)


def median_ratio(model_a, model_b, rounds: int) -> tuple[float, float, dict]:
    """Median latency of a and b (ms) and the median of per-round ratios a/b with its 95% interval."""
    from deploykit.harness.significance import median_ratio_ci
    from deploykit.onnx_io import ort_session

    sa = ort_session(model_a, threads=1, inter_op_threads=1)
    sb = ort_session(model_b, threads=1, inter_op_threads=1)
    inp = sa.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for s in (sa, sb):  # warm-up
        for _ in range(3):
            s.run(None, {inp.name: x})
    ta, tb = [], []
    for _ in range(rounds):
        for s, acc in ((sa, ta), (sb, tb)):
            t0 = time.perf_counter()
            s.run(None, {inp.name: x})
            acc.append(time.perf_counter() - t0)
    return float(np.median(ta) * 1e3), float(np.median(tb) * 1e3), median_ratio_ci(ta, tb).to_dict()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args(argv)
    import onnxslim

    from deploykit.machine import describe_machine, machine_line, machine_slug
    from deploykit.optimize import optimize_model, verify_or_raise
    from tests.optimize.foreign import batchnorms

    rounds = 10 if args.quick else args.rounds
    load_start = " ".join(f"{v:.1f}" for v in os.getloadavg())
    rows = []
    for label, model in graphs(args.quick):
        t0 = time.perf_counter()
        dk = optimize_model(model).model
        dk_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sl = onnxslim.slim(model)
        sl_s = time.perf_counter() - t0
        dk_par = verify_or_raise(model, dk, label)
        sl_par = verify_or_raise(model, sl, label + " (onnxslim)")
        ms_dk, ms_sl, ratio = median_ratio(dk, sl, rounds)
        row = {
            "graph": label,
            "nodes": {"source": len(model.graph.node), "deploykit": len(dk.graph.node), "onnxslim": len(sl.graph.node)},
            "batchnorm": {"source": batchnorms(model), "deploykit": batchnorms(dk), "onnxslim": batchnorms(sl)},
            "max_rel_vs_source": {"deploykit": dk_par.max_rel, "onnxslim": sl_par.max_rel},
            "optimise_seconds": {"deploykit": round(dk_s, 2), "onnxslim": round(sl_s, 2)},
            "ort_ms_p50": {"deploykit": round(ms_dk, 3), "onnxslim": round(ms_sl, 3)},
            "latency_ratio_deploykit_over_onnxslim": ratio,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    m = describe_machine()
    payload = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": m,
        "machine_line": machine_line(m),
        "rounds": rounds,
        "threads": 1,
        "batch": 1,
        "load_start": load_start,
        "load_end": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "quick": args.quick,
        "rows": rows,
    }
    slug = machine_slug(m) + ("-quick" if args.quick else "")
    (HERE / f"results-{slug}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# deploykit vs onnxslim on foreign-style graphs",
        "",
        f"Machine: {payload['machine_line']}; load average {load_start} -> {payload['load_end']}; "
        f"ORT 1 thread, batch 1, {rounds} rounds round-robin. Command: `python benchmarks/import/run.py`.",
        "",
        "| graph | nodes source | deploykit | onnxslim | BatchNorm source | deploykit | onnxslim "
        "| max rel err dk / slim | ORT p50 ms dk / slim | latency dk/slim, 95% interval |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        n, b, e, t = r["nodes"], r["batchnorm"], r["max_rel_vs_source"], r["ort_ms_p50"]
        lines.append(
            f"| {r['graph']} | {n['source']} | {n['deploykit']} | {n['onnxslim']} | {b['source']} | "
            f"{b['deploykit']} | {b['onnxslim']} | {e['deploykit']:.2g} / {e['onnxslim']:.2g} | "
            f"{t['deploykit']} / {t['onnxslim']} | {_ratio(r['latency_ratio_deploykit_over_onnxslim'])} |"
        )
    lines += [
        "",
        "BatchNorm = BatchNormalization nodes + per-channel Mul+Add pairs; latency ratio < 1: deploykit faster.",
    ]
    (HERE / f"results-{slug}.md").write_text("\n".join(lines) + "\n")
    return 0


def _ratio(r: dict) -> str:
    return f"{r['median_ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] {r['verdict']}"


if __name__ == "__main__":
    sys.exit(main())
