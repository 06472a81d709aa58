"""ONNX export time, TorchScript exporter vs dynamo exporter, for every zoo model.

    python benchmarks/export/export_times.py [--size 64] [--models resnet18,googlenet]

Both exporters run in this one process on the same randomly initialised model (10 classes,
batch dim dynamic, opset 18, one torch thread). One warm-up export per exporter on resnet18
comes first, so one-time start-up (the dynamo exporter's registry, onnxscript import) is
reported separately and not charged to the first model. Each export is checked: ONNX Runtime
vs PyTorch on 4 fixed-seed inputs must pass the FP32 parity gate. Writes
``results-<machine>.json`` and ``.md`` beside this file (``deploykit.machine.machine_slug``: CPU
generation and ISA), so runs on different machines never overwrite each other.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import torch

from deploykit._io import atomic_write_json, atomic_write_text
from deploykit.export.to_onnx import DEFAULT_OPSET, export_onnx
from deploykit.machine import describe_machine, machine_line, machine_slug
from deploykit.models import create_model, list_models
from deploykit.parity import check_gate, compare_outputs, parity_inputs

HERE = Path(__file__).parent
SIZES = {"inception_v3": 75}  # its minimum; everything else runs at --size
EXPORTERS = ("torchscript", "dynamo")


def one(name: str, size: int, exporter: str, tmp: Path) -> dict:
    """Export one model with one exporter; time it and check parity."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    cfg = model.data_config.replace(input_size=(3, size, size))
    path = tmp / f"{name}-{exporter}.onnx"
    row = {"model": name, "input": f"{size}x{size}", "exporter": exporter}
    try:
        info = export_onnx(model, cfg, path, exporter=exporter)
    except Exception as e:  # noqa: BLE001 - a failing exporter is a result here
        row.update(ok=False, error=str(e)[:300])
        return row
    x = parity_inputs(cfg, 4)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    res = compare_outputs(ref, sess.run(None, {"input": x})[0])
    fails = check_gate(res, "fp32")
    row.update(
        ok=not fails,
        seconds=round(info.seconds, 3),
        nodes=len(onnx.load(str(path), load_external_data=False).graph.node),
        max_rel=res.max_rel,
        top1=res.top1_agreement,
        gate_failures=fails,
    )
    path.unlink()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--models", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = args.models.split(",") if args.models else list_models()
    rows, warmup = [], {}
    load_before = os.getloadavg()[1]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for ex in EXPORTERS:
            start = time.perf_counter()
            one("resnet18", args.size, ex, tmp)
            warmup[ex] = round(time.perf_counter() - start, 3)
        for name in names:
            for ex in EXPORTERS:
                row = one(name, SIZES.get(name, args.size), ex, tmp)
                rows.append(row)
                print(row, flush=True)
    load_after = os.getloadavg()[1]
    load = f"load average (5 min) {load_before:.1f} at start, {load_after:.1f} at end"
    machine = describe_machine()
    totals = {ex: round(sum(r.get("seconds", 0) for r in rows if r["exporter"] == ex), 2) for ex in EXPORTERS}
    result = {
        "machine": machine,
        "load_average_5min": {"start": round(load_before, 2), "end": round(load_after, 2)},
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "opset": DEFAULT_OPSET,
        "first_call_seconds": warmup,
        "total_seconds": totals,
        "rows": rows,
    }
    out = Path(args.out)
    stem = f"results-{machine_slug(machine)}"
    atomic_write_json(out / f"{stem}.json", result)
    lines = [
        "# ONNX export time: TorchScript exporter vs dynamo exporter",
        "",
        f"Machine: {machine_line(machine)}, onnx {onnx.__version__}, {torch.get_num_threads()} torch thread; "
        f"{load}; opset {DEFAULT_OPSET}, dynamic batch, 10 classes.",
        "",
        "First export in the process (resnet18, includes exporter start-up): "
        + ", ".join(f"{ex} {s} s" for ex, s in warmup.items())
        + ".",
        "Seconds below are warm (start-up excluded); parity = ONNX Runtime vs PyTorch, FP32 gate.",
        "",
        "| model | input | torchscript s | dynamo s | ratio | torchscript nodes | dynamo nodes | parity ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["model"], r["exporter"]): r for r in rows}
    for name in names:
        ts, dy = by[(name, "torchscript")], by[(name, "dynamo")]
        ratio = f"{dy['seconds'] / ts['seconds']:.1f}x" if ts.get("seconds") and dy.get("seconds") else "-"
        ok = "yes" if ts["ok"] and dy["ok"] else f"ts={ts['ok']} dynamo={dy['ok']}"
        lines.append(
            f"| {name} | {ts['input']} | {ts.get('seconds', 'FAIL')} | "
            f"{dy.get('seconds', 'FAIL')} | {ratio} | {ts.get('nodes', '-')} | "
            f"{dy.get('nodes', '-')} | {ok} |"
        )
    lines += ["", "Total: " + ", ".join(f"{ex} {s} s" for ex, s in totals.items()) + "."]
    errors = [r for r in rows if not r["ok"]]
    if errors:
        lines += ["", "Failures:", ""] + [
            f"- {r['model']} / {r['exporter']}: {r.get('error') or r.get('gate_failures')}" for r in errors
        ]
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
