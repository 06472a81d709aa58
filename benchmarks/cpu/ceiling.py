#!/usr/bin/env python
"""How far INT8 can go over ORT FP32 on this CPU: the convolutions' arithmetic rate in each, per layer.

A whole-network INT8/FP32 speed-up is bounded by the ratio of the two runtimes' convolution
throughput, since the convolutions are almost all of the time. For one model (default ResNet-50 at
224x224, batch 1) this script:

* times ONNX Runtime (deployment settings: intra-op threads = usable cores, spinning on) with
  ORT's per-node profiler on the FP32 file and on deploykit's onnxruntime-profile INT8 file, and
  OpenVINO (LATENCY, f32 precision, static shape) on deploykit's INT8 file (``--profile
  openvino``) and on NNCF's IR, with OpenVINO's per-node counters;
* times ORT's own INT8 GEMM (``MatMulInteger``, uint8 x int8, 1024 x 1024 x 1024) against its FP32
  ``MatMul``: the rate ORT's integer kernels reach on this CPU outside a convolution;
* counts each convolution's multiply-accumulates from the ONNX shapes;
* reports per runtime: time in convolutions, time elsewhere, GMAC/s, and the speed-up the INT8
  convolutions have over ORT's FP32 ones, per stage (conv output size) and overall.

The per-node counters add a little overhead to both; the figures are ratios within one run.
Results: ``benchmarks/cpu/ceiling-<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "int8"))
NNCF_PYTHON = "/work/scratch/nncf/bin/python"


def conv_macs(fp32: Path, size: int) -> dict[str, tuple[int, int]]:
    """ONNX conv node name -> (multiply-accumulates at batch 1, output spatial size)."""
    import onnx
    from onnx import shape_inference

    m = onnx.load(str(fp32))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in m.graph.value_info}
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        w = inits[n.input[1]]
        y = shapes.get(n.output[0])
        if not y:
            continue
        out[n.name] = (int(np.prod(y[1:])) * int(np.prod(w[1:])), y[2])
    return out


def ort_profile(path: Path, x: np.ndarray, n: int, threads: int, tmp: Path) -> tuple[dict[str, float], float]:
    """Per-node mean time (ms) and median wall time of ORT FP32, as deployed (spinning on)."""
    from deploykit.onnx_io import deployment_settings, ort_session

    settings = deployment_settings(threads).ort_kwargs()
    sess = ort_session(path, **settings, profile_prefix=str(tmp / "ort"))
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3):
        sess.run(None, feed)
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        sess.run(None, feed)
        walls.append((time.perf_counter() - t0) * 1e3)
    trace = json.loads(Path(sess.end_profiling()).read_text())
    per: dict[str, list[float]] = collections.defaultdict(list)
    for ev in trace:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            per[ev["name"].removesuffix("_kernel_time")].append(ev["dur"] / 1e3)
    # the first 3 calls are warm-up: keep the last n of every node
    return {k: float(np.mean(v[-n:])) for k, v in per.items()}, float(np.median(walls))


def ov_profile(path: Path, x: np.ndarray, n: int, threads: int) -> tuple[dict[str, tuple[str, float]], float]:
    """Per-node (type, mean ms) and median wall time in OpenVINO, compiled for the batch fed."""
    from deploykit.openvino_io import ov_compile

    compiled = ov_compile(path, precision="f32", threads=threads, batch=x.shape[0], properties={"PERF_COUNT": True})
    req = compiled.create_infer_request()
    for _ in range(3):
        req.infer({0: x})
    acc: dict[str, float] = collections.Counter()
    types: dict[str, str] = {}
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        req.infer({0: x})
        walls.append((time.perf_counter() - t0) * 1e3)
        for p in req.profiling_info:
            acc[p.node_name] += p.real_time.total_seconds() * 1e3 / n
            types[p.node_name] = p.node_type
    return {k: (types[k], v) for k, v in acc.items()}, float(np.median(walls))


def ort_fused_outputs(fp32: Path) -> dict[str, str]:
    """Tensor -> the conv whose fused node ORT names after it.

    ORT's NCHWc transformer names a fused conv node after the last output it absorbed
    (``<tensor>_nchwc``): the conv's own output, or the Relu / residual Add / Relu after it.
    """
    import onnx

    g = onnx.load(str(fp32), load_external_data=False).graph
    consumers: dict[str, list] = collections.defaultdict(list)
    for n in g.node:
        for t in n.input:
            consumers[t].append(n)
    out: dict[str, str] = {}
    for n in g.node:
        if n.op_type != "Conv":
            continue
        t = n.output[0]
        out.setdefault(t, n.name)
        while len(consumers[t]) == 1 and consumers[t][0].op_type in ("Relu", "Add"):
            t = consumers[t][0].output[0]
            out.setdefault(t, n.name)
    return out


def ort_conv_name(node: str, fused: dict[str, str]) -> str | None:
    base = node.removesuffix("_nchwc")
    return fused.get(base) or fused.get(node)


def ort_int8_conv_name(node: str, convs: dict[str, Any]) -> str | None:
    """ORT names a fused QLinearConv after the ONNX conv with a ``_token_N`` suffix."""
    base = re.sub(r"_token_\d+$", "", node)
    return base if base in convs else None


def ort_gemm_rates(time_one: Any, threads: int, n: int = 1024, calls: int = 30) -> dict[str, float]:
    """GMAC/s of ORT's MatMulInteger (uint8 x int8) and FP32 MatMul on an n x n x n product,
    B constant (pre-packed), timed by ``run.py``'s ``time_one``: one session alive at a time,
    deployment settings."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    b8 = rng.integers(-127, 128, (n, n), dtype=np.int8)
    a8 = rng.integers(0, 256, (n, n), dtype=np.uint8)
    rates = {}
    for key, op, a, b, out in (
        ("matmul_integer_u8s8", "MatMulInteger", a8, b8, TensorProto.INT32),
        ("matmul_fp32", "MatMul", a8.astype(np.float32), b8.astype(np.float32), TensorProto.FLOAT),
    ):
        dtype = helper.np_dtype_to_tensor_dtype(a.dtype)
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])],
            key,
            [helper.make_tensor_value_info("a", dtype, [n, n])],
            [helper.make_tensor_value_info("y", out, [n, n])],
            [numpy_helper.from_array(b, "b")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        ms, _ = time_one("ort", model, None, a, calls, threads)
        rates[key] = n**3 / 1e9 / (ms / 1e3)
    return rates


def ov_conv_name(node: str, convs: dict[str, Any]) -> str | None:
    """OpenVINO keeps the ONNX name and appends ``/WithoutBiases`` (and fused ops)."""
    base = node.split("/WithoutBiases")[0]
    return base if base in convs else None


def summarise(times: dict[str, float], macs: dict[str, tuple[int, int]]) -> dict[str, Any]:
    conv_ms = sum(v for k, v in times.items() if k in macs)
    total_macs = sum(m for k, (m, _) in macs.items() if k in times)
    by_stage: dict[int, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for k, (m, hw) in macs.items():
        if k in times:
            by_stage[hw][0] += m
            by_stage[hw][1] += times[k]
    return {
        "conv_ms": conv_ms,
        "other_ms": sum(v for k, v in times.items() if k not in macs),
        "gmacs": total_macs / 1e9,
        "gmac_per_s": total_macs / 1e9 / (conv_ms / 1e3) if conv_ms else None,
        "convs_seen": sum(k in times for k in macs),
        "by_stage": {str(hw): {"gmacs": m / 1e9, "ms": ms} for hw, (m, ms) in sorted(by_stage.items(), reverse=True)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50@224")
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (each profiles every runtime once)")
    ap.add_argument("--nncf-python", default=NNCF_PYTHON)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    import importlib.util

    from deploykit._io import atomic_write_json, atomic_write_text
    from deploykit.machine import describe_machine, machine_line, machine_slug, usable_cores

    spec = importlib.util.spec_from_file_location("cpu_run", HERE / "run.py")
    cpu_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cpu_run)  # type: ignore[union-attr]

    name, _, size_text = args.model.partition("@")
    size = int(size_text or 224)
    threads = usable_cores()
    machine = describe_machine()
    tmp = Path(tempfile.mkdtemp(prefix="dk-ceiling-"))
    files = cpu_run.build_files(name, size, tmp, 32, args.nncf_python)
    macs = conv_macs(files["fp32"], size)
    fused = ort_fused_outputs(files["fp32"])
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)

    rounds: list[dict[str, Any]] = []
    loads = []
    for r in range(args.rounds):
        row: dict[str, Any] = {}
        order = ["ort_fp32", "ort_dk_int8", "ov_dk_ov_int8", "ov_nncf_int8"]
        for key in order if r % 2 == 0 else order[::-1]:
            if key.startswith("ort_"):
                per, wall = ort_profile(files["fp32" if key == "ort_fp32" else "dk"], x, args.calls, threads, tmp)
                times = {}
                for node, ms in per.items():
                    c = ort_conv_name(node, fused) if key == "ort_fp32" else ort_int8_conv_name(node, macs)
                    times[c or node] = times.get(c or node, 0.0) + ms
            else:
                if key == "ov_nncf_int8" and "nncf" not in files:
                    continue
                per_ov, wall = ov_profile(files["dk_ov" if key == "ov_dk_ov_int8" else "nncf"], x, args.calls, threads)
                times = {}
                for node, (_, ms) in per_ov.items():
                    c = ov_conv_name(node, macs)
                    times[c or node] = times.get(c or node, 0.0) + ms
            row[key] = {"wall_ms": wall, **summarise(times, macs)}
        loads.append(os.getloadavg()[0])
        rounds.append(row)

    def med(key: str, field: str) -> float:
        return float(np.median([r[key][field] for r in rounds if key in r]))

    keys = [k for k in ("ort_fp32", "ort_dk_int8", "ov_dk_ov_int8", "ov_nncf_int8") if k in rounds[0]]
    gemm = ort_gemm_rates(cpu_run.time_one, threads)
    doc = {
        "machine": machine,
        "model": f"{name} {size}x{size}",
        "threads": threads,
        "calls": args.calls,
        "rounds": rounds,
        "load_averages": loads,
        "ort_gemm_gmac_per_s": gemm,
        "command": "PYTHONPATH=. python benchmarks/cpu/ceiling.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_json(args.out / f"ceiling-{machine_slug(machine)}.json", doc)
    lines = [
        f"# Convolution throughput, INT8 vs FP32: {name} {size}x{size}, batch 1 ({machine_slug(machine)})",
        "",
        f"Machine: {machine_line(machine)}. Load average {min(loads):.1f}-{max(loads):.1f} on "
        f"{machine['usable_cores']} cores. {args.rounds} alternating rounds x {args.calls} profiled calls; "
        f"medians over rounds. Command: `{doc['command']}`.",
        "",
        "| runtime, file | wall ms | conv ms | other ms | conv GMAC/s | conv speed-up vs ORT FP32 | wall speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    base_conv, base_wall = med("ort_fp32", "conv_ms"), med("ort_fp32", "wall_ms")
    for k in keys:
        lines.append(
            f"| {k} | {med(k, 'wall_ms'):.2f} | {med(k, 'conv_ms'):.2f} | {med(k, 'other_ms'):.2f} | "
            f"{med(k, 'gmac_per_s'):.0f} | {base_conv / med(k, 'conv_ms'):.2f}x | "
            f"{base_wall / med(k, 'wall_ms'):.2f}x |"
        )
    lines += [
        "",
        f"ORT's own INT8 GEMM outside a convolution (MatMulInteger, uint8 x int8, 1024^3, constant B): "
        f"{gemm['matmul_integer_u8s8']:.0f} GMAC/s, against {gemm['matmul_fp32']:.0f} GMAC/s for its FP32 MatMul "
        f"({gemm['matmul_integer_u8s8'] / gemm['matmul_fp32']:.1f}x).",
    ]
    lines += ["", "Per stage (conv output size): ms in convolutions, and INT8 speed-up over ORT FP32 there.", ""]
    stages = list(rounds[0]["ort_fp32"]["by_stage"])
    lines.append("| output HxW | GMAC | " + " | ".join(f"{k} ms" for k in keys) + " | OpenVINO dk INT8 speed-up |")
    lines.append("|---|---|" + "---|" * len(keys) + "---|")
    for st in stages:
        ms = {k: float(np.median([r[k]["by_stage"][st]["ms"] for r in rounds if k in r])) for k in keys}
        g = rounds[0]["ort_fp32"]["by_stage"][st]["gmacs"]
        lines.append(
            f"| {st}x{st} | {g:.3f} | "
            + " | ".join(f"{ms[k]:.2f}" for k in keys)
            + f" | {ms['ort_fp32'] / ms['ov_dk_ov_int8']:.2f}x |"
        )
    lines.append("")
    atomic_write_text(args.out / f"ceiling-{machine_slug(machine)}.md", "\n".join(lines))
    print("\n".join(lines))
    subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
