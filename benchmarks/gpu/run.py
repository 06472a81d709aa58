"""GPU comparison: the five headline CNNs at batch 1 and a large batch through every GPU backend here.

    python benchmarks/gpu/run.py                       # -> benchmarks/results/gpu/<gpu slug>.{json,md}
    python benchmarks/gpu/run.py --models resnet50 --quick   # smoke test, temp output dir

Rows per model and batch: PyTorch CUDA FP32 (the baseline), FP16 channels-last, FP16 + CUDA graph
and ``torch.compile`` FP16 (the strongest path a PyTorch user has without deploykit: the bar to
beat), always; ONNX Runtime CUDA EP on the optimised FP32 export (with onnxruntime-gpu); TensorRT
FP16 and INT8 engines (with tensorrt). Each row measures what it names: the FP16 engine is built
from the FP16 ONNX artifact (``export_model(fp16=True)``), the INT8 engine from deploykit's
TensorRT-profile Q/DQ graph (calibrated on fixed-seed synthetic images, since the weights are
random), each engine's profile is tuned for the batch it is timed at (opt batch = timed batch, one
engine per batch), and the TensorRT rows replay a CUDA graph like the torch CUDA-graph row, with
pinned host buffers. Every row's output is compared with the baseline's on the same fixed-seed
inputs (parity: max abs relative to the logit range, top-1 agreement) and timed interleaved with
the others, round by round; the speed-ups are the median over rounds of p50(baseline) / p50(row)
and of p50(torch.compile fp16) / p50(row). Beside that host time, the device time of one call
(copies in, compute, copies out) comes from CUDA events where the row exposes its stream (torch
and TensorRT; not ONNX Runtime). Rows that cannot run say why. Weights are random (seeded):
latency does not depend on their values. Sized to finish in about 8 minutes on one datacentre GPU;
``--budget-minutes`` skips the costly rows (torch.compile, INT8) of the last models when short.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("resnet50", "resnext50_32x4d", "densenet121", "googlenet", "inception_v3")
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results" / "gpu"
BASELINE = "torch cuda fp32"
BAR = "torch.compile fp16"  # the strongest PyTorch path: what deploykit's rows must beat
FULL = {"warmup": 10, "rounds": 8, "iters_per_round": 10, "large_batch": 64, "calib": 32}
QUICK = {"warmup": 1, "rounds": 2, "iters_per_round": 2, "large_batch": 8, "calib": 4}


class Skip(Exception):
    """A row that cannot run here, with its reason."""


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma list (default: the five headline models)")
    p.add_argument("--large-batch", type=int, default=None, help=f"the large batch (default {FULL['large_batch']})")
    p.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds (default {FULL['rounds']})")
    p.add_argument(
        "--iters-per-round",
        type=int,
        default=None,
        help=f"timed calls per row and round (default {FULL['iters_per_round']})",
    )
    p.add_argument("--quick", action="store_true", help="tiny counts for a smoke test; writes to a temp dir")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--no-int8", action="store_true", help="skip the TensorRT INT8 rows")
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=8.0,
        help="skip torch.compile / INT8 rows once the run would overrun this (default 8)",
    )
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default {RESULTS_DIR})")
    args = p.parse_args(argv)
    if args.large_batch is not None and args.large_batch < 2:
        p.error("--large-batch must be at least 2")
    return args


def gpu_problem() -> str | None:
    """Why this script cannot measure anything here (no CUDA GPU), or None."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch (torch.cuda.is_available() is False); nothing to measure"
    return None


# -- the rows ------------------------------------------------------------------------------------
def row_factories(
    name: str,
    model: Any,
    artifact: Any,
    calib: np.ndarray,
    counts: dict[str, Any],
    args: argparse.Namespace,
    tmp: Path,
    time_left: Callable[[], float],
) -> dict[str, Callable[[int], Any]]:
    """Variant label -> a function of the timed batch making its (not yet active) runner, or raising Skip.

    The torch and ORT runners do not depend on the batch (the caller makes them once); the TensorRT
    ones are built per batch, with that batch as the profile's opt batch.
    """
    from deploykit.backends.torch import TorchRunner

    large = counts["large_batch"]
    fp16_artifact: list[Any] = []

    def torch_cuda(**kw: Any) -> Callable[[int], Any]:
        return lambda batch: TorchRunner(model, device="cuda", **kw)

    def compiled(batch: int) -> Any:
        if args.no_compile:
            raise Skip("disabled with --no-compile")
        if time_left() < 90:
            raise Skip(f"time budget: {time_left():.0f} s left for this model, torch.compile needs ~1-2 min")
        return TorchRunner(model, device="cuda", precision="fp16", channels_last=True, compile=True)

    def ort_cuda(batch: int) -> Any:
        import onnxruntime as ort

        from deploykit.backends import make_runner

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise Skip("onnxruntime-gpu is not installed (pip install 'deploykit[gpu]')")
        return make_runner(artifact.path, backend="onnxruntime-cuda", device="cuda")

    def fp16_onnx() -> Path:
        """The FP16 ONNX artifact (export_model(fp16=True)), made once per model."""
        if not fp16_artifact:
            from deploykit.export.api import export_model

            fp16_artifact.append(
                export_model(
                    name,
                    weights=tmp / "w.safetensors",
                    out=tmp / "onnx-fp16",
                    fp16=True,
                    max_batch=large,
                    progress=False,
                )
            )
        return fp16_artifact[0].main_path

    def trt_engine(precision: str) -> Callable[[int], Any]:
        def make(batch: int) -> Any:
            if importlib.util.find_spec("tensorrt") is None:
                raise Skip("tensorrt is not installed (pip install 'deploykit[tensorrt]')")
            from deploykit.backends.tensorrt.builder import EngineOptions, build_serialized
            from deploykit.backends.tensorrt.runner import TensorRTRunner

            if precision == "int8":
                if args.no_int8:
                    raise Skip("disabled with --no-int8")
                if time_left() < 60:
                    raise Skip(f"time budget: {time_left():.0f} s left for this model")
                onnx_path = tmp / f"{name}-int8.onnx"
                if not onnx_path.exists():
                    tensorrt_qdq(name, artifact, calib, onnx_path)
            else:
                onnx_path = fp16_onnx()
            built = build_serialized(
                onnx_path,
                EngineOptions(precision=precision, min_batch=1, opt_batch=batch, max_batch=large),
                log_file=tmp / f"{name}-{precision}-b{batch}.log",
            )
            plan = tmp / f"{name}-{precision}-b{batch}.plan"
            plan.write_bytes(built.plan)
            return TensorRTRunner(plan, name=f"{name}-{precision}-opt{batch}", cuda_graph=True)

        make.per_batch = True  # type: ignore[attr-defined]
        return make

    return {
        BASELINE: torch_cuda(),
        "torch cuda fp16 channels-last": torch_cuda(precision="fp16", channels_last=True),
        "torch cuda fp16 + CUDA graph": torch_cuda(precision="fp16", channels_last=True, cuda_graph=True),
        BAR: compiled,
        "ORT CUDA fp32": ort_cuda,
        "TensorRT fp16 + CUDA graph": trt_engine("fp16"),
        "TensorRT int8 + CUDA graph": trt_engine("int8"),
    }


def device_time_ms(runner: Any, feeds: dict[str, np.ndarray], iters: int) -> float | None:
    """Mean device time of one call from CUDA events, or None where the backend hides its stream."""
    if hasattr(runner, "device_time_ms"):  # the TensorRT runner: events on its own stream
        return float(runner.device_time_ms(feeds, iters=iters))
    if getattr(runner, "backend", "") != "torch":
        return None
    import torch

    runner.infer(feeds)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        runner.infer(feeds)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def tensorrt_qdq(name: str, artifact: Any, calib: np.ndarray, out: Path) -> Path:
    """deploykit's TensorRT Q/DQ graph (symmetric, the family's recipe), without the accuracy gate.

    These are the steps ``quantize_artifact(profile="tensorrt")`` takes before its gate; the gate is
    left out because the weights here are random (INT8 accuracy lives in benchmarks/int8).
    """
    import onnx

    from deploykit.quantize.calibrators import CalibConfig, calibrate
    from deploykit.quantize.placement import apply_plan, plan_placement, prepare_model, resolve_keep
    from deploykit.quantize.recipes import recipe_for
    from deploykit.quantize.stats import collect_stats

    rec = recipe_for(name, artifact.manifest.family)
    model = prepare_model(onnx.load(str(artifact.main_path)))
    plan = plan_placement(model, "tensorrt", resolve_keep(model, rec.keep_fp32))
    stats = collect_stats(model, plan.stat_tensors, [calib])
    method = rec.method if rec.method != "auto" else "entropy"
    thresholds = calibrate(stats, CalibConfig(method=method, percentile=rec.percentile), asymmetric=False)
    onnx.save(apply_plan(model, plan, stats, thresholds, rec.per_channel), str(out))
    return out


# -- one model -------------------------------------------------------------------------------------
def bench_model(
    name: str,
    counts: dict[str, Any],
    args: argparse.Namespace,
    machine: dict[str, Any],
    results: list,
    rows: list[dict[str, Any]],
    time_left: Callable[[], float],
) -> None:
    import torch

    from deploykit.export.api import export_model
    from deploykit.harness.bench import benchmark_interleaved
    from deploykit.harness.significance import median_ratio_ci
    from deploykit.models.weights import load_model, save_weights
    from deploykit.parity import compare_outputs, parity_inputs

    large = counts["large_batch"]
    with tempfile.TemporaryDirectory(prefix=f"dk-gpu-{name}-") as td:
        tmp = Path(td)
        torch.manual_seed(0)
        model = load_model(name).eval()
        weights = save_weights(model, tmp / "w.safetensors")
        artifact = export_model(name, weights=weights, out=tmp / "onnx", max_batch=large, progress=False)
        cfg = artifact.data_config
        calib = parity_inputs(cfg, counts["calib"], seed=123)
        factories = row_factories(name, model, artifact, calib, counts, args, tmp, time_left)
        shared: dict[str, Any] = {}  # runners that serve both batches
        status: dict[str, tuple[str, str | None]] = {}

        def make(label: str, batch: int) -> Any:
            try:
                runner = factories[label](batch).activate()
                status[label] = ("ok", None)
                return runner
            except Skip as e:
                status[label] = ("skipped", str(e))
            except Exception as e:  # noqa: BLE001 - a row that fails says why; the others still run
                status[label] = ("failed", _first_line(e))
            return None

        for label, factory in factories.items():
            if not getattr(factory, "per_batch", False) and (r := make(label, 1)) is not None:
                shared[label] = r
        for batch in (1, large):
            runners = dict(shared)
            for label, factory in factories.items():
                if getattr(factory, "per_batch", False) and (r := make(label, batch)) is not None:
                    runners[label] = r  # built with opt batch = this batch
            x = parity_inputs(cfg, batch)
            feeds = {label: {"input": x} for label in runners}
            parity: dict[str, Any] = {}
            if BASELINE in runners:
                ref = runners[BASELINE].infer({"input": x})["logits"]
                for label, r in runners.items():
                    try:
                        parity[label] = compare_outputs(
                            ref, r.infer({"input": x})["logits"].astype(np.float32)
                        ).to_dict()
                    except Exception as e:  # noqa: BLE001
                        status[label] = ("failed", _first_line(e))
            live = {k: v for k, v in runners.items() if status[k][0] == "ok"}
            timed = (
                benchmark_interleaved(
                    live,
                    batch=batch,
                    rounds=counts["rounds"],
                    iters_per_round=counts["iters_per_round"],
                    warmup=counts["warmup"],
                    feeds=feeds,
                    model=name,
                    machine=machine,
                )
                if live
                else {}
            )
            device_ms: dict[str, float | None] = {}
            for label, r in live.items():
                try:
                    device_ms[label] = device_time_ms(r, {"input": x}, counts["iters_per_round"])
                except Exception as e:  # noqa: BLE001 - the host-time row stands without it
                    _log(f"  {name} {label} b{batch}: no device time ({_first_line(e)})")
                    device_ms[label] = None
            results.extend(timed.values())
            base, bar = timed.get(BASELINE), timed.get(BAR)
            for label in factories:
                st, reason = status[label]
                row = {
                    "model": name,
                    "variant": f"{label} @ batch {batch}",
                    "device": "cuda",
                    "status": st,
                    "reason": reason,
                    "p50_ms": None,
                    "device_ms": device_ms.get(label),
                    "speedup_vs_baseline": None,
                    "speedup_ci": None,
                    "speedup_vs_compile": None,
                    "speedup_vs_compile_ci": None,
                    "throughput": None,
                    "parity_vs_baseline": parity.get(label),
                }
                if label in timed:
                    b = timed[label].batch(batch)
                    row["p50_ms"], row["throughput"] = b.latency_ms.p50, b.throughput
                    if base is not None and label != BASELINE:
                        ratio = median_ratio_ci(base.batch(batch).round_p50_ms, b.round_p50_ms)
                        row["speedup_vs_baseline"] = ratio.median_ratio
                        row["speedup_ci"] = [ratio.ci_low, ratio.ci_high]
                    if bar is not None and label != BAR:
                        ratio = median_ratio_ci(bar.batch(batch).round_p50_ms, b.round_p50_ms)
                        row["speedup_vs_compile"] = ratio.median_ratio
                        row["speedup_vs_compile_ci"] = [ratio.ci_low, ratio.ci_high]
                rows.append(row)
                dev = f", device {row['device_ms']:.3f} ms" if row["device_ms"] is not None else ""
                _log(
                    f"  {name} {label} b{batch}: {st}"
                    + (f" ({reason})" if reason else f" p50 {row['p50_ms']:.3f} ms{dev}")
                )
            for label, r in runners.items():
                if label not in shared:
                    r.deactivate()  # the per-batch engines
        for r in shared.values():
            r.deactivate()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = gpu_problem()
    if problem is not None:
        _log(f"benchmarks/gpu: {problem}; run it on a machine with an NVIDIA GPU")
        return 0
    from deploykit.harness.report import bench_markdown, bench_report, write_json, write_markdown
    from deploykit.machine import describe_machine, machine_slug
    from deploykit.models.registry import resolve_name

    counts = dict(QUICK if args.quick else FULL)
    for key in ("large_batch", "rounds", "iters_per_round"):
        if getattr(args, key) is not None:
            counts[key] = getattr(args, key)
    models = [resolve_name(m) for m in args.models.split(",") if m.strip()]
    machine = describe_machine()
    slug = machine_slug(machine) + ("-quick" if args.quick else "")
    out = args.out or (Path(tempfile.gettempdir()) / "deploykit-gpu-quick" if args.quick else RESULTS_DIR)
    _log(f"machine {slug}: gpu {machine['gpu']}, versions {machine['versions']}")
    start = time.perf_counter()
    deadline = start + args.budget_minutes * 60
    results: list = []
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(models):
        left = lambda i=i: (deadline - time.perf_counter()) / (len(models) - i)  # noqa: E731
        bench_model(name, counts, args, machine, results, rows, left)
    suite = {
        "baseline": f"{BASELINE} (PyTorch eager FP32 on the same GPU)",
        "settings": {
            "models": models,
            "batches": [1, counts["large_batch"]],
            **counts,
            "weights": "random (torch.manual_seed(0))",
            "total_s": round(time.perf_counter() - start, 1),
            "ratio": "median over rounds of p50(baseline) / p50(row), rows interleaved round by round; "
            f"speedup_vs_compile the same against '{BAR}'",
            "host_vs_device": "p50_ms is host time per call (what infer costs the caller); device_ms is the "
            "mean device time of one call (copies in, compute, copies out) from CUDA events",
            "tensorrt": "fp16 from the FP16 ONNX artifact, int8 from the TensorRT-profile Q/DQ graph; one engine "
            "per timed batch (opt batch = timed batch, profile 1..large); CUDA graph replay; pinned buffers",
        },
        "rows": rows,
    }
    doc = bench_report(results, machine=machine, suite=suite)
    write_json(doc, out / f"{slug}.json")
    write_markdown(bench_markdown(doc), out / f"{slug}.md")
    _log(f"wrote {out / slug}.json and .md in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
