"""The committed speed comparison: five CNNs, every backend variant, ratios measured in one process.

    python benchmarks/run.py                      # full suite -> benchmarks/results/<machine>.{json,md,png}
    python benchmarks/run.py --quick --models googlenet   # smoke test (tiny counts, temp output dir)

Rows per model (batch 1, 2 intra-op threads for every CPU row): PyTorch eager (the baseline),
torch.compile, ONNX Runtime on the plain export, on onnxslim's output, on deploykit's optimised
graph, ONNX Runtime ``quantize_static`` INT8 (QDQ, per-channel, U8S8) and deploykit INT8. With a
CUDA GPU: torch CUDA FP32 (the GPU baseline), FP16 channels-last, FP16 + CUDA graph, ONNX Runtime
CUDA (with onnxruntime-gpu) and TensorRT FP16 (with tensorrt). Every ratio is the median over
rounds of p50(baseline) / p50(row) within the round, both measured in this run on this machine,
the rows of one model and device interleaved round by round, with its 95% interval. Weights are
random (seeded): latency does not depend on their values; INT8 calibration uses real
Fashion-MNIST train images resized to the model's input size.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("googlenet", "inception_v3", "resnet50", "resnext50_32x4d", "densenet121")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Full run: the rows of one model and device are timed interleaved, 10 rounds of 15 calls each
# (150 calls per row, enough for a p99); 10 warm-up calls; 16 calibration images.
FULL = {"warmup": 10, "rounds": 10, "iters_per_round": 15, "calib": 16}
QUICK = {"warmup": 1, "rounds": 2, "iters_per_round": 2, "calib": 4}
# torch.compile costs a minute or more per model on 2 cores: when the time left, shared among the models
# still to run (this one included), is under this, the compile row is skipped with that reason.
COMPILE_RESERVE_S = 120.0
CPU_BASELINE = "torch eager"
GPU_BASELINE = "torch cuda fp32"


class Skip(Exception):
    """A row that cannot run on this machine (not installed, no GPU): recorded with its reason."""


@dataclass
class Row:
    model: str
    variant: str
    device: str
    status: str
    reason: str | None = None
    p50_ms: float | None = None
    speedup: float | None = None
    speedup_ci: tuple[float, float] | None = None  # 95% interval of the per-round ratio

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "device": self.device,
            "status": self.status,
            "reason": self.reason,
            "p50_ms": self.p50_ms,
            "speedup_vs_baseline": self.speedup,
            "speedup_ci": list(self.speedup_ci) if self.speedup_ci else None,
        }


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _load() -> float | None:
    """1-minute load average, recorded so a reader can tell a busy machine's numbers apart."""
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- preparing the model files -----------------------------------------------------------------
def calibration_images(cfg: Any, n: int) -> tuple[np.ndarray, str]:
    """Real Fashion-MNIST train images at the model's input size; seeded synthetic ones without it."""
    from deploykit.parity import dataset_inputs, parity_inputs

    try:
        xs = list(dataset_inputs(f"fashion-mnist:train[:{n}]", cfg, limit=n, batch=n))
        return np.concatenate(xs)[:n], f"fashion-mnist:train[:{n}]"
    except Exception as e:  # noqa: BLE001 - dataset not installed: say so and go on
        _log(f"  calibration falls back to parity_inputs ({_first_line(e)})")
        return parity_inputs(cfg, n, seed=123), f"parity_inputs(seed=123, n={n})"


def ort_quantize_static(plain: Path, out: Path, calib: np.ndarray) -> Path:
    """ONNX Runtime's own static INT8 (QDQ, per-channel signed weights, unsigned activations)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib[i : i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"input": x}

    pre = out.with_name(out.stem + "-pre.onnx")
    quant_pre_process(str(plain), str(pre), skip_symbolic_shape=False)
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return out


def deploykit_int8(name: str, family: str, fp32: Path, out: Path, calib: np.ndarray, threads: int) -> Path:
    """deploykit's INT8 graph (onnxruntime profile, the family's recipe) from its optimised FP32 graph.

    These are the steps ``deploykit.quantize.quantize_artifact`` takes before its accuracy gate; the
    gate is left out because the suite's weights are random (its accuracy lives in benchmarks/int8).
    """
    import onnx

    from deploykit.quantize.calibrators import CalibConfig, calibrate
    from deploykit.quantize.placement import apply_plan, plan_placement, prepare_model, resolve_keep
    from deploykit.quantize.recipes import recipe_for
    from deploykit.quantize.stats import collect_stats

    rec = recipe_for(name, family)
    model = prepare_model(onnx.load(str(fp32)))
    plan = plan_placement(model, "onnxruntime", resolve_keep(model, rec.keep_fp32))
    stats = collect_stats(model, plan.stat_tensors, [calib], threads=threads)
    method = rec.method if rec.method != "auto" else "entropy"
    thresholds = calibrate(stats, CalibConfig(method=method, percentile=rec.percentile), asymmetric=True)
    onnx.save(apply_plan(model, plan, stats, thresholds, rec.per_channel), str(out))
    return out


def set_bn_statistics(model: Any, images: np.ndarray) -> None:
    """Give a randomly initialised model BatchNorm statistics from real images (data-dependent init).

    Fresh BatchNorm layers hold mean 0 / variance 1, so activations shrink or grow layer after layer
    and the logits are near-constant; real statistics give every layer trained-like magnitudes,
    which is what INT8 calibration and the kernels see in deployment.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(images))
    model.eval()
    for bn in bns:
        bn.momentum = 0.1


# -- one model ---------------------------------------------------------------------------------
def bench_model(
    name: str,
    args: argparse.Namespace,
    counts: dict[str, Any],
    machine: dict[str, Any],
    results: list,
    rows: list[Row],
    timings: dict[str, float],
    budget_left: Callable[[], float],
) -> None:
    import onnx
    import torch

    from deploykit.backends.onnxruntime import OnnxRuntimeRunner
    from deploykit.backends.torch import TorchRunner
    from deploykit.export.to_onnx import export_onnx
    from deploykit.harness.bench import benchmark_interleaved, make_feeds
    from deploykit.harness.significance import median_ratio_ci
    from deploykit.models.registry import get_spec
    from deploykit.models.weights import load_model

    torch.manual_seed(0)
    model = load_model(name)
    cfg = model.data_config
    calib, calib_src = calibration_images(cfg, counts["calib"])
    set_bn_statistics(model, calib)
    threads = args.threads
    has_cuda = torch.cuda.is_available() and not args.no_gpu

    with tempfile.TemporaryDirectory(prefix=f"dk-bench-{name}-") as tmp_s:
        tmp = Path(tmp_s)
        files: dict[str, Path | Exception] = {}

        def prepare(key: str, fn: Callable[[], Path]) -> None:
            t0 = time.perf_counter()
            try:
                files[key] = fn()
            except Exception as e:  # noqa: BLE001 - one broken row must not sink the suite
                files[key] = e
                _log(f"  {key}: {_first_line(e)}")
                if args.verbose and not isinstance(e, Skip):
                    traceback.print_exc()
            timings[f"{name}/{key}"] = round(time.perf_counter() - t0, 2)

        _log(f"{name}: preparing model files")
        prepare("plain", lambda: export_onnx(model, cfg, tmp / "plain.onnx").path)
        plain = files["plain"]

        def need_plain() -> Path:
            if isinstance(plain, Exception):
                raise Skip(f"no plain export ({_first_line(plain)})")
            return plain

        def slim() -> Path:
            if importlib.util.find_spec("onnxslim") is None:
                raise Skip("onnxslim is not installed (pip install 'deploykit[bench]')")
            import onnxslim

            onnx.save(onnxslim.slim(onnx.load(str(need_plain()))), str(tmp / "slim.onnx"))
            return tmp / "slim.onnx"

        def optimised() -> Path:
            if importlib.util.find_spec("deploykit.optimize") is None:
                raise Skip("deploykit.optimize is not available yet")
            from deploykit.optimize import optimize_model

            onnx.save(optimize_model(onnx.load(str(need_plain()))).model, str(tmp / "opt.onnx"))
            return tmp / "opt.onnx"

        prepare("slim", slim)
        prepare("opt", optimised)
        prepare("ort-int8", lambda: ort_quantize_static(need_plain(), tmp / "ort-int8.onnx", calib))

        def dk_int8() -> Path:
            opt = files["opt"]
            if isinstance(opt, Exception):
                raise Skip(f"no deploykit-optimised FP32 graph ({opt})")
            return deploykit_int8(name, get_spec(name).family, opt, tmp / "dk-int8.onnx", calib, threads)

        prepare("dk-int8", dk_int8)

        def ort_file(key: str, providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> Callable[[], Any]:
            def make() -> Any:
                f = files[key]
                if isinstance(f, Exception):
                    raise f
                # the deployment's session settings (spinning on); timed one session alive at a time
                runner = OnnxRuntimeRunner(f, providers=providers, threads=threads, name=f"{name}:{key}")
                runner.precision = "int8" if "int8" in key else "fp32"
                return runner

            return make

        variants: list[tuple[str, str, Callable[[], Any]]] = [
            (CPU_BASELINE, "cpu", lambda: TorchRunner(model, threads=threads)),
            ("torch.compile", "cpu", lambda: _compiled(model, threads, args.no_compile, budget_left())),
            ("ORT plain export", "cpu", ort_file("plain")),
            ("ORT onnxslim", "cpu", ort_file("slim")),
            ("ORT deploykit-optimised", "cpu", ort_file("opt")),
            ("ORT quantize_static INT8", "cpu", ort_file("ort-int8")),
            ("ORT deploykit INT8", "cpu", ort_file("dk-int8")),
        ]
        variants += _gpu_variants(model, name, files, has_cuda, args, tmp)

        # Build and warm every runner first (torch.compile compiles here); a row that cannot run
        # is recorded with its reason. Then the rows of each device are timed interleaved, round
        # after round, so the machine's load hits them all alike. ORT sessions are released after
        # the check and rebuilt for each round (benchmark_blocks: one alive at a time, with the
        # deployment's spinning); torch.compile's module stays alive (recompiling it each round
        # would dominate) and is named under the results' settings["kept_alive"].
        built: dict[str, Any] = {}
        result_of: dict[str, Any] = {}
        row_of: dict[str, Row] = {}
        device_of: dict[str, str] = {}
        try:
            for variant, device, make in variants:
                row_of[variant] = Row(model=name, variant=variant, device=device, status="ok")
                device_of[variant] = device
                t0 = time.perf_counter()
                try:
                    runner = make().activate()
                    runner.infer(make_feeds(runner, args.batch))
                    if variant != "torch.compile" and device == "cpu":
                        runner.deactivate()  # rebuilt fresh for every round, one alive at a time
                    built[variant] = runner
                except Exception as e:  # noqa: BLE001 - one broken row must not sink the suite
                    _fail(row_of[variant], e, args.verbose)
                timings[f"{name}/build/{variant}"] = round(time.perf_counter() - t0, 2)
            for device in ("cpu", "cuda"):
                group = {v: r for v, r in built.items() if device_of[v] == device}
                if not group:
                    continue
                t0 = time.perf_counter()
                _log(
                    f"  timing {len(group)} {device} rows interleaved ({counts['rounds']} rounds x "
                    f"{counts['iters_per_round']} calls)"
                )
                try:
                    timed = benchmark_interleaved(
                        group,
                        batch=args.batch,
                        rounds=counts["rounds"],
                        iters_per_round=counts["iters_per_round"],
                        warmup=counts["warmup"],
                        progress=sys.stdout.isatty(),
                        model=name,
                        machine=machine,
                    )
                except Exception as e:  # noqa: BLE001
                    for v in group:
                        _fail(row_of[v], e, args.verbose)
                    continue
                timings[f"{name}/bench/{device}"] = round(time.perf_counter() - t0, 2)
                for v, res in timed.items():
                    res.runner["variant"] = v
                    results.append(res)
                    result_of[v] = res
                    row_of[v].p50_ms = res.batches[0].latency_ms.p50
        finally:
            for runner in built.values():
                with contextlib.suppress(Exception):
                    runner.deactivate()
            built.clear()
            gc.collect()
        baselines = {"cpu": result_of.get(CPU_BASELINE), "cuda": result_of.get(GPU_BASELINE)}
        for variant, _, _ in variants:
            row = row_of[variant]
            base, mine = baselines.get(row.device), result_of.get(variant)
            speed = ""
            if base is not None and mine is not None:
                # the median of the per-round ratios, so the point sits inside its own interval
                # (the ratio of pooled p50s can fall outside it); the interval is None with a quick
                # run's 2 rounds: too few for a real one
                ratio = median_ratio_ci(base.batches[0].round_p50_ms, mine.batches[0].round_p50_ms)
                row.speedup, row.speedup_ci = ratio.median_ratio, ratio.interval
                ci = f", 95% CI {row.speedup_ci[0]:.2f}-{row.speedup_ci[1]:.2f}" if row.speedup_ci else ""
                speed = f" ({row.speedup:.2f}x{ci})"
            rows.append(row)
            shown = f"{row.p50_ms:.2f} ms" if row.p50_ms else row.status
            _log(f"  {variant:<28} {shown}{speed}" + (f"  [{row.reason}]" if row.reason else ""))
        _log(f"  calibration images: {calib_src}")


def _fail(row: Row, e: BaseException, verbose: bool) -> None:
    """Record why a row did not run: a Skip (or torch.compile not working here) is a skip, else a failure."""
    if isinstance(e, Skip):
        row.status, row.reason = "skipped", str(e)
        return
    compile_row = row.variant == "torch.compile"
    row.status = "skipped" if compile_row else "failed"
    row.reason = ("torch.compile does not work on this machine: " if compile_row else "") + _first_line(e)
    if verbose:
        traceback.print_exc()


def _compiled(model: Any, threads: int, disabled: bool, budget_left_s: float) -> Any:
    from deploykit.backends.torch import TorchRunner

    if disabled:
        raise Skip("torch.compile disabled with --no-compile")
    if budget_left_s < COMPILE_RESERVE_S:
        raise Skip(
            f"skipped to stay within the time budget ({budget_left_s:.0f} s left per model; raise --budget-minutes)"
        )
    return TorchRunner(model, threads=threads, compile=True)


def _gpu_variants(
    model: Any, name: str, files: dict[str, Any], has_cuda: bool, args: argparse.Namespace, tmp: Path
) -> list[tuple[str, str, Callable[[], Any]]]:
    """GPU rows, each skipped with its reason when the GPU or the library is missing."""
    from deploykit.backends.torch import TorchRunner

    def need_cuda() -> None:
        if not has_cuda:
            raise Skip("no CUDA GPU on this machine" if not args.no_gpu else "GPU rows disabled with --no-gpu")

    def torch_cuda(**kw: Any) -> Callable[[], Any]:
        def make() -> Any:
            need_cuda()
            return TorchRunner(model, device="cuda", **kw)

        return make

    def ort_cuda() -> Any:
        need_cuda()
        import onnxruntime as ort

        from deploykit.backends.onnxruntime import OnnxRuntimeRunner

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise Skip("onnxruntime-gpu is not installed (pip install 'deploykit[gpu]')")
        plain = files["plain"]
        if isinstance(plain, Exception):
            raise plain
        return OnnxRuntimeRunner(
            plain, providers=("CUDAExecutionProvider", "CPUExecutionProvider"), name=f"{name}:plain"
        )

    def tensorrt_fp16() -> Any:
        need_cuda()
        if importlib.util.find_spec("tensorrt") is None:
            raise Skip("tensorrt is not installed (pip install 'deploykit[tensorrt]')")
        from deploykit.backends.tensorrt.builder import write_engine
        from deploykit.backends.tensorrt.runner import TensorRTRunner

        plain = files["plain"]
        if isinstance(plain, Exception):
            raise plain
        engine = write_engine(
            plain,
            tmp / "fp16.engine",
            precision="fp16",
            min_batch=1,
            opt_batch=args.batch,
            max_batch=max(args.batch, 8),
        )
        return TensorRTRunner(engine)

    if not has_cuda:  # one row saying why, rather than five identical ones
        return [("GPU rows", "cuda", need_cuda)]
    return [
        (GPU_BASELINE, "cuda", torch_cuda()),
        ("torch cuda fp16 channels-last", "cuda", torch_cuda(precision="fp16", channels_last=True)),
        ("torch cuda fp16 + CUDA graph", "cuda", torch_cuda(precision="fp16", channels_last=True, cuda_graph=True)),
        ("ORT CUDA fp32", "cuda", ort_cuda),
        ("TensorRT fp16", "cuda", tensorrt_fp16),
    ]


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma list (default: the five suite models)")
    p.add_argument("--quick", action="store_true", help="tiny counts for a smoke test; writes to a temp dir")
    p.add_argument("--rounds", type=int, default=None, help=f"interleaved rounds (default {FULL['rounds']})")
    p.add_argument(
        "--iters-per-round",
        type=int,
        default=None,
        help=f"timed calls per row and round (default {FULL['iters_per_round']})",
    )
    p.add_argument("--warmup", type=int, default=None, help=f"warm-up calls per row (default {FULL['warmup']})")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every CPU row")
    p.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results)")
    p.add_argument("--machine", default=None, help="results file name (default: derived from the hardware)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=20.0,
        help="skip torch.compile rows once the suite would overrun this (default 20)",
    )
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU rows even when CUDA is present")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failed rows")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from deploykit.harness.bench import describe_machine, machine_slug
    from deploykit.harness.report import bench_markdown, bench_report, plot_ratios, write_json, write_markdown
    from deploykit.models.registry import resolve_name

    counts = dict(QUICK if args.quick else FULL)
    if args.rounds is not None:
        counts["rounds"] = args.rounds
    if args.iters_per_round is not None:
        counts["iters_per_round"] = args.iters_per_round
    if args.warmup is not None:
        counts["warmup"] = args.warmup
    models = [resolve_name(m) for m in args.models.split(",") if m.strip()]
    torch.set_num_threads(args.threads)
    machine = describe_machine()
    slug = args.machine or machine_slug(machine) + ("-quick" if args.quick else "")
    out = args.out or (Path(tempfile.gettempdir()) / "deploykit-bench-quick" if args.quick else RESULTS_DIR)
    _log(
        f"machine {slug}: {machine['cpu']}, {machine['usable_cores']} cores, "
        f"gpu {machine['gpu'] and machine['gpu']['name']}"
    )
    _log(f"counts: {counts}, batch {args.batch}, threads {args.threads}")

    start = time.perf_counter()
    results: list = []
    rows: list[Row] = []
    timings: dict[str, float] = {}
    load_start = _load()
    if load_start is not None and load_start > 0.5 * (machine["usable_cores"] or 1):
        _log(
            f"warning: load average {load_start:.1f} on {machine['usable_cores']} cores; other jobs will distort "
            "the numbers (torch's OpenMP threads suffer most): run the suite on an idle machine"
        )
    deadline = start + args.budget_minutes * 60
    for i, name in enumerate(models):
        per_model = lambda i=i: (deadline - time.perf_counter()) / (len(models) - i)  # noqa: E731
        bench_model(name, args, counts, machine, results, rows, timings, per_model)
    total = time.perf_counter() - start

    from deploykit.onnx_io import deployment_settings

    suite = {
        "baseline": f"PyTorch eager FP32 on the same device ({CPU_BASELINE} / {GPU_BASELINE})",
        "settings": {
            "models": models,
            "batch": args.batch,
            "threads": args.threads,
            **counts,
            "quick": args.quick,
            "weights": "random (torch.manual_seed(0))",
            "total_s": round(total, 1),
            "ratio": "median over rounds of p50(baseline) / p50(row) within the round, same process, "
            "rows interleaved round by round; speedup_ci: its 95% interval (order statistics)",
            "load_average_start": load_start,
            "load_average_end": _load(),
            "ort_session_settings": deployment_settings(args.threads).to_dict(),
            "sessions": "CPU rows: a fresh session per row per round, one alive at a time, except "
            "torch.compile's compiled module, kept alive (settings.kept_alive of each run)",
            "timings_s": timings,
        },
        "rows": [r.to_dict() for r in rows],
    }
    doc = bench_report(results, machine=machine, suite=suite)
    from deploykit.errors import MissingExtraError
    from deploykit.harness.report import validate_report

    try:
        validate_report(doc)
    except MissingExtraError:  # jsonschema comes with the dev extra; the tests validate reports anyway
        pass
    write_json(doc, out / f"{slug}.json")
    write_markdown(bench_markdown(doc), out / f"{slug}.md")
    plot_ratios(doc, out / f"{slug}.png")
    _log(f"done in {total:.0f} s; wrote {out / slug}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
