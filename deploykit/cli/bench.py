"""``deploykit bench`` and ``deploykit compare``: thin wrappers over deploykit.harness."""

from __future__ import annotations

from itertools import product
from typing import Any

import click

from deploykit.artifact import PRECISIONS
from deploykit.cli.options import (
    data_overrides,
    device_option,
    int_list,
    model_options,
    name_list,
    quiet_option,
    report_options,
    report_tables,
    seed_option,
    threads_option,
)
from deploykit.errors import DeployKitError


def _old_backends(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    from deploykit.cli.options import deprecated_alias

    return name_list(ctx, param, deprecated_alias("--backends", "--backend")(ctx, param, value))


def _load_target(target: str, weights: Any, num_classes: Any, input_size: Any, mean: Any, std: Any, labels: Any) -> Any:
    """A zoo model name becomes one nn.Module (so every backend runs the same weights); paths pass through."""
    from deploykit.models.registry import looks_like_model_name

    overrides = data_overrides(input_size, mean, std, labels)
    if not looks_like_model_name(target):
        if weights or num_classes or overrides:
            raise DeployKitError(
                f"{target}: --weights/--num-classes/--input-size/--mean/--std/--labels apply to a "
                "zoo model name, not to a file or artifact"
            )
        return target
    from deploykit.models.weights import load_model

    return load_model(target, weights=weights, num_classes=num_classes, overrides=overrides or None)


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough that no number is cut
        console.width = 200
    return console


def _rich_table(title: str, header: Any, rows: list[list[str]]):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for h in header:
        table.add_column(
            h,
            justify="left"
            if h
            in ("run", "runner", "backend", "device", "precision", "output", "result", "model", "variant", "status")
            else "right",
        )
    for row in rows:
        table.add_row(*(Text(c) for c in row))  # Text: names like "onnxruntime[x,CPU]" are not markup
    return table


@click.command("bench")
@click.argument("target")
@click.option(
    "--backend",
    "backends",
    callback=name_list,
    default="onnxruntime",
    show_default=True,
    help="torch, onnxruntime, tensorrt; a comma list runs each in turn.",
)
@device_option
@click.option(
    "--precision",
    "precisions",
    callback=name_list,
    default=None,
    help="torch: fp32 or fp16 (CUDA); files: checked against the artifact. Comma list allowed.",
)
@click.option("--batch", "batches", callback=int_list, default="1", show_default=True, help="Batch sizes, e.g. 1,8,32.")
@threads_option
@click.option(
    "--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed calls per batch size."
)
@click.option("--iters", type=click.IntRange(min=1), default=None, help="Timed calls per batch size (default 200).")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds of timed calls per batch size, instead of --iters.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=None,
    help="Time every backend/precision in this many alternating rounds, a fresh session each round and one "
    "alive at a time (as deployed), and print each one's speed-up over the first with a 95% interval; "
    "--iters is then the total per run.",
)
@click.option("--channels-last", is_flag=True, help="torch: channels-last memory format.")
@click.option("--cuda-graph", is_flag=True, help="torch on CUDA: capture once, replay a CUDA graph.")
@click.option("--compile", "compile_", is_flag=True, help="torch: run through torch.compile.")
@report_options
@quiet_option
@click.option(
    "--record",
    is_flag=True,
    help="Store the latency summary in the artifact's manifest (TARGET must be an artifact dir); for an ONNX "
    "artifact on the CPU, also time every installed CPU runtime on it and record the fastest per batch.",
)
@model_options
def bench_cmd(
    target: str,
    backends: list[str],
    device: str,
    precisions: list[str] | None,
    batches: list[int],
    threads: int | None,
    warmup: int,
    iters: int | None,
    duration: float | None,
    rounds: int | None,
    channels_last: bool,
    cuda_graph: bool,
    compile_: bool,
    json_path: str | None,
    md_path: str | None,
    plot_path: str | None,
    quiet: bool,
    record: bool,
    weights: Any,
    num_classes: Any,
    input_size: Any,
    mean: Any,
    std: Any,
    labels: Any,
) -> None:
    """Measure latency and throughput of TARGET (artifact dir, .onnx, .engine or zoo model name)."""
    from deploykit.harness.bench import benchmark, describe_machine, interleaved_results, speedup_lines
    from deploykit.harness.report import (
        bench_columns,
        bench_markdown,
        bench_report,
        bench_rows,
        latency_summary,
        machine_line,
        plot_latency,
        write_json,
        write_markdown,
    )
    from deploykit.harness.runners import runner_for

    if iters is not None and duration is not None:
        raise click.UsageError("give --iters or --duration, not both")
    if rounds is not None and duration is not None:
        raise click.UsageError("--rounds counts calls; give it with --iters, not --duration")
    artifact = None
    if record:
        from deploykit.artifact import Artifact, is_artifact_dir

        if not is_artifact_dir(target):
            raise DeployKitError(f"{target}: --record needs an artifact directory (one with a manifest.json)")
        artifact = Artifact.load(target)  # verified now, so a bad artifact fails before the timing
    obj = _load_target(target, weights, num_classes, input_size, mean, std, labels)
    torch_opts = {
        k: v for k, v in (("channels_last", channels_last), ("cuda_graph", cuda_graph), ("compile", compile_)) if v
    }
    machine = describe_machine()
    console = _console()
    model_name = getattr(obj, "model_name", None) or str(target)
    runners = []
    for backend, precision in product(backends, precisions or [None]):
        opts = torch_opts if backend in ("torch", "pytorch") else {}
        if not opts and torch_opts and len(backends) == 1:
            raise DeployKitError(f"--channels-last/--cuda-graph/--compile apply to the torch backend, not {backend}")
        runner = runner_for(
            obj, backend=backend, device=device, threads=threads, batch_sizes=batches, precision=precision, **opts
        )
        runners.append((runner, precision))
    if rounds is not None:
        results = interleaved_results(
            runners, batches, rounds, iters, warmup, console.is_terminal and not quiet, machine, model_name
        )
    else:
        results = [
            benchmark(
                runner,
                batches,
                warmup=warmup,
                iters=iters,
                duration=duration,
                progress=console.is_terminal and not quiet,
                machine=machine,
                model=model_name,
            )
            for runner, _ in runners
        ]
    doc = bench_report(results, machine=machine)
    columns = bench_columns(doc)
    keep = [i for i, c in enumerate(columns) if c not in ("backend", "device")]  # both are in the run label
    console.print(
        _rich_table(
            f"deploykit bench {target} (latency in ms)",
            [columns[i].replace(" ms", "") for i in keep],
            [[row[i] for i in keep] for row in bench_rows(doc)],
        )
    )
    console.print(f"machine: {machine_line(machine)}", highlight=False, markup=False)  # "[zen4]" is not rich markup
    if rounds is not None:
        console.print(
            f"timed as deployed: {results[0].settings['sessions']}, each with its own settings "
            f"(ORT: thread spinning on), {rounds} rounds",
            highlight=False,
            soft_wrap=True,
        )
        for line in speedup_lines(results):
            console.print(line, highlight=False, soft_wrap=True)
    for b in (b for r in results for b in r.batches if not b.p99_reliable):
        console.print(
            f"note: batch {b.batch} p99 rests on {b.iterations} samples; use --iters 200 or more to trust it",
            highlight=False,
        )
        break
    if json_path:
        write_json(doc, json_path)
    if md_path:
        write_markdown(bench_markdown(doc), md_path)
    if plot_path:
        plot_latency(doc, plot_path)
    if artifact is not None:
        artifact.record_result("latency", latency_summary(doc))
        console.print(f"recorded latency of {len(results)} run(s) in {artifact.manifest_path}", highlight=False)
        if artifact.manifest.format == "onnx" and device == "cpu":
            from deploykit.harness.bench import compare_runtimes

            # every installed CPU runtime on this artifact, as deployed: the one to run it with here
            choice = compare_runtimes(artifact, batches, threads, progress=console.is_terminal and not quiet)
            artifact.record_result("runtime_choice", choice.to_dict())
            console.print(choice.summary(), highlight=False, soft_wrap=True)
            console.print(f"recorded the runtime choice ({choice.best}) in {artifact.manifest_path}", highlight=False)


@click.command("compare")
@click.argument("target")
@click.option(
    "--backend",
    "backends",
    callback=name_list,
    default="torch,onnxruntime",
    show_default=True,
    help="Comma list; the first is the reference the others must match.",
)
@click.option("--backends", "old_backends", callback=_old_backends, default=None, hidden=True)
@click.option(
    "--data", default=None, help="Real images (e.g. fashion-mnist:test[:64] or a folder) instead of fixed-seed inputs."
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size fed to every backend."
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=None,
    help="Samples to compare (default: one batch of fixed-seed inputs, or 64 images with --data).",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="Gate to apply (default: the loosest precision among the backends).",
)
@device_option
@threads_option
@seed_option
@report_tables
@quiet_option
@model_options
def compare_cmd(
    target: str,
    backends: list[str],
    old_backends: list[str] | None,
    data: str | None,
    batch: int,
    samples: int | None,
    precision: str | None,
    device: str,
    threads: int | None,
    seed: int,
    json_path: str | None,
    md_path: str | None,
    quiet: bool,
    weights: Any,
    num_classes: Any,
    input_size: Any,
    mean: Any,
    std: Any,
    labels: Any,
) -> None:
    """Check that every backend gives TARGET's answers; exits 3 when a tolerance is exceeded."""
    from deploykit.harness.compare import compare_backends
    from deploykit.harness.report import compare_markdown, compare_report, write_json, write_markdown

    backends = old_backends or backends
    obj = _load_target(target, weights, num_classes, input_size, mean, std, labels)
    console = _console()
    result = compare_backends(
        obj,
        backends,
        data=data,
        batch=batch,
        precision=precision,
        device=device,
        threads=threads,
        samples=samples,
        seed=seed,
        progress=console.is_terminal and not quiet,
    )
    doc = compare_report(result)
    rows = []
    for r in result.rows:
        p = r.parity
        rows.append(
            [
                r.runner,
                r.output,
                f"{p.max_abs:.3g}",
                f"{p.max_rel:.3g}",
                f"{p.cosine:.6f}",
                f"{p.top1_agreement:.2%}",
                "pass" if r.passed else "FAIL",
            ]
        )
    inp = result.inputs
    title = (
        f"compare against {result.reference['name']} ({inp['samples']} samples from {inp['source']}, "
        f"{result.precision} gate)"
    )
    console.print(
        _rich_table(title, ("runner", "output", "max abs", "max rel", "cosine", "top-1 agree", "result"), rows)
    )
    if json_path:
        write_json(doc, json_path)
    if md_path:
        write_markdown(compare_markdown(doc), md_path)
    if not result.passed:
        for f in result.failures:
            click.echo(f"FAIL {f}", err=True)
        raise click.exceptions.Exit(3)
    click.echo(f"PASS: {len(result.rows)} output comparison(s) within the {result.precision} gate")
