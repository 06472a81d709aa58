#!/usr/bin/env python
"""Why deploykit's INT8 file ran slower than quantize_static's in OpenVINO, measured on resnet50 224x224.

Builds, from one seeded FP32 export and the same calibration images: deploykit's INT8 file as
placement writes it now (redundant Relus dropped), the same file with the Relus kept (the layout
before the fix), and ORT's quantize_static file. Then:

* checks the two deploykit files give bit-identical outputs in ONNX Runtime and OpenVINO;
* lists each file's executable graph in OpenVINO (op type, runtime precision), to show where they differ;
* times them in OpenVINO (f32 hint, LATENCY, threads = usable cores), one compiled model alive at a
  time, fresh-compile blocks in alternating order: wall time and process CPU time per call (CPU
  time is less disturbed by other jobs taking the cores on a shared machine).

Results: ``benchmarks/cpu/layout-<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "int8"))


def build(tmp: Path) -> dict[str, Path]:
    import run as int8bench  # benchmarks/int8/run.py
    import torch

    import deploykit.quantize.placement as placement
    from deploykit.data.config import DataConfig
    from deploykit.models.registry import create_model
    from deploykit.parity import parity_inputs

    torch.manual_seed(0)
    fp32 = tmp / "fp32.onnx"
    torch.onnx.export(
        create_model("resnet50", num_classes=1000).eval(),
        (torch.zeros(1, 3, 224, 224),),
        str(fp32),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
    )
    calib = parity_inputs(DataConfig(), 32, seed=1)
    q, _, stats = int8bench.deploykit_int8(fp32, calib, "entropy")
    files = {"deploykit": int8bench.save(q, tmp / "dk.onnx")}
    keep = placement._ort_redundant_relus
    placement._ort_redundant_relus = lambda g, plan, params: {}  # the layout before the fix
    try:
        q, _, _ = int8bench.deploykit_int8(fp32, calib, "entropy", stats=stats)
    finally:
        placement._ort_redundant_relus = keep
    files["deploykit_relus_kept"] = int8bench.save(q, tmp / "dk-relu.onnx")
    files["quantize_static"] = int8bench.ort_quantize_static(fp32, calib, tmp / "qs.onnx")
    return files


def exec_graph(path: Path, threads: int) -> dict[str, int]:
    from deploykit.openvino_io import ov_compile

    ops = collections.Counter()
    for op in ov_compile(path, threads=threads, batch=1).get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind != "Const":
            ops[f"{kind}:{info['runtimePrecision'].astype(str)}"] += 1
    return dict(sorted(ops.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--calls", type=int, default=12, help="timed calls per block at batch 1 (batch 8: a quarter)")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    import onnx

    from deploykit._io import atomic_write_json, atomic_write_text
    from deploykit.machine import describe_machine, machine_line, machine_slug, usable_cores
    from deploykit.onnx_io import ort_session
    from deploykit.openvino_io import ov_compile
    from deploykit.quantize.placement import count_ops

    threads = usable_cores()
    tmp = Path(tempfile.mkdtemp(prefix="dk-layout-"))
    files = build(tmp)
    names = list(files)
    x4 = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
    a, b = files["deploykit"], files["deploykit_relus_kept"]
    exact = {
        "onnxruntime": float(
            np.abs(ort_session(a).run(None, {"input": x4})[0] - ort_session(b).run(None, {"input": x4})[0]).max()
        ),
        "openvino": float(
            np.abs(
                ov_compile(a, threads=threads, batch=4)({0: x4})[0]
                - ov_compile(b, threads=threads, batch=4)({0: x4})[0]
            ).max()
        ),
    }
    doc: dict[str, Any] = {
        "machine": describe_machine(),
        "config": {
            "hint": "LATENCY",
            "threads": threads,
            "precision": "f32",
            "static_batch": True,  # compiled for the batch fed (exec graph: batch 1)
            "blocks": args.blocks,
            "calls": args.calls,
        },
        "onnx_ops": {k: count_ops(onnx.load(str(p), load_external_data=False)) for k, p in files.items()},
        "openvino_exec_graph": {k: exec_graph(p, threads) for k, p in files.items()},
        "max_abs_difference_relus_dropped_vs_kept": exact,
        "load_averages": [os.getloadavg()[0]],
        "batches": {},
    }
    for batch in args.batches:
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        n = args.calls if batch == 1 else max(2, args.calls // 4)
        wall = {k: [] for k in names}
        cpu = {k: [] for k in names}
        for blk in range(args.blocks):
            for k in names if blk % 2 == 0 else names[::-1]:
                req = ov_compile(files[k], threads=threads, batch=batch).create_infer_request()
                for _ in range(2):
                    req.infer({0: x})
                w, c = [], []
                for _ in range(n):
                    t0, c0 = time.perf_counter(), time.process_time()
                    req.infer({0: x})
                    w.append(time.perf_counter() - t0)
                    c.append(time.process_time() - c0)
                wall[k].append(float(np.median(w)) * 1e3)
                cpu[k].append(float(np.median(c)) * 1e3)
                del req
                gc.collect()
            doc["load_averages"].append(os.getloadavg()[0])
        base = "quantize_static"
        doc["batches"][str(batch)] = {
            k: {
                "wall_ms": float(np.median(wall[k])),
                "cpu_ms": float(np.median(cpu[k])),
                "cpu_ratio_vs_quantize_static": float(np.median(np.array(cpu[k]) / np.array(cpu[base]))),
                "cpu_ratio_range": [
                    float(min(np.array(cpu[k]) / np.array(cpu[base]))),
                    float(max(np.array(cpu[k]) / np.array(cpu[base]))),
                ],
                "wall_ratio_vs_quantize_static": float(np.median(np.array(wall[k]) / np.array(wall[base]))),
            }
            for k in names
        }
    slug = machine_slug(doc["machine"])
    lines = [
        f"# INT8 layout in OpenVINO: resnet50 224x224 ({slug})",
        "",
        f"Machine: {machine_line(doc['machine'])}. Load average {min(doc['load_averages']):.1f}-"
        f"{max(doc['load_averages']):.1f} on {threads} cores. OpenVINO f32, LATENCY, {threads} threads; "
        f"{args.blocks} fresh-compile blocks, order alternating. Command: `PYTHONPATH=. python "
        f"benchmarks/cpu/layout.py {' '.join(sys.argv[1:])}`.",
        "",
        f"Relus dropped vs kept, max |difference| over 4 images: ORT {exact['onnxruntime']}, "
        f"OpenVINO {exact['openvino']}.",
        "",
        "| file | Relu nodes | batch | wall ms | CPU ms per call | CPU vs quantize_static (range) |",
        "|---|---|---|---|---|---|",
    ]
    for batch, rows in doc["batches"].items():
        for k, r in rows.items():
            lo, hi = r["cpu_ratio_range"]
            relus = doc["onnx_ops"][k].get("Relu", 0)
            lines.append(
                f"| {k} | {relus} | {batch} | {r['wall_ms']:.1f} | {r['cpu_ms']:.1f} | "
                f"{r['cpu_ratio_vs_quantize_static']:.3f} ({lo:.3f}-{hi:.3f}) |"
            )
    lines += ["", "OpenVINO executable graphs (op:runtime precision -> count):", ""]
    for k, ops in doc["openvino_exec_graph"].items():
        lines.append(f"- {k}: " + ", ".join(f"{op} {c}" for op, c in ops.items()))
    atomic_write_json(args.out / f"layout-{slug}.json", doc)
    atomic_write_text(args.out / f"layout-{slug}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
