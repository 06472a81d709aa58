"""``deploykit export MODEL``: a zoo model + checkpoint -> parity-proven ONNX artifact directory."""

from __future__ import annotations

import click

from deploykit.cli.options import (
    batch_spec,
    data_overrides,
    deprecated_alias,
    model_options,
    output_options,
    quiet_option,
    seed_option,
)


@click.command("export")
@click.argument("model")
@model_options
@click.option(
    "--opset",
    type=int,
    default=None,
    help="ONNX opset (default 18; 13-20 accepted by ONNX Runtime and TensorRT 10 and 11).",
)
@click.option(
    "--batch",
    callback=batch_spec,
    default=None,
    metavar="N|MIN:OPT:MAX",
    help="A fixed batch size N, or the dynamic profile MIN:OPT:MAX the artifact promises "
    "(default 1:1:32; engines are tuned for OPT, benchmarks and runtimes accept MIN..MAX).",
)
@click.option(
    "--dynamic-batch",
    is_flag=True,
    default=False,
    hidden=True,
    callback=deprecated_alias("--dynamic-batch", "--batch MIN:OPT:MAX (dynamic is the default)"),
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,
    callback=deprecated_alias("--max-batch", "--batch 1:OPT:MAX"),
)
@click.option(
    "--opt-batch",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,
    callback=deprecated_alias("--opt-batch", "--batch 1:OPT:MAX"),
)
@click.option("--fp16", is_flag=True, help="Write an FP16 model (float32 inputs/outputs kept).")
@click.option("--fp16-io", is_flag=True, help="With --fp16: float16 inputs and outputs too.")
@click.option(
    "--int8",
    is_flag=True,
    help="Then quantise for TensorRT (Q/DQ profile, needs --calib and --val) "
    "and build the INT8 engine when TensorRT and a GPU are present.",
)
@click.option(
    "--calib", default=None, metavar="SPEC", help="With --int8: calibration images, e.g. fashion-mnist:train[:512]."
)
@click.option("--val", default=None, metavar="SPEC", help="With --int8: validation set of the accuracy gate.")
@click.option("--no-optimize", "no_optimize", is_flag=True, help="Skip the graph optimiser.")
@click.option(
    "--data",
    default=None,
    metavar="SPEC",
    help="Also check parity on real images, e.g. fashion-mnist:test[:64] or a folder.",
)
@output_options("Artifact directory (default artifacts/MODEL/, artifacts/MODEL-fp16/ for --fp16).")
@click.option(
    "--exporter",
    type=click.Choice(["auto", "torchscript", "dynamo"]),
    default="auto",
    show_default=True,
    help="torch.onnx exporter; auto = TorchScript, dynamo if that fails.",
)
@quiet_option
@seed_option
def export_cmd(
    model: str,
    weights: str | None,
    num_classes: int | None,
    input_size,
    mean,
    std,
    labels: str | None,
    opset: int | None,
    batch: int | tuple[int, int, int] | None,
    dynamic_batch: bool,
    max_batch: int | None,
    opt_batch: int | None,
    fp16: bool,
    fp16_io: bool,
    int8: bool,
    calib: str | None,
    val: str | None,
    no_optimize: bool,
    data: str | None,
    out: str | None,
    exporter: str,
    force: bool,
    quiet: bool,
    seed: int,
) -> None:
    """Export MODEL to ONNX, optimise it and prove it matches PyTorch (parity gate).

    With --fp16 (or --int8 --calib SPEC --val SPEC) the TensorRT engine is built too when the
    tensorrt extra and an NVIDIA GPU are present; otherwise one line says why and how to build it later.
    """
    from deploykit.export.api import export_model

    min_batch = None
    if isinstance(batch, tuple):
        if max_batch is not None or opt_batch is not None:
            raise click.UsageError("--batch MIN:OPT:MAX already gives the profile; drop --max-batch/--opt-batch")
        min_batch, opt_batch, max_batch = batch
        batch = None
    if batch is not None and dynamic_batch:
        raise click.UsageError("--batch N (fixed) and --dynamic-batch exclude each other; give one")
    if batch is not None and (max_batch is not None or opt_batch is not None):
        raise click.UsageError("--max-batch/--opt-batch apply to a dynamic batch, not with --batch")
    if fp16_io and not fp16:
        raise click.UsageError("--fp16-io needs --fp16")
    if int8 and (fp16 or not calib or not val):
        raise click.UsageError("--int8 needs --calib SPEC and --val SPEC, and excludes --fp16")
    if (calib or val) and not int8:
        raise click.UsageError("--calib/--val go with --int8")
    artifact = export_model(
        model,
        weights=weights,
        num_classes=num_classes,
        overrides=data_overrides(input_size, mean, std, labels) or None,
        out=out,
        opset=opset,
        batch=batch,
        dynamic_batch=True if batch is None else False,
        fp16=fp16,
        optimize=not no_optimize,
        data=data,
        force=force,
        progress=not quiet,
        fp16_io=fp16_io,
        exporter=exporter,
        opt_batch=opt_batch,
        max_batch=max_batch,
        min_batch=min_batch,
        seed=seed,
    )
    click.echo(summary(artifact))
    if fp16 or int8:
        _engine(artifact, int8, calib, val, force, quiet)


def _engine(artifact, int8: bool, calib: str | None, val: str | None, force: bool, quiet: bool) -> None:
    """The engine stage after the export (deploykit.harness.headline does the work)."""
    from deploykit.cli.build import progress_printer
    from deploykit.harness.headline import engine_after_export, int8_engine_after_export

    say = None if quiet else (lambda s: click.echo(s, err=True))
    progress = None if quiet else progress_printer()
    if int8:
        int8_art, outcome = int8_engine_after_export(
            artifact, calib, val, force=force, quantize_progress=not quiet, log_fn=say, progress=progress
        )
        click.echo(f"Wrote {int8_art.path}: INT8 (TensorRT Q/DQ profile), accuracy gate passed")
    else:
        outcome = engine_after_export(artifact, "fp16", force=force, progress=progress)
    for line in outcome.lines():
        click.echo(line)


def summary(artifact) -> str:
    """A few lines: where the artifact is, how big, and what parity proved."""
    m = artifact.manifest
    size = sum(f["bytes"] for f in m.files.values())
    shape = "x".join(str(d) for d in m.inputs[0].shape)
    lines = [
        f"Wrote {artifact.path} ({size / 1e6:.1f} MB): {m.model} {m.precision}, "
        f"opset {m.opset}, input {m.inputs[0].name} {shape} {m.inputs[0].dtype}",
    ]
    parity = m.results.get("parity", {})
    for key, label in (("fixed_seed", "fixed-seed inputs"), ("data", "real images")):
        r = parity.get(key)
        if r:
            lines.append(
                f"Parity vs PyTorch on {r['count']} {label}: max abs {_g(r['max_abs'])} "
                f"({_g(r['max_rel'])} of logit range), cosine {_f(r['cosine'])}, "
                f"top-1 agreement {_pct(r['top1_agreement'])} (gate passed)"
            )
    for note in m.results.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def _g(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _f(v) -> str:
    return f"{v:.6f}" if isinstance(v, float) else str(v)


def _pct(v) -> str:
    return f"{v:.1%}" if isinstance(v, float) else str(v)
