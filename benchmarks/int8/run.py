#!/usr/bin/env python
"""INT8 benchmark: deploykit's calibrators and Q/DQ placement against FP32 and ORT's quantize_static.

Two modes, each one process:

* accuracy (default): for every family's reference checkpoint (``deploykit.reference``), FP32 vs
  each calibrator's INT8 top-1 on the full Fashion-MNIST test split, the default recipe through
  the accuracy gate, ONNX Runtime's ``quantize_static`` given the same calibration images, ORT CPU
  latency (batch 1 and 32, 2 threads) and model size.
* ``--speed-only``: resnet50 at 224x224 with random weights (speed does not depend on weights):
  FP32 vs deploykit INT8 vs ``quantize_static`` at batch 1, variants interleaved round by round so
  a shared CPU's noise hits all of them alike.

Results: ``benchmarks/results/int8/<mode>-<machine>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FAMILY_MODELS = ["resnet18", "resnet50", "resnext50_32x4d", "densenet121", "googlenet", "inception_v3"]
CALIB_SPEC = "fashion-mnist:train[::117]"  # 513 images spread over the train split (never test)
VAL_SPEC = "fashion-mnist:test"
RESULTS = Path(__file__).resolve().parents[1] / "results" / "int8"


# ----------------------------------------------------------------------------------- helpers


def interleaved_latency(
    models: dict[str, Any],
    shape: tuple[int, ...],
    blocks: int,
    per_block: int,
    threads: int = 2,
    warmup: int = 3,
) -> dict[str, dict[str, Any]]:
    """Median/p90 ms per variant and the median of every block, timed as deployed.

    ``deploykit.harness.bench.benchmark_blocks``: alternating fresh-session blocks, one session
    alive at a time, each with the deployment's session settings (``deployment_settings``: ORT's
    thread spinning on, as the Predictor and ``serve`` run). Until issue #23 the variants' sessions
    were all kept alive side by side with spinning off, a configuration no deployment runs.
    """
    from deploykit.harness.bench import benchmark_blocks, deployment_runner

    runners = {k: deployment_runner(v, "onnxruntime", threads) for k, v in models.items()}
    timed = benchmark_blocks(runners, [shape[0]], blocks, per_block, warmup, machine={})
    out = {}
    for k, res in timed.items():
        b = res.batches[0]
        block_ms = b.round_p50_ms or []
        out[k] = {
            "median_ms": float(np.median(block_ms)),
            "p90_ms": float(np.percentile(block_ms, 90)),
            "min_ms": b.latency_ms.min,
            "samples": b.iterations,
            "block_medians_ms": block_ms,
        }
    return out


def timing_doc(args) -> dict[str, Any]:
    """How every latency in a result was timed (recorded beside the figures)."""
    from deploykit.harness.bench import timing_config

    return timing_config(args.threads, args.blocks, {1: args.per_block}, 3, {})


def calib_arrays(cfg, spec: str, limit: int | None = None) -> np.ndarray:
    from deploykit.data.specs import open_dataset
    from deploykit.data.transforms import iter_batches

    return np.concatenate([x for x, _ in iter_batches(open_dataset(spec), cfg, 64, limit=limit)])


def ort_quantize_static(
    fp32_path: Path,
    calib: np.ndarray,
    out: Path,
    per_channel: bool = True,
    weight_type: str = "QInt8",
    reduce_range: bool = False,
) -> Path:
    """ONNX Runtime's own static QDQ quantisation (u8 activations, s8 weights) on the same images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.it = iter([{name: calib[i : i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self.it, None)

    import onnx

    name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    pre = out.with_name(out.stem + "-pre.onnx")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        Reader(name),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=getattr(QuantType, weight_type),
        per_channel=per_channel,
        reduce_range=reduce_range,
    )
    return out


def deploykit_int8(
    fp32_path: Path,
    calib: np.ndarray,
    method: str,
    profile: str = "onnxruntime",
    stats=None,
    layout: str | None = None,
    keep: tuple[str, ...] = (),
):
    """deploykit's own pipeline, low level: (QDQ model, prepared FP32 model, stats)."""
    import onnx

    from deploykit.quantize import prepare_for_quantization
    from deploykit.quantize.calibrators import CalibConfig, calibrate
    from deploykit.quantize.placement import apply_plan, plan_placement, resolve_keep
    from deploykit.quantize.stats import collect_stats, iter_arrays

    model = prepare_for_quantization(onnx.load(str(fp32_path)))
    plan = plan_placement(model, profile, resolve_keep(model, keep) if keep else (), layout)
    if stats is None:
        stats = collect_stats(model, plan.stat_tensors, iter_arrays(calib, 32))
    th = calibrate(stats, CalibConfig(method), asymmetric=profile != "tensorrt")
    return apply_plan(model, plan, stats, th), model, stats


def save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def machine() -> dict[str, Any]:
    """The one machine description (CPU generation, ISA, VNNI), as every result records it."""
    from deploykit.machine import describe_machine

    return describe_machine()


def slug(m: dict[str, Any]) -> str:
    """Result file names come from the machine description: CPU generation and ISA included."""
    from deploykit.machine import machine_slug

    return machine_slug(m)


def write_outputs(doc: dict[str, Any], stem: str, markdown: str, plot) -> list[Path]:
    from deploykit._io import atomic_write_json, atomic_write_text

    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = [atomic_write_json(RESULTS / f"{stem}.json", doc), atomic_write_text(RESULTS / f"{stem}.md", markdown)]
    png = RESULTS / f"{stem}.png"
    plot(doc, png)
    paths.append(png)
    return paths


# -------------------------------------------------------------------------------- speed mode


def speed_variants(
    fp32: Path, calib: np.ndarray, tmp: Path, stem: str, want: list[str] | None = None
) -> dict[str, Path]:
    """Every INT8 layout worth timing against FP32 on a CPU, built from the same calibration images.

    deploykit: full-range weights (the VNNI layout), reduced 7-bit weights (the AVX2 layout, exact
    where vpmaddubsw would saturate), and the AVX2 layout with the stem conv kept in FP32 (3 input
    channels: the worst-shaped INT8 conv). ORT's quantize_static: its default (uint8 x int8), with
    reduced range, and uint8 x uint8 weights (U8U8 kernels, no int16 saturation). ``want`` keeps
    only the named ones (fp32 always); a file already in ``tmp`` is reused, not rebuilt.
    """
    stats: list[Any] = []

    def dk(key: str, layout: str, **kw: Any) -> Path:
        q, _, st = deploykit_int8(fp32, calib, "entropy", layout=layout, stats=stats[0] if stats else None, **kw)
        stats[:] = [st]
        return save(q, tmp / f"{stem}-{key}.onnx")

    recipes = {
        "dk_vnni": lambda: dk("dk_vnni", "vnni"),
        "dk_avx2": lambda: dk("dk_avx2", "avx2"),
        "dk_avx2_stem_fp32": lambda: dk("dk_avx2_stem_fp32", "avx2", keep=("first",)),
        "ort_s8": lambda: ort_quantize_static(fp32, calib, tmp / f"{stem}-ort_s8.onnx"),
        "ort_s8_reduced": lambda: ort_quantize_static(
            fp32, calib, tmp / f"{stem}-ort_s8_reduced.onnx", reduce_range=True
        ),
        "ort_u8u8": lambda: ort_quantize_static(fp32, calib, tmp / f"{stem}-ort_u8u8.onnx", weight_type="QUInt8"),
    }
    out = {"fp32": fp32}
    for key, build in recipes.items():
        if want and key not in want:
            continue
        done = tmp / f"{stem}-{key}.onnx"
        out[key] = done if done.is_file() else build()
    return out


def speed_only(args) -> dict[str, Any]:
    """FP32 against every INT8 layout, per model and batch, on this machine's ONNX Runtime."""
    import os

    import torch

    from deploykit.harness.significance import median_ratio_ci
    from deploykit.models.registry import create_model
    from deploykit.reference import get_recipe

    torch.set_num_threads(1)
    tmp = Path(args.files) if args.files else Path(tempfile.mkdtemp(prefix="dk-int8-speed-"))
    tmp.mkdir(parents=True, exist_ok=True)
    models = args.speed_models
    doc: dict[str, Any] = {
        "mode": "speed-only",
        "weights": "random (latency does not depend on them)",
        "threads": args.threads,
        "blocks": args.blocks,
        "per_block": args.per_block,
        "timing": timing_doc(args),
        "machine": machine(),
        "load_average_start": os.getloadavg()[0],
        "models": {},
    }
    for spec in models:
        # NAME@SIZE: ImageNet-shaped (1000 classes), batch 1; NAME: its Fashion-MNIST recipe size
        name, _, at = spec.partition("@")
        imagenet = bool(at)
        size = int(at) if imagenet else get_recipe(name).image_size
        model = create_model(name, num_classes=1000 if imagenet else 10).eval()
        shape = (3, size, size)
        fp32 = tmp / f"{name}-{size}-fp32.onnx"
        if not fp32.is_file():
            torch.onnx.export(
                model,
                (torch.zeros(1, *shape),),
                str(fp32),
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
            )
        calib = np.random.default_rng(0).normal(size=(args.calib_images, *shape)).astype(np.float32)
        variants = speed_variants(fp32, calib, tmp, f"{name}-{size}", args.variants)
        if args.prepare_only:
            continue
        rows: dict[str, Any] = {}
        for batch in [1] if imagenet else args.speed_batches:
            per_block = max(1, args.per_block // (5 if batch > 1 else 1))
            print(f"{name} {size}x{size} batch {batch}: {len(variants)} variants", file=sys.stderr, flush=True)
            lat = interleaved_latency(variants, (batch, *shape), args.blocks, per_block, args.threads)
            base = lat["fp32"]["median_ms"]
            rows[str(batch)] = {
                "latency": {
                    k: {kk: v[kk] for kk in ("median_ms", "p90_ms", "min_ms", "samples")} for k, v in lat.items()
                },
                "speedup_vs_fp32": {k: base / v["median_ms"] for k, v in lat.items()},
                "speedup_ci": {  # FP32 / variant, block by block
                    k: median_ratio_ci(lat["fp32"]["block_medians_ms"], v["block_medians_ms"]).to_dict()
                    for k, v in lat.items()
                    if k != "fp32"
                },
            }
        doc["models"][f"{name} {size}x{size}"] = {
            "input": list(shape),
            "batches": rows,
            "size_bytes": {k: Path(v).stat().st_size for k, v in variants.items()},
        }
    doc["load_average_end"] = os.getloadavg()[0]
    return doc


def speed_markdown(doc: dict[str, Any]) -> str:
    from deploykit.machine import machine_line

    lines = [
        "# INT8 speed: FP32 against every INT8 layout, ONNX Runtime CPU",
        "",
        f"Machine: {machine_line(doc['machine'])}. Timed as deployed: {doc['threads']} ORT threads, thread "
        f"spinning on, one session alive at a time, variants alternating in {doc['blocks']} fresh-session blocks. "
        f"Load average {doc['load_average_start']:.1f} at start, {doc['load_average_end']:.1f} at end "
        "(a shared machine: ratios inside one block are fair, absolute ms are not). Random weights.",
        "",
        "Speed-up = FP32 / variant (median of the per-block ratios, 95% interval over blocks). dk = deploykit "
        "(vnni: full-range weights; avx2: 7-bit weights; stem_fp32: first conv kept in FP32); "
        "ort = onnxruntime quantize_static (s8: default int8 weights; s8_reduced: reduce_range; u8u8: uint8 weights).",
        "",
    ]
    for name, m in doc["models"].items():
        for batch, row in m["batches"].items():
            lines += [
                f"## {name}, batch {batch}",
                "",
                "| variant | median ms | speed-up vs FP32 | interval | size MB |",
                "|---|---:|---:|---|---:|",
            ]
            for k, v in row["latency"].items():
                ci = row["speedup_ci"].get(k)
                interval = f"{ci['ci_low']:.2f}-{ci['ci_high']:.2f}" if ci else ""
                lines.append(
                    f"| {k} | {v['median_ms']:.2f} | {row['speedup_vs_fp32'][k]:.2f}x | {interval} | "
                    f"{m['size_bytes'][k] / 1e6:.1f} |"
                )
            lines.append("")
    return "\n".join(lines)


def speed_plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(n, b, row) for n, m in doc["models"].items() for b, row in m["batches"].items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for ax, (n, b, row) in zip(axes[0], panels):
        names = list(row["speedup_vs_fp32"])
        ax.bar(range(len(names)), [row["speedup_vs_fp32"][k] for k in names], color="tab:blue")
        ax.axhline(1.0, color="gray", lw=1)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{n}, batch {b}", fontsize=9)
        ax.set_ylabel("speed-up vs FP32")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- accuracy mode


def accuracy_mode(args) -> dict[str, Any]:
    from deploykit.harness.significance import median_ratio_ci
    from deploykit.quantize import GateFailedError, quantize_artifact
    from deploykit.quantize.calibrators import METHODS
    from deploykit.quantize.gate import predictions, top1

    try:
        from deploykit.reference import reference_checkpoint
    except ImportError:
        reference_checkpoint = None
        print("deploykit.reference is not available: no reference checkpoints to benchmark", file=sys.stderr)
    from deploykit.export import export_model

    rows, skipped = [], {}
    tmp = Path(tempfile.mkdtemp(prefix="dk-int8-acc-"))
    for name in args.models:
        weights = None
        if reference_checkpoint is not None:
            try:
                weights = reference_checkpoint(name, train_if_missing=False, progress=False)
            except Exception as e:  # noqa: BLE001 - report and move on to the next family
                if not args.allow_random:
                    skipped[name] = str(e)
                    print(f"skip {name}: {e}", file=sys.stderr)
                    continue
        elif not args.allow_random:
            skipped[name] = "deploykit.reference missing"
            continue
        print(f"== {name} ({'reference checkpoint' if weights else 'RANDOM weights: smoke run only'})", file=sys.stderr)
        over = {"image_size": tuple(args.image_size)} if args.image_size else None
        art = export_model(name, weights=weights, out=tmp / f"{name}-fp32", overrides=over, force=True, progress=False)
        cfg = art.data_config
        from deploykit.data.specs import open_dataset
        from deploykit.data.transforms import iter_batches

        calib = calib_arrays(cfg, args.calib)
        val = list(iter_batches(open_dataset(args.val), cfg, 64))
        fp32_top1 = top1(open_model(art.main_path), val, args.threads)
        row: dict[str, Any] = {
            "model": name,
            "weights": str(weights) if weights else "random",
            "fp32_top1": fp32_top1,
            "calibrators": {},
        }
        stats = None
        for meth in METHODS:
            q, _, stats = deploykit_int8(art.main_path, calib, meth, stats=stats)
            row["calibrators"][meth] = top1(q, val, args.threads)
        t0 = time.perf_counter()
        try:
            dk_art = quantize_artifact(
                art.path, args.calib, args.val, out=tmp / f"{name}-int8", force=True, threads=args.threads
            )
        except GateFailedError as e:  # a result, not a crash: record it and go on to the next family
            best = e.report.best
            row["default_recipe"] = {
                "seconds": time.perf_counter() - t0,
                "method": e.report.chosen,
                "top1": best.top1_final,
                "fallbacks": [f.layer for f in best.fallbacks],
                "passed": False,
                "error": str(e),
            }
            row["relative_top1"] = best.top1_final / fp32_top1 if fp32_top1 else None
            rows.append(row)
            print(f"{name}: {e}", file=sys.stderr)
            continue
        row["default_recipe"] = {
            "seconds": time.perf_counter() - t0,
            "method": dk_art.report.chosen,
            "top1": dk_art.report.best.top1_final,
            "fallbacks": [f.layer for f in dk_art.report.best.fallbacks],
            "passed": dk_art.report.passed,
        }
        qs = ort_quantize_static(art.main_path, calib, tmp / f"{name}-qs.onnx")
        # Per-image correctness of both INT8 models, for a paired test of their difference.
        fp_pred, labels = predictions(open_model(art.main_path), val, args.threads)
        dk_pred, _ = predictions(open_model(dk_art.artifact.main_path), val, args.threads)
        qs_pred, _ = predictions(open_model(qs), val, args.threads)
        row["ort_quantize_static_top1"] = float((qs_pred == labels).mean())
        row["vs_quantize_static"] = paired_comparison(dk_pred == labels, qs_pred == labels)
        # agreement with FP32's top-1: what quantisation alone changed, free of label noise
        row["fp32_agreement"] = {
            "deploykit_int8": float((dk_pred == fp_pred).mean()),
            "ort_quantize_static": float((qs_pred == fp_pred).mean()),
            **paired_comparison(dk_pred == fp_pred, qs_pred == fp_pred),
        }
        variants = {"fp32": art.main_path, "deploykit_int8": dk_art.artifact.main_path, "ort_quantize_static": qs}
        row["size_bytes"] = {k: Path(v).stat().st_size for k, v in variants.items()}
        row["latency"] = {}
        for b in (1, 32):
            lat = interleaved_latency(
                variants,
                (b, *cfg.input_size),
                args.blocks,
                args.per_block if b == 1 else max(2, args.per_block // 5),
                args.threads,
            )
            row["latency"][str(b)] = lat
            row.setdefault("latency_vs_quantize_static", {})[str(b)] = median_ratio_ci(
                lat["deploykit_int8"]["block_medians_ms"], lat["ort_quantize_static"]["block_medians_ms"]
            ).to_dict()
        row["relative_top1"] = row["default_recipe"]["top1"] / fp32_top1 if fp32_top1 else None
        rows.append(row)
        print(
            json.dumps(
                {k: row[k] for k in ("model", "fp32_top1", "calibrators", "default_recipe", "ort_quantize_static_top1")}
            ),
            file=sys.stderr,
        )
    return {
        "mode": "accuracy",
        "calibration": args.calib,
        "validation": args.val,
        "threads": args.threads,
        "timing": timing_doc(args),
        "machine": machine(),
        "models": rows,
        "skipped": skipped,
        "target": "INT8 top-1 >= 0.995 x FP32 on every family with the default recipe",
    }


def paired_comparison(a_ok: np.ndarray, b_ok: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test of deploykit's (a) against quantize_static's (b) per-image correctness."""
    from deploykit.harness.significance import mcnemar_exact

    t = mcnemar_exact(a_ok, b_ok)
    return {
        "deploykit_only_correct": t.a_only,
        "quantize_static_only_correct": t.b_only,
        "difference_images": t.difference,
        "mcnemar_p": round(t.p_value, 4),
    }


def open_model(path):
    import onnx

    return onnx.load(str(path))


def accuracy_markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# INT8 accuracy and latency on Fashion-MNIST",
        "",
        f"Machine: {m.get('cpu', m)}; ORT CPU, {doc['threads']} threads. Calibration {doc['calibration']}, "
        f"validation {doc['validation']}.",
        "",
        "| model | FP32 | max | percentile | entropy | mse | default recipe (fallbacks) | quantize_static |"
        " dk vs qs: images only dk / only qs right (McNemar p) | agrees with FP32 dk / qs (McNemar p) |"
        " b1 FP32 / dk / qs ms | b32 FP32 / dk / qs ms | size MB FP32 / dk / qs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["models"]:
        c = r["calibrators"]
        if "latency" not in r:  # the default recipe failed its gate: no INT8 artifact to time
            d = r["default_recipe"]
            lines.append(
                f"| {r['model']} | {r['fp32_top1']:.4f} | {c['max']:.4f} | {c['percentile']:.4f} | "
                f"{c['entropy']:.4f} | {c['mse']:.4f} | {d['top1']:.4f} {d['method']} "
                f"({len(d['fallbacks'])}) GATE FAILED | | | | | | |"
            )
            continue
        lat = {b: r["latency"][b] for b in ("1", "32")}

        def fmt(d):
            return " / ".join(f"{d[k]['median_ms']:.1f}" for k in ("fp32", "deploykit_int8", "ort_quantize_static"))

        size = " / ".join(f"{r['size_bytes'][k] / 1e6:.1f}" for k in ("fp32", "deploykit_int8", "ort_quantize_static"))
        d = r["default_recipe"]
        lines.append(
            f"| {r['model']} | {r['fp32_top1']:.4f} | {c['max']:.4f} | {c['percentile']:.4f} | "
            f"{c['entropy']:.4f} | {c['mse']:.4f} | {d['top1']:.4f} {d['method']} ({len(d['fallbacks'])}) | "
            f"{r['ort_quantize_static_top1']:.4f} | {_paired(r)} | {_agreement(r)} | {fmt(lat['1'])} | "
            f"{fmt(lat['32'])} | {size} |"
        )
    lines += ["", "Targets, per family (default recipe):", ""]
    for r in doc["models"]:
        d, rel = r["default_recipe"], r["relative_top1"]
        if "latency" not in r:
            lines.append(
                f"- {r['model']}: INT8/FP32 = {rel:.4f}: the default recipe failed its gate ({d.get('error', '')})."
            )
            continue
        vs = r.get("vs_quantize_static")
        acc = (
            "at least as accurate as quantize_static"
            if vs and vs["difference_images"] >= 0
            else f"{-vs['difference_images']} images behind quantize_static (McNemar p = {vs['mcnemar_p']}: "
            f"{'not ' if vs['mcnemar_p'] >= 0.05 else ''}a significant difference)"
            if vs
            else "no paired data"
        )
        agree = r.get("fp32_agreement")
        if agree:
            acc += (
                f"; agrees with FP32's top-1 on {agree['deploykit_int8']:.2%} of images against "
                f"quantize_static's {agree['ort_quantize_static']:.2%} (McNemar p = {agree['mcnemar_p']})"
            )
        speed = "; ".join(_speed(r, b) for b in ("1", "32"))
        lines.append(
            f"- {r['model']}: INT8/FP32 = {rel:.4f} ({'meets' if rel >= 0.995 else 'misses'} 0.995); {acc}; {speed}."
        )
    if doc["skipped"]:
        lines += ["", "Skipped (no reference checkpoint yet):", ""]
        lines += [f"- {k}: {v}" for k, v in doc["skipped"].items()]
    return "\n".join(lines) + "\n"


def _speed(r: dict[str, Any], batch: str) -> str:
    """'batch-1 latency 0.98x quantize_static's (96% CI 0.95-1.01 ...: no measurable difference)'."""
    p = r["latency_vs_quantize_static"][batch]
    return (
        f"batch-{batch} latency {p['median_ratio']:.2f}x quantize_static's "
        f"({p['coverage']:.0%} CI {p['ci_low']:.3f}-{p['ci_high']:.3f} over {p['rounds']} fresh sessions: "
        f"{p['verdict']})"
    )


def _agreement(r: dict[str, Any]) -> str:
    a = r.get("fp32_agreement")
    if not a:
        return "n/a"
    return f"{a['deploykit_int8']:.4f} / {a['ort_quantize_static']:.4f} (p={a['mcnemar_p']:.2f})"


def _paired(r: dict[str, Any]) -> str:
    vs = r.get("vs_quantize_static")
    if not vs:
        return "n/a"
    return f"{vs['deploykit_only_correct']} / {vs['quantize_static_only_correct']} (p={vs['mcnemar_p']:.2f})"


def accuracy_plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["models"]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows) + 2), 3.5))
    keys = ["max", "percentile", "entropy", "mse", "default", "quantize_static"]
    w = 0.8 / len(keys)
    for j, k in enumerate(keys):
        vals = []
        for r in rows:
            v = (
                r["default_recipe"]["top1"]
                if k == "default"
                else r.get("ort_quantize_static_top1", 0.0)
                if k == "quantize_static"
                else r["calibrators"][k]
            )
            vals.append(v / r["fp32_top1"] if r["fp32_top1"] else 0)
        ax.bar(np.arange(len(rows)) + j * w, vals, w, label=k)
    ax.axhline(0.995, color="red", lw=1, ls="--", label="gate 0.995")
    ax.set_xticks(np.arange(len(rows)) + 0.4 - w / 2)
    ax.set_xticklabels([r["model"] for r in rows], rotation=20)
    ax.set_ylabel("INT8 top-1 / FP32 top-1")
    ax.set_ylim(0.9, 1.01)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--speed-only",
        action="store_true",
        help="FP32 vs every INT8 layout: resnet50 224x224 batch 1, and --speed-models at their recipe size",
    )
    ap.add_argument(
        "--speed-models",
        nargs="+",
        default=["resnet50@224", "resnet18", "resnet50", "googlenet", "densenet121"],
        help="speed-only: NAME@SIZE (ImageNet-shaped, batch 1) or NAME (its Fashion-MNIST recipe size)",
    )
    ap.add_argument(
        "--speed-batches",
        type=int,
        nargs="+",
        default=[1, 32],
        help="speed-only: batch sizes for the Fashion-MNIST-sized models",
    )
    ap.add_argument("--models", nargs="+", default=FAMILY_MODELS)
    ap.add_argument("--calib", default=CALIB_SPEC)
    ap.add_argument("--val", default=VAL_SPEC)
    ap.add_argument("--calib-images", type=int, default=64, help="speed-only: calibration images")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--blocks",
        type=int,
        default=24,
        help="alternating fresh-session blocks per comparison, one session alive at a time (6 give a 95%% interval)",
    )
    ap.add_argument(
        "--per-block",
        type=int,
        default=20,
        help="timed calls per variant and block at batch 1 (a fifth of that at batch 32)",
    )
    ap.add_argument("--variants", nargs="+", default=None, help="speed-only: only these INT8 variants (and fp32)")
    ap.add_argument("--files", default=None, help="speed-only: keep the model files here and reuse them")
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="speed-only: build the files into --files and stop (run it under nice; time in a second run)",
    )
    ap.add_argument("--image-size", type=int, nargs=2, default=None, help="accuracy mode: override H W")
    ap.add_argument(
        "--allow-random",
        action="store_true",
        help="accuracy mode without reference checkpoints: random weights (smoke run, not a result)",
    )
    ap.add_argument("--tag", default=None, help="suffix for the result files")
    args = ap.parse_args(argv)
    if args.speed_only:
        doc = speed_only(args)
        if args.prepare_only:
            print(f"model files in {args.files or 'a temporary folder'}")
            return 0
        md, plot, stem = speed_markdown(doc), speed_plot, "speed"
    else:
        doc = accuracy_mode(args)
        if not doc["models"]:
            print(
                "no reference checkpoints found: nothing benchmarked (train them with "
                "`deploykit train-reference NAME`, or pass --allow-random for a smoke run)",
                file=sys.stderr,
            )
            return 1
        md, plot, stem = accuracy_markdown(doc), accuracy_plot, "accuracy"
    stem = f"{stem}-{slug(doc['machine'])}" + (f"-{args.tag}" if args.tag else "")
    for p in write_outputs(doc, stem, md, plot):
        print(p)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
