#!/usr/bin/env python
"""Top-1 of each INT8 path of benchmarks/cpu on a labelled set: deploykit (both CPU profiles), quantize_static, NNCF.

Seeded weights at 224 give meaningless top-1, so this scores trained Fashion-MNIST checkpoints
(``<ckpt-dir>/<model>.safetensors``, e.g. the short checkpoints of benchmarks/int8_trt) at their
own input size. Calibration: ``fashion-mnist:train[::235]`` (256 images spread over the train
split), the same array for every INT8 path; scoring: the first ``--limit`` test images.
deploykit's file is scored in both runtimes (ORT and OpenVINO f32), quantize_static's in ORT and
NNCF's IR in OpenVINO (f32 for float layers), next to the FP32 file in ORT.

Results: ``benchmarks/cpu/accuracy-<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "int8"))
CALIB = "fashion-mnist:train[::235]"
VAL = "fashion-mnist:test"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt-dir", type=Path, default=Path("/work/scratch/ckpt"))
    ap.add_argument("--models", nargs="+", default=["resnet50"])
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--nncf-python", default="/work/scratch/nncf/bin/python")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--merge", action="store_true", help="keep the models already in this machine's results file")
    args = ap.parse_args()

    import run as int8bench  # benchmarks/int8/run.py
    import torch

    from deploykit._io import atomic_write_json, atomic_write_text
    from deploykit.data.specs import open_dataset
    from deploykit.data.transforms import iter_batches
    from deploykit.machine import describe_machine, machine_slug, usable_cores
    from deploykit.models.registry import get_spec
    from deploykit.models.weights import load_model
    from deploykit.onnx_io import ort_session
    from deploykit.openvino_io import ov_compile
    from deploykit.quantize.recipes import recipe_for

    machine = describe_machine()
    slug = machine_slug(machine)
    tmp = Path(tempfile.mkdtemp(prefix="dk-cpu-acc-"))
    doc: dict[str, Any] = {
        "machine": machine,
        "calibration": CALIB,
        "validation": f"{VAL}[:{args.limit}]",
        "load_average_start": os.getloadavg()[0],
        "models": {},
    }
    previous = args.out / f"accuracy-{slug}.json"
    if args.merge and previous.is_file():
        import json

        old = json.loads(previous.read_text())
        doc["models"] = old.get("models", {})
        doc["load_average_start"] = min(doc["load_average_start"], old.get("load_average_start", 99.0))
    threads = usable_cores()
    for name in args.models:
        ckpt = args.ckpt_dir / f"{name}.safetensors"
        if not ckpt.is_file():
            print(f"{name}: no checkpoint {ckpt}; skipped", file=sys.stderr)
            continue
        model = load_model(name, weights=str(ckpt)).eval()
        cfg = model.data_config
        fp32 = tmp / f"{name}-fp32.onnx"
        torch.onnx.export(
            model,
            (torch.zeros(1, *cfg.input_size),),
            str(fp32),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
        calib = np.concatenate([x for x, _ in iter_batches(open_dataset(CALIB), cfg, 64)])
        np.save(tmp / "calib.npy", calib)
        # the calibrator deploykit quantize uses for this family by default (its shipped recipe)
        method = recipe_for(name, get_spec(name).family).method
        q, _, _ = int8bench.deploykit_int8(fp32, calib, method)
        dk = int8bench.save(q, tmp / f"{name}-dk.onnx")
        q, _, _ = int8bench.deploykit_int8(fp32, calib, method, profile="openvino")
        dk_ov = int8bench.save(q, tmp / f"{name}-dk_ov.onnx")
        qs = int8bench.ort_quantize_static(fp32, calib, tmp / f"{name}-qs.onnx")
        nncf_xml = tmp / f"{name}-nncf.xml"
        subprocess.run(
            [args.nncf_python, str(HERE / "nncf_ptq.py"), str(fp32), str(tmp / "calib.npy"), str(nncf_xml)],
            check=True,
            capture_output=True,
        )
        xs, ys = zip(*iter_batches(open_dataset(VAL), cfg, 100, limit=args.limit))
        labels = np.concatenate(ys)

        def ort_pred(path, xs=xs):
            s = ort_session(path, threads=threads)
            return np.concatenate([np.argmax(s.run(None, {"input": x})[0], 1) for x in xs])

        def ov_pred(path, xs=xs):
            # static compiles, one per batch size fed (the last batch may be short), as deployed
            compiled: dict[int, Any] = {}
            for n in sorted({x.shape[0] for x in xs}):
                compiled[n] = ov_compile(path, precision="f32", threads=threads, batch=n)
            return np.concatenate([np.argmax(compiled[x.shape[0]]({0: x})[0], 1) for x in xs])

        preds = {
            "ort_fp32": ort_pred(fp32),
            "ort_dk_int8": ort_pred(dk),
            "ov_dk_int8": ov_pred(dk),
            "ort_dk_ov_int8": ort_pred(dk_ov),
            "ov_dk_ov_int8": ov_pred(dk_ov),
            "ort_qs_int8": ort_pred(qs),
            "ov_qs_int8": ov_pred(qs),
            "ov_nncf_int8": ov_pred(nncf_xml),
        }
        doc["models"][name] = {
            "checkpoint": str(ckpt),
            "deploykit_method": method,
            "input": list(cfg.input_size),
            "top1": {k: float((p == labels).mean()) for k, p in preds.items()},
            "agreement_with_fp32": {k: float((p == preds["ort_fp32"]).mean()) for k, p in preds.items()},
            "images": int(len(labels)),
        }
        print(name, doc["models"][name]["top1"], file=sys.stderr, flush=True)
    doc["load_average_end"] = os.getloadavg()[0]
    lines = [
        f"# INT8 top-1 per path: {slug}",
        "",
        f"Trained Fashion-MNIST checkpoints at their own input size; calibration {CALIB} (same images for "
        f"every INT8 path); scored on {doc['validation']}. Command: `PYTHONPATH=. python "
        f"benchmarks/cpu/accuracy.py {' '.join(sys.argv[1:])}`.",
        "",
        "| model | input | deploykit calibrator | ORT FP32 | deploykit onnxruntime profile: ORT / OpenVINO | "
        "deploykit openvino profile: "
        "ORT / OpenVINO | quantize_static: ORT / OpenVINO | NNCF: OpenVINO |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in doc["models"].items():
        t = r["top1"]
        pairs = [("ort_fp32",), ("ort_dk_int8", "ov_dk_int8"), ("ort_dk_ov_int8", "ov_dk_ov_int8")]
        pairs += [("ort_qs_int8", "ov_qs_int8"), ("ov_nncf_int8",)]
        cells = " | ".join(" / ".join(f"{t[k]:.2%}" if k in t else "n/a" for k in ks) for ks in pairs)
        lines.append(f"| {name} | {'x'.join(map(str, r['input']))} | {r.get('deploykit_method', '?')} | {cells} |")
    ckpts = ", ".join(r["checkpoint"] for r in doc["models"].values())
    lines += ["", f"Checkpoints: {ckpts} (see the README there)."]
    atomic_write_json(args.out / f"accuracy-{slug}.json", doc)
    atomic_write_text(args.out / f"accuracy-{slug}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
