#!/usr/bin/env python
"""CPU runtimes side by side: ONNX Runtime and OpenVINO on the same FP32 and INT8 files.

For each headline model (seeded weights, 1000 classes; speed does not depend on the weights) at
224x224 (Inception-v3 at 299), batch 1 and 8, in one process:

* ORT FP32, ORT with deploykit's two INT8 files (``--profile onnxruntime`` and ``--profile
  openvino``), ORT with ``quantize_static``'s INT8 file;
* OpenVINO f32 and bf16 (bf16 only where the CPU has it natively) on the FP32 file;
* OpenVINO with deploykit's two INT8 files and with quantize_static's (f32 for the layers left in float);
* OpenVINO's own INT8 path, NNCF post-training quantisation (run from a scratch venv, never a
  deploykit dependency) on the same calibration images: the peer to beat.

Timing is what deploys: one session / compiled model alive at a time, built the way the runtime
builds it (ORT: ``deploykit.onnx_io.ort_session``, intra-op threads = usable cores, spinning on;
OpenVINO: ``deploykit.openvino_io.ov_compile``, LATENCY hint, threads = usable cores, explicit
precision, compiled for the static batch it is fed, as the runner and Predictor compile),
fresh-session blocks with the variant order alternating block by block. Each figure is the median
over blocks of the per-block median; ratios vs ORT FP32 are taken within each block.

Results: ``benchmarks/cpu/results-<machine>.{json,md}``, written after every model.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "int8"))  # deploykit_int8 / ort_quantize_static helpers
MODELS = ["resnet50@224", "resnext50_32x4d@224", "densenet121@224", "googlenet@224", "inception_v3@299"]
NNCF_PYTHON = "/work/scratch/nncf/bin/python"
VARIANTS = [  # name, runtime, file, OpenVINO precision
    ("ort_fp32", "ort", "fp32", None),
    ("ort_dk_int8", "ort", "dk", None),
    ("ort_qs_int8", "ort", "qs", None),
    ("ort_dk_ov_int8", "ort", "dk_ov", None),
    ("ov_f32", "ov", "fp32", "f32"),
    ("ov_bf16", "ov", "fp32", "bf16"),
    ("ov_dk_int8", "ov", "dk", "f32"),
    ("ov_dk_ov_int8", "ov", "dk_ov", "f32"),
    ("ov_qs_int8", "ov", "qs", "f32"),
    ("ov_nncf_int8", "ov", "nncf", "f32"),
]


# deploykit's INT8 paths: the onnxruntime-profile file in either runtime, the openvino-profile one in either
DEPLOYKIT = ("ort_dk_int8", "ort_dk_ov_int8", "ov_dk_int8", "ov_dk_ov_int8")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)


def build_files(name: str, size: int, tmp: Path, calib_n: int, nncf_python: str) -> dict[str, Path]:
    """FP32 export and the three INT8 files, all calibrated on the same images."""
    import run as int8bench  # benchmarks/int8/run.py
    import torch

    from deploykit.data.config import DataConfig
    from deploykit.models.registry import create_model
    from deploykit.parity import parity_inputs

    torch.manual_seed(0)
    model = create_model(name, num_classes=1000).eval()
    fp32 = tmp / f"{name}-fp32.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(fp32),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
    )
    cfg = DataConfig(input_size=(3, size, size), num_classes=1000)
    calib = parity_inputs(cfg, calib_n, seed=1)  # smooth image-like inputs, ImageNet-normalised
    np.save(tmp / f"{name}-calib.npy", calib)
    files = {"fp32": fp32}
    q, _, _ = int8bench.deploykit_int8(fp32, calib, "entropy")
    files["dk"] = int8bench.save(q, tmp / f"{name}-dk.onnx")
    q, _, _ = int8bench.deploykit_int8(fp32, calib, "entropy", profile="openvino")
    files["dk_ov"] = int8bench.save(q, tmp / f"{name}-dk_ov.onnx")
    files["qs"] = int8bench.ort_quantize_static(fp32, calib, tmp / f"{name}-qs.onnx")
    out = tmp / f"{name}-nncf.xml"
    proc = subprocess.run(
        [nncf_python, str(HERE / "nncf_ptq.py"), str(fp32), str(tmp / f"{name}-calib.npy"), str(out)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        log(f"NNCF failed for {name}: {proc.stderr.strip().splitlines()[-1:]}")
    else:
        files["nncf"] = out
    return files


def noisy(loads: list[float], threads: int) -> bool:
    """Whether other work shared the cores: the run's own threads (one per core, spinning) already
    put the load average near the core count, so only load beyond 1.5x the cores says so."""
    return max(loads) > 1.5 * threads


def time_one(runtime: str, path: Path, precision: str | None, x: np.ndarray, n: int, threads: int):
    """Build one session / compiled model, warm it, time n calls, release it."""
    if runtime == "ort":
        from deploykit.onnx_io import ort_session

        sess = ort_session(path, threads=threads, spin=True)
        feed = {sess.get_inputs()[0].name: x}
        call = lambda: sess.run(None, feed)  # noqa: E731
        config = {"runtime": "onnxruntime", "intra_op_threads": threads, "spinning": True, "precision": "file"}
    else:
        from deploykit.openvino_io import compiled_config, ov_compile

        # a static compile at the batch fed (an IR is reshaped, an ONNX file converted at that shape)
        sess = ov_compile(path, precision=precision, threads=threads, hint="LATENCY", batch=x.shape[0])
        req = sess.create_infer_request()
        call = lambda: req.infer({0: x})  # noqa: E731
        config = {"runtime": "openvino", **compiled_config(sess)}
    for _ in range(2):
        call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), config  # the session dies with this frame


def measure(files, variants, shape, batch, blocks, n, threads):
    x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    per: dict[str, list[float]] = {v[0]: [] for v in variants}
    ratios: dict[str, list[float]] = {v[0]: [] for v in variants}
    configs: dict[str, Any] = {}
    loads = []
    for b in range(blocks):
        order = variants if b % 2 == 0 else variants[::-1]
        block = {}
        for name, runtime, file, prec in order:
            block[name], configs[name] = time_one(runtime, files[file], prec, x, n, threads)
            gc.collect()  # released before the next one is built: one alive at a time
        loads.append(os.getloadavg()[0])
        for name in block:
            per[name].append(block[name])
            ratios[name].append(block["ort_fp32"] / block[name])
    out = {}
    for name, *_ in variants:
        out[name] = {
            "median_ms": float(np.median(per[name])),
            "block_medians_ms": per[name],
            "speedup_vs_ort_fp32": float(np.median(ratios[name])),
            "speedup_range": [float(min(ratios[name])), float(max(ratios[name]))],
            "config": configs[name],
        }
    return out, loads


def markdown(doc: dict[str, Any]) -> str:
    from deploykit.machine import machine_line

    lines = [
        f"# CPU runtimes: {doc['machine_slug']}",
        "",
        f"Machine: {machine_line(doc['machine'])}; openvino {doc['versions'].get('openvino')}, "
        f"nncf {doc['versions'].get('nncf')}.",
        f"Load average (1 min) during the run: {doc['load_min']:.1f}-{doc['load_max']:.1f} on "
        f"{doc['machine']['usable_cores']} cores, the run's own threads included"
        + (" (**noisy: shared machine**)" if doc["noisy"] else "")
        + ".",
        f"Config: {doc['config_line']}. Blocks: {doc['blocks']} (fresh session per variant per block, order "
        f"alternating), {doc['calls']} timed calls per block. Command: `{doc['command']}`.",
        "",
        "Median latency (ms) and speed-up vs ORT FP32 (median of per-block ratios, range over blocks).",
        "",
    ]
    names = [v[0] for v in VARIANTS]
    for model, entry in doc["models"].items():
        lines += [f"## {model}", "", "| variant | " + " | ".join(f"batch {b}" for b in entry["batches"]) + " |"]
        lines.append("|---|" + "---|" * len(entry["batches"]))
        for name in names:
            cells = []
            for res in entry["batches"].values():
                r = res.get(name)
                if r is None:
                    cells.append("n/a")
                    continue
                lo, hi = r["speedup_range"]
                cells.append(f"{r['median_ms']:.1f} ms, {r['speedup_vs_ort_fp32']:.2f}x ({lo:.2f}-{hi:.2f})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for b, res in entry["batches"].items():
            dk = {k: res[k]["speedup_vs_ort_fp32"] for k in DEPLOYKIT if k in res}
            if dk:
                best = max(dk, key=dk.get)
                peer = res.get("ov_nncf_int8", {}).get("speedup_vs_ort_fp32")
                vs = f"; NNCF INT8 {peer:.2f}x" if peer else ""
                lines.append(f"\nBatch {b}: deploykit's best CPU path {best} {dk[best]:.2f}x ORT FP32{vs}.")
        lines.append("")
    lines += [
        "Variants: ort_* run in ONNX Runtime, ov_* in OpenVINO. fp32 = the exported file; dk_int8 = "
        "deploykit's onnxruntime-profile Q/DQ file; dk_ov_int8 = deploykit's openvino-profile Q/DQ file; "
        "qs_int8 = ORT quantize_static (QDQ, u8/s8 per channel, MinMax); nncf_int8 = NNCF quantize() (default "
        "preset) to OpenVINO IR. Every INT8 path calibrates on the same images (fixed-seed smooth synthetic "
        "images, ImageNet-normalised). OpenVINO compiles each file for the static batch it runs. Weights are "
        "seeded (not trained): top-1 is in accuracy-<machine>.md (trained checkpoints).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS, help="NAME@SIZE")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--calls", type=int, default=8, help="timed calls per block at batch 1 (batch 8: a quarter)")
    ap.add_argument("--calib", type=int, default=32, help="calibration images")
    ap.add_argument("--nncf-python", default=NNCF_PYTHON)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--tag", default="", help="suffix of the result files (a focused rerun keeps the full run's)")
    args = ap.parse_args()

    from importlib.metadata import version

    from deploykit._io import atomic_write_json, atomic_write_text
    from deploykit.machine import bf16_refusal, describe_machine, machine_slug, usable_cores

    threads = usable_cores()
    machine = describe_machine()
    slug = machine_slug(machine)
    variants = [v for v in VARIANTS if not (v[3] == "bf16" and bf16_refusal())]
    nncf_v = subprocess.run(
        [args.nncf_python, "-c", "import nncf; print(nncf.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    doc: dict[str, Any] = {
        "machine": machine,
        "machine_slug": slug,
        "versions": {"onnxruntime": version("onnxruntime"), "openvino": version("openvino"), "nncf": nncf_v or None},
        "threads": threads,
        "config_line": f"ORT intra-op threads {threads}, spinning on; OpenVINO LATENCY hint, "
        f"{threads} inference threads, 1 stream, precision explicit (f32 unless bf16)",
        "blocks": args.blocks,
        "calls": args.calls,
        "command": "PYTHONPATH=. "
        + (f"nice -n {os.nice(0)} " if os.nice(0) else "")
        + "python benchmarks/cpu/run.py "
        + " ".join(sys.argv[1:]),
        "bf16": None if not bf16_refusal() else bf16_refusal(),
        "models": {},
    }
    loads = [os.getloadavg()[0]]
    tmp = Path(tempfile.mkdtemp(prefix="dk-cpu-bench-"))
    for spec in args.models:
        name, _, size_text = spec.partition("@")
        size = int(size_text or 224)
        log(f"{name} {size}: export + quantise")
        files = build_files(name, size, tmp, args.calib, args.nncf_python)
        vs = [v for v in variants if v[2] in files]
        entry: dict[str, Any] = {"input": [3, size, size], "batches": {}}
        for batch in args.batches:
            n = args.calls if batch == 1 else max(2, args.calls // 4)
            log(f"{name} batch {batch}: {len(vs)} variants x {args.blocks} blocks x {n} calls")
            res, block_loads = measure(files, vs, (3, size, size), batch, args.blocks, n, threads)
            loads += block_loads
            entry["batches"][str(batch)] = res
        entry["size_bytes"] = {k: Path(p).stat().st_size for k, p in files.items()}
        doc["models"][f"{name} {size}x{size}"] = entry
        doc["load_min"], doc["load_max"] = min(loads), max(loads)
        doc["load_averages"] = loads
        doc["noisy"] = noisy(loads, threads)
        stem = f"results-{slug}" + (f"-{args.tag}" if args.tag else "")
        atomic_write_json(args.out / f"{stem}.json", doc)
        atomic_write_text(args.out / f"{stem}.md", markdown(doc))
        log(f"{name}: written")
        for f in tmp.glob(f"{name}-*"):
            f.unlink()


if __name__ == "__main__":
    main()
