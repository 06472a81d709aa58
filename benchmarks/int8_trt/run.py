#!/usr/bin/env python
"""deploykit's TensorRT-profile INT8 against NVIDIA ModelOpt, same FP32 exports, same calibration images.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/int8_trt/run.py --ckpt-dir /work/scratch/ckpt --tag after

For every family with a checkpoint in ``--ckpt-dir`` (``<model>.safetensors``):

1. ``deploykit export`` writes the FP32 artifact both tools start from.
2. The first 512 images of ``fashion-mnist:train`` go through deploykit's own preprocessing
   (``deploykit.data``) into one array; ModelOpt calibrates on that array, deploykit on the spec
   ``fashion-mnist:train[:512]``, and the script checks that the sha256 deploykit's report records
   for its calibration data is the array's.
3. ModelOpt (``modelopt.onnx.quantization.quantize``, in its own scratch venv, on a copy) with
   ``calibration_method`` max and entropy, ``high_precision_dtype`` fp32; then fp16 with the
   better of the two methods.
4. ``deploykit quantize --profile tensorrt`` through the CLI, wall time measured, its accuracy gate
   on held-out training images (``--val``, never the test split); again with
   ``--high-precision fp16`` when the CLI has that option.
5. Every model scored on ONNX Runtime CPU on the full Fashion-MNIST test split; exact McNemar test
   (``deploykit.harness.significance``) of deploykit against the better ModelOpt variant; Q/DQ
   layout counts (QuantizeLinear nodes, Add / Concat inputs fed by a DequantizeLinear).

Results: ``benchmarks/int8_trt/results-<tag>-<machine>.{json,md,png}``, rewritten after each family.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
FAMILIES = ["resnet50", "resnext50_32x4d", "densenet121", "googlenet", "inception_v3"]
CALIB_SPEC = "fashion-mnist:train[:512]"
VAL_SPEC = "fashion-mnist:train[50000:]"  # held out: the checkpoints trained on the first 10-12k images
TEST_SPEC = "fashion-mnist:test"
MODELOPT_PY = Path("/work/scratch/modelopt/bin/python")
NO_OPTION = "this deploykit has no quantize --high-precision option"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def cli(*args: str, timeout: float | None = None) -> tuple[int, float, str]:
    """Run ``deploykit ARGS`` from this worktree; (exit code, wall seconds, stderr tail)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", "from deploykit.cli import main; main()", *args]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-2000:] if isinstance(e.stderr, bytes) else (e.stderr or "")[-2000:]
        return 124, time.perf_counter() - t0, str(tail)
    return p.returncode, time.perf_counter() - t0, p.stderr[-3000:]


def cli_has(command: str, option: str) -> bool:
    """Whether ``deploykit COMMAND --help`` lists OPTION (the int8-trt branch adds --high-precision)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", "from deploykit.cli import main; main()", command, "--help"],
        env=env,
        capture_output=True,
        text=True,
    )
    return p.returncode == 0 and option in p.stdout


# ------------------------------------------------------------------------------------ data


def arrays(spec: str, cfg: Any, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Images of a dataset spec preprocessed by deploykit's own pipeline (what quantize feeds the model)."""
    from deploykit.data.specs import open_dataset
    from deploykit.data.transforms import iter_batches

    xs, ys = [], []
    for x, y in iter_batches(open_dataset(spec), cfg, batch):
        xs.append(np.ascontiguousarray(x, np.float32))
        ys.append(np.asarray(y, np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def predict(path: Path, x: np.ndarray, threads: int, batch: int = 250) -> np.ndarray:
    """Top-1 class of every image on ONNX Runtime CPU (all graph optimisations), in order."""
    from deploykit.onnx_io import ort_session

    sess = ort_session(path, threads=threads, inter_op_threads=1)
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32
    out = []
    for i in range(0, len(x), batch):
        logits = sess.run(None, {inp.name: x[i : i + batch].astype(dtype, copy=False)})[0]
        out.append(np.asarray(logits, np.float32).reshape(len(logits), -1).argmax(1))
    return np.concatenate(out)


# ---------------------------------------------------------------------------------- layout


def layout(path: Path) -> dict[str, Any]:
    """Q/DQ counts: QuantizeLinear nodes, and Add / Concat / pooling inputs fed by a DequantizeLinear.

    An Add counts when it has two activation inputs (a residual join); Cast nodes between a
    DequantizeLinear and its consumer are looked through (FP16 variants insert them).
    """
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    consts = {t.name for t in g.initializer}
    consts |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in g.node for o in n.output}

    def src_op(name: str) -> str | None:
        n = producer.get(name)
        while n is not None and n.op_type == "Cast":
            n = producer.get(n.input[0])
        return n.op_type if n is not None else None

    ops: dict[str, int] = {}
    for n in g.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    q = [n for n in g.node if n.op_type == "QuantizeLinear"]
    res: dict[str, Any] = {
        "quantize_linear": len(q),
        "quantize_linear_on_activations": sum(n.input[0] not in consts for n in q),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "ops": dict(sorted(ops.items())),
    }
    for op, key, min_inputs in (
        ("Add", "add", 2),
        ("Concat", "concat", 1),
        ("MaxPool", "maxpool", 1),
        ("AveragePool", "avgpool", 1),
        ("GlobalAveragePool", "gap", 1),
    ):
        total = fed = nodes = 0
        for n in g.node:
            if n.op_type != op:
                continue
            acts = [i for i in n.input if i and i not in consts]
            if len(acts) < min_inputs:
                continue
            nodes += 1
            total += len(acts)
            fed += sum(src_op(i) == "DequantizeLinear" for i in acts)
        res[key] = {"nodes": nodes, "inputs": total, "inputs_from_dq": fed}
    return res


# ------------------------------------------------------------------------------- one family


def run_family(model: str, ckpt: Path, work: Path, args: argparse.Namespace, hp_fp16: bool) -> dict[str, Any]:
    from deploykit.artifact import Artifact
    from deploykit.harness.significance import mcnemar_exact

    row: dict[str, Any] = {"model": model, "checkpoint": str(ckpt), "load_start": loadavg(), "variants": {}}
    fam = work / model
    fam.mkdir(parents=True, exist_ok=True)
    fp32_dir = fam / "fp32"
    say(f"{model}: export FP32")
    rc, secs, err = cli("export", model, "--weights", str(ckpt), "--out", str(fp32_dir), "--force", "--quiet")
    if rc != 0:
        raise RuntimeError(f"export {model} failed ({rc}): {err}")
    art = Artifact.load(fp32_dir)
    cfg = art.data_config
    fp32_path = art.main_path
    row["input_size"] = list(cfg.input_size)
    row["export_seconds"] = round(secs, 1)

    x_cal, _ = arrays(CALIB_SPEC, cfg, batch=32)
    cal_sha = hashlib.sha256(x_cal.tobytes()).hexdigest()
    np.save(fam / "calib.npy", x_cal)
    test_spec = TEST_SPEC if args.test_limit is None else f"{TEST_SPEC}[:{args.test_limit}]"
    x_test, y_test = arrays(test_spec, cfg)
    row["test_spec"] = test_spec
    row["calibration"] = {"spec": CALIB_SPEC, "images": len(x_cal), "sha256": cal_sha}
    row["test_images"] = len(y_test)

    correct: dict[str, np.ndarray] = {}
    fp32_sha = hashlib.sha256(fp32_path.read_bytes()).hexdigest()
    row["fp32_sha256"] = fp32_sha
    cache = args.work / "cache"  # FP32 and ModelOpt do not depend on deploykit's placement: reused across tags
    cache.mkdir(parents=True, exist_ok=True)

    def key_of(name: str) -> Path:
        """FP32 and ModelOpt results are keyed by their inputs; deploykit's also by its code (commit)."""
        code = f"-{args.tag}-{args.commit}" if name.startswith("deploykit") else ""
        return cache / f"{model}-{name}-{fp32_sha[:16]}-{cal_sha[:16]}-{len(y_test)}{code}"

    def cached(name: str) -> bool:
        """Reuse a variant scored before on the same FP32 file, calibration and test images."""
        key = key_of(name)
        if not key.with_suffix(".json").is_file():
            return False
        row["variants"][name] = {**json.loads(key.with_suffix(".json").read_text()), "reused": True}
        correct[name] = np.load(key.with_suffix(".npy"))
        top = row["variants"][name]["top1"]
        say(f"{model}: {name} top-1 {top:.4f} (reused from an earlier run on the same FP32 file)")
        return True

    def remember(name: str) -> None:
        key = key_of(name)
        np.save(key.with_suffix(".npy"), correct[name])
        key.with_suffix(".json").write_text(json.dumps(row["variants"][name]))

    def score(name: str, path: Path, extra: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        ok = predict(path, x_test, args.threads) == y_test
        correct[name] = ok
        v = {
            "top1": float(ok.mean()),
            "score_seconds": round(time.perf_counter() - t0, 1),
            "file": str(path),
            "bytes": path.stat().st_size,
            **extra,
        }
        if name != "fp32":
            v["layout"] = layout(path)
            v["pct_of_fp32"] = 100 * v["top1"] / row["variants"]["fp32"]["top1"]
        row["variants"][name] = v
        say(f"{model}: {name} top-1 {v['top1']:.4f} ({v['score_seconds']:.0f} s to score, load {loadavg()})")

    if not cached("fp32"):
        score("fp32", fp32_path, {})
        remember("fp32")

    # ModelOpt: max and entropy with FP32 outside the Q/DQ pairs, then FP16 with the better one.
    def modelopt(method: str, hp: str) -> None:
        name = f"modelopt_{method}" + ("_fp16" if hp == "fp16" else "")
        if cached(name):
            return
        out = fam / f"{name}.onnx"
        say(f"{model}: ModelOpt {method}, high_precision_dtype={hp}")
        cmd = [str(MODELOPT_PY), str(HERE / "modelopt_quant.py"), str(fp32_path), str(fam / "calib.npy"), str(out)]
        p = subprocess.run(
            [*cmd, "--method", method, "--high-precision", hp],
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        if p.returncode != 0:
            row["variants"][name] = {"error": p.stderr[-2000:]}
            say(f"{model}: ModelOpt {method}/{hp} failed: {p.stderr[-400:]}")
            return
        info = json.loads(p.stdout.strip().splitlines()[-1])
        extra = {"tool": "modelopt", "method": method, "high_precision": hp, "quantize_seconds": info["seconds"]}
        score(name, out, {**extra, "version": info["modelopt"]})
        remember(name)

    modelopt("max", "fp32")
    modelopt("entropy", "fp32")
    ok_mo = [k for k in ("modelopt_max", "modelopt_entropy") if "top1" in row["variants"].get(k, {})]
    best_mo = max(ok_mo, key=lambda k: row["variants"][k]["top1"]) if ok_mo else None
    row["modelopt_best"] = best_mo
    if best_mo and not args.no_fp16:
        modelopt(row["variants"][best_mo]["method"], "fp16")

    # deploykit through its CLI, as a user runs it.
    def deploykit(hp: str | None) -> None:
        name = "deploykit" + ("_fp16" if hp else "")
        if cached(name):
            return
        out = fam / name
        rep = fam / f"{name}-report.json"
        say(f"{model}: deploykit quantize --profile tensorrt" + (f" --high-precision {hp}" if hp else ""))
        extra_args = ["--high-precision", hp] if hp else []
        load0 = loadavg()
        rc, secs, err = cli(
            "quantize", str(fp32_dir), "--calib", CALIB_SPEC, "--val", args.val, "--profile", "tensorrt",
            "--out", str(out), "--force", "--json", str(rep), "--threads", str(args.threads), "--quiet",
            *extra_args, timeout=args.timeout,
        )  # fmt: skip
        info: dict[str, Any] = {
            "tool": "deploykit",
            "high_precision": hp or "fp32",
            "exit_code": rc,
            "quantize_seconds": round(secs, 1),
            "load": [load0, loadavg()],
        }
        if rep.is_file():
            r = json.loads(rep.read_text())
            keys = (
                "method",
                "passed",
                "fp32_top1",
                "int8_top1",
                "int8_top1_before_fallback",
                "gate",
                "val",
                "kept_fp32",
            )
            keys += ("high_precision",)
            info["report"] = {k: r.get(k) for k in keys} | {"fallbacks": r.get("fallbacks")}
            info["report"]["attempts"] = [
                {k: a.get(k) for k in ("method", "top1_initial", "top1_final", "passed")}
                | {"fallbacks": [f.get("layer") for f in a.get("fallbacks", [])]}
                for a in r.get("attempts", [])
            ]
            info["calibration_sha256"] = (r.get("calibration") or {}).get("data_sha256")
            info["same_calibration_data"] = info["calibration_sha256"] == cal_sha
        if rc != 0:
            info["error"] = "timed out" if rc == 124 else err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
            row["variants"][name] = info
            say(f"{model}: deploykit{' ' + hp if hp else ''} failed after {secs:.0f} s: {info['error']}")
            return
        say(f"{model}: deploykit quantize took {secs:.0f} s")
        score(name, Artifact.load(out).main_path, info)
        remember(name)

    if args.skip_deploykit:  # a pass that only fills the FP32/ModelOpt cache
        row["load_end"] = loadavg()
        return row
    deploykit(None)
    if hp_fp16 and not args.no_fp16:
        deploykit("fp16")
    else:
        why = "not run (--no-fp16)" if args.no_fp16 else NO_OPTION
        row["variants"]["deploykit_fp16"] = {"error": why}

    # Paired tests: deploykit against the better ModelOpt variant, FP32-outside and FP16-outside.
    tests = {}
    for dk, mo in (("deploykit", best_mo), ("deploykit_fp16", f"{best_mo}_fp16" if best_mo else None)):
        if dk in correct and mo in correct:
            tests[dk] = {"against": mo, **mcnemar_exact(correct[dk], correct[mo]).to_dict()}
    row["mcnemar"] = tests
    row["load_end"] = loadavg()
    return row


# ----------------------------------------------------------------------------------- report


def write_results(rows: list[dict[str, Any]], meta: dict[str, Any], stem: Path) -> None:
    from deploykit._io import atomic_write_json, atomic_write_text

    atomic_write_json(stem.with_suffix(".json"), {**meta, "families": rows})
    atomic_write_text(stem.with_suffix(".md"), markdown(rows, meta))
    try:
        plot(rows, stem.with_suffix(".png"), meta)
    except Exception as e:  # the chart is a convenience; the tables carry the numbers
        say(f"chart not written: {type(e).__name__}: {e}")


COLUMNS = [
    ("modelopt_max", "ModelOpt max"),
    ("modelopt_entropy", "ModelOpt entropy"),
    ("deploykit", "deploykit tensorrt"),
    ("modelopt_{best}_fp16", "ModelOpt FP16-outside"),
    ("deploykit_fp16", "deploykit FP16-outside"),
]


def _col(row: dict[str, Any], key: str) -> str:
    best = (row.get("modelopt_best") or "modelopt_max").removeprefix("modelopt_")
    return key.format(best=best)


def _cell(row: dict[str, Any], key: str) -> str:
    v = row["variants"].get(_col(row, key))
    if v is None:
        return "not run"
    if "top1" not in v:
        return f"none: {v.get('error', '?')[:80]}"
    return f"{100 * v['top1']:.2f} ({v['pct_of_fp32']:.2f}%)"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"# INT8 for TensorRT: deploykit vs NVIDIA ModelOpt ({meta['tag']})",
        "",
        f"Machine: {meta['machine_line']}. deploykit {meta['deploykit_commit']}; "
        f"ModelOpt {meta.get('modelopt') or '?'}; "
        f"ONNX Runtime {meta['onnxruntime']} (CPU, {meta['threads']} thread(s)) scores every model.",
        f"Calibration: `{CALIB_SPEC}` for both tools (identical arrays, sha256 checked). "
        f"deploykit's gate: `--val {meta['val']}`. "
        f"Scored on `{meta['test_spec']}` ({meta['test_images']} images). Checkpoints: short Fashion-MNIST runs, "
        "not the reference ones.",
        f"Command: `{meta['command']}`",
        "",
        "Top-1 % on the test split (% of FP32):",
        "",
        "| model | input | FP32 | " + " | ".join(t for _, t in COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        fp = r["variants"]["fp32"]["top1"]
        size = "x".join(map(str, r["input_size"][1:]))
        cells = " | ".join(_cell(r, k) for k, _ in COLUMNS)
        lines.append(f"| {r['model']} | {size} | {100 * fp:.2f} | {cells} |")
    lines += [
        "",
        f"McNemar (exact, paired over the {meta['test_images']} test images), "
        "deploykit against the better ModelOpt variant:",
        "",
        "| model | deploykit variant | against | deploykit-only correct | ModelOpt-only correct | p |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for dk, t in r.get("mcnemar", {}).items():
            lines.append(
                f"| {r['model']} | {dk} | {t['against']} | {t['a_only']} | {t['b_only']} | {t['p_value']:.3g} |"
            )
    lines += [
        "",
        "Q/DQ layout (QuantizeLinear nodes; inputs fed by a DequantizeLinear of: residual Add (two activation "
        "inputs), Concat, pooling):",
        "",
        "| model | variant | QuantizeLinear (on activations) | Add inputs from DQ | Concat inputs from DQ | "
        "MaxPool/AvgPool inputs from DQ | deploykit quantize s (load) | chosen method, fallbacks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for name, v in r["variants"].items():
            if name == "fp32" or "layout" not in v:
                continue
            lay = v["layout"]
            pool_dq = lay["maxpool"]["inputs_from_dq"] + lay["avgpool"]["inputs_from_dq"]
            pools = f"{pool_dq} of {lay['maxpool']['inputs'] + lay['avgpool']['inputs']}"
            if v.get("tool") == "deploykit":
                secs = f"{v['quantize_seconds']:.0f} ({v['load'][0]}-{v['load'][1]})"
            else:
                secs = f"ModelOpt {v.get('quantize_seconds', 0):.0f}"
            rep = v.get("report") or {}
            chosen = ""
            if rep:
                kept = len(rep.get("kept_fp32") or [])
                chosen = f"{rep.get('method')}, {len(rep.get('fallbacks') or [])} fallbacks, {kept} kept FP32"
            lines.append(
                f"| {r['model']} | {name} | {lay['quantize_linear']} ({lay['quantize_linear_on_activations']}) | "
                f"{lay['add']['inputs_from_dq']} of {lay['add']['inputs']} | {lay['concat']['inputs_from_dq']} of "
                f"{lay['concat']['inputs']} | {pools} | {secs} | {chosen} |"
            )
    fails = [(r["model"], k, v) for r in rows for k, v in r["variants"].items() if "error" in v]
    if fails:
        lines += ["", "Not scored:", ""]
        for m, k, v in fails:
            after = f" (after {v['quantize_seconds']:.0f} s)" if "quantize_seconds" in v else ""
            lines.append(f"- {m} {k}: {v['error'][:300]}{after}")
    end = meta.get("load_end", "?")
    lines += ["", f"Load average over the run: {meta.get('load_start')} at start, {end} at the end."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(COLUMNS)
    for j, (key, title) in enumerate(COLUMNS):
        vals = []
        for r in rows:
            v = r["variants"].get(_col(r, key), {})
            vals.append(v.get("pct_of_fp32", np.nan))
        xs = np.arange(len(rows)) + (j - (len(COLUMNS) - 1) / 2) * width
        ax.bar(xs, vals, width, label=title)
    ax.axhline(99.5, color="k", lw=0.8, ls="--", label="99.5% gate")
    ax.set_xticks(np.arange(len(rows)), [r["model"] for r in rows])
    ax.set_ylabel("INT8 top-1, % of FP32")
    pcts = [v["pct_of_fp32"] for r in rows for v in r["variants"].values() if "pct_of_fp32" in v]
    lo = min(pcts + [99.0])
    ax.set_ylim(min(lo, 99.0) - 0.5, 101.0)
    title = f"deploykit TensorRT profile vs ModelOpt, ONNX Runtime CPU ({meta['tag']}, {meta['machine']})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def render(paths: list[Path], name: str) -> int:
    """Merge passes of one run (e.g. INT8 for every family, then the FP16 variants for some) into one report.

    A variant measured in a later file replaces the earlier file's entry for the same family; the
    meta (machine, command...) of the first file is kept and the later commands appended.
    """
    metas, fams = [], {}
    for p in paths:
        d = json.loads(p.read_text())
        rows = d.pop("families")
        metas.append(d)
        for r in rows:
            old = fams.get(r["model"])
            if old is None:
                fams[r["model"]] = r
                continue
            for k, v in r["variants"].items():
                if "top1" in v or k not in old["variants"]:
                    old["variants"][k] = v
            for k, t in r.get("mcnemar", {}).items():
                old.setdefault("mcnemar", {})[k] = t
    meta = dict(metas[0])
    meta["command"] = " ; ".join(m["command"] for m in metas)
    meta["load_end"] = metas[-1].get("load_end")
    for r in fams.values():  # the first pass ran with --no-fp16 before its label said so
        v = r["variants"].get("deploykit_fp16", {})
        if v.get("error") == NO_OPTION and meta.get("deploykit_high_precision_option"):
            r["variants"]["deploykit_fp16"] = {"error": "not run (--no-fp16 pass; no time left for the FP16 pass)"}
    order = [m for m in FAMILIES if m in fams] + [m for m in fams if m not in FAMILIES]
    write_results([fams[m] for m in order], meta, HERE / f"{name}-{meta['machine']}")
    return 0


# ------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt-dir", type=Path, default=Path("/work/scratch/ckpt"))
    ap.add_argument("--work", type=Path, default=Path("/work/scratch/int8trt-work"))
    ap.add_argument("--models", default=",".join(FAMILIES))
    ap.add_argument("--tag", default="after", help="'before' (main's placement) or 'after' (the int8-trt branch)")
    ap.add_argument("--val", default=VAL_SPEC, help="deploykit's gate set (never the test split)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for scoring and quantize")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before one quantize run is given up")
    ap.add_argument("--no-fp16", action="store_true", help="skip the FP16-outside variants")
    ap.add_argument("--test-limit", type=int, default=None, help="score on the first N test images (default: all)")
    ap.add_argument("--skip-deploykit", action="store_true", help="only FP32 and ModelOpt (fills the cache)")
    ap.add_argument("--render", nargs="+", type=Path, help="only re-render: merge these results JSONs (later wins)")
    ap.add_argument("--results-name", default=None, help="results file stem instead of results[-TAG]")
    ap.add_argument("--commit-label", default=None, help="the commit this copy of the code is (no .git)")
    ap.add_argument("--wait", type=float, default=0, help="seconds to wait for a checkpoint still being trained")
    args = ap.parse_args(argv)

    if args.render:
        return render(args.render, args.results_name or "results")

    import onnxruntime

    from deploykit.machine import describe_machine, machine_line, machine_slug

    m = describe_machine()
    slug = machine_slug(m)
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "deploykit"], capture_output=True, text=True).stdout.strip()
    meta: dict[str, Any] = {
        "tag": args.tag,
        "machine": slug,
        "machine_line": machine_line(m),
        "machine_info": m,
        "deploykit_commit": commit + ("+dirty" if dirty else ""),
        "onnxruntime": onnxruntime.__version__,
        "threads": args.threads,
        "val": args.val,
        "command": "PYTHONPATH=$PWD nice -n 10 python benchmarks/int8_trt/run.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_start": loadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.commit_label:  # a copy of a checkout (no .git): the caller names the commit
        meta["deploykit_commit"] = args.commit_label
    code = hashlib.sha256()
    for f in sorted((ROOT / "deploykit").rglob("*")):
        if f.suffix in (".py", ".toml") and f.is_file():
            code.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    meta["deploykit_code_sha256"] = code.hexdigest()  # keys deploykit's cached results
    args.commit = code.hexdigest()[:12]
    hp_fp16 = cli_has("quantize", "--high-precision")
    meta["deploykit_high_precision_option"] = hp_fp16
    has = "yes" if hp_fp16 else "no"
    say(f"machine {slug}; deploykit {meta['deploykit_commit']}; quantize --high-precision: {has}")
    stem = HERE / (f"results-{slug}" if args.tag == "after" else f"results-{args.tag}-{slug}")
    if args.results_name:  # a second pass beside a running one (same tag, so the same cache keys)
        stem = HERE / f"{args.results_name}-{slug}"
    rows: list[dict[str, Any]] = []
    work = args.work / args.tag
    for model in [s.strip() for s in args.models.split(",") if s.strip()]:
        ckpt = args.ckpt_dir / f"{model}.safetensors"
        waited = time.time()
        while not ckpt.is_file() and time.time() - waited < args.wait:
            time.sleep(20)
        if not ckpt.is_file():
            say(f"{model}: no checkpoint {ckpt}, skipped")
            continue
        t0 = time.perf_counter()
        try:
            row = run_family(model, ckpt, work, args, hp_fp16)
        except Exception as e:
            say(f"{model}: failed: {type(e).__name__}: {e}")
            continue
        row["seconds"] = round(time.perf_counter() - t0, 1)
        mo = [v.get("version") for v in row["variants"].values() if v.get("version")]
        meta["modelopt"] = mo[0] if mo else meta.get("modelopt")
        rows.append(row)
        meta["test_spec"], meta["test_images"] = row["test_spec"], row["test_images"]
        meta["load_end"] = loadavg()
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_results(rows, meta, stem)
        say(f"{model}: done in {row['seconds']:.0f} s; wrote {stem.name}.*")
    if work.exists() and not rows:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
