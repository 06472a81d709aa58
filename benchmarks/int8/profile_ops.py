#!/usr/bin/env python
"""Per-op-type kernel time of deploykit INT8 vs ``quantize_static`` on one family (ORT profiler).

    python benchmarks/int8/profile_ops.py googlenet --method mse --batch 32

A latency gap between two graphs that fuse to the same kernels is either noise or a kernel
that runs slower; ORT's profiler says which. Each variant runs in two sessions, in alternating
order, and the kernel times are averaged over both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CALIB_SPEC, calib_arrays, deploykit_int8, ort_quantize_static, save  # noqa: E402


def kernel_times(path: Path, x: np.ndarray, runs: int, threads: int, prefix: str) -> dict[str, float]:
    """Mean ms per call spent in each op type."""
    import onnxruntime as ort

    from deploykit.onnx_io import deployment_settings, session_options

    # the deployment's settings (spinning on); one session alive at a time, released on return
    so = session_options(**deployment_settings(threads).ort_kwargs(), profile_prefix=prefix)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(5):
        sess.run(None, {name: x})
    for _ in range(runs):
        sess.run(None, {name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            total[e["args"]["op_name"]] += e["dur"] / 1000.0 / (runs + 5)
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from deploykit.export import export_model
    from deploykit.reference import reference_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="dk-int8-prof-"))
    weights = reference_checkpoint(args.model, train_if_missing=False)
    art = export_model(args.model, weights=weights, out=tmp / "fp32", progress=False)
    calib = calib_arrays(art.data_config, CALIB_SPEC, limit=256)
    variants = {
        "deploykit": save(deploykit_int8(art.main_path, calib, args.method)[0], tmp / "dk.onnx"),
        "quantize_static": ort_quantize_static(art.main_path, calib, tmp / "qs.onnx"),
    }
    x = np.random.default_rng(0).standard_normal((args.batch, *art.data_config.input_size)).astype(np.float32)
    times: dict[str, dict[str, float]] = {k: defaultdict(float) for k in variants}
    for rnd, order in enumerate((list(variants), list(reversed(variants)))):
        for k in order:
            for op, ms in kernel_times(variants[k], x, args.runs, args.threads, str(tmp / f"{k}{rnd}")).items():
                times[k][op] += ms / 2
    for k, ops in times.items():
        top = ", ".join(f"{op} {ms:.2f}" for op, ms in sorted(ops.items(), key=lambda t: -t[1]))
        print(f"{k}: {sum(ops.values()):.2f} ms of kernel time per call ({top})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
