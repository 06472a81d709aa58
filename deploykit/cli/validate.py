"""``deploykit validate``: accuracy on labelled data with the FP32 gate (thin wrapper)."""

from __future__ import annotations

import click

from deploykit.cli.options import (
    data_overrides,
    deprecated_alias,
    device_option,
    model_options,
    quiet_option,
    threads_option,
)


@click.command("validate")
@click.argument("target")
@click.option(
    "--data",
    "data",
    required=True,
    help="Labelled data: fashion-mnist:test, fashion-mnist:test[:500], or an image folder.",
)
@model_options
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Images per inference batch (a fixed-batch artifact uses its own).",
)
@click.option(
    "--batch-size",
    "old_batch_size",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,
    callback=deprecated_alias("--batch-size", "--batch"),
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N images.")
@click.option(
    "--gate",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=0.99,
    show_default=True,
    help="Pass when top-1 is at least this fraction of the FP32 reference's (MLPerf: 0.99).",
)
@threads_option
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the results as JSON to this file.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also draw per-class accuracy and the confusion matrix to this PNG.",
)
@click.option(
    "--backend",
    default=None,
    help="Runtime for an artifact: onnxruntime, onnxruntime-cuda, onnxruntime-trt or tensorrt "
    "(default: onnxruntime, tensorrt for an engine artifact).",
)
@device_option
@click.option("--no-record", is_flag=True, help="Do not store the accuracy in the artifact's manifest.")
@quiet_option
def validate_cmd(
    target: str,
    data: str,
    weights: str | None,
    num_classes: int | None,
    input_size,
    mean,
    std,
    labels: str | None,
    batch: int,
    old_batch_size: int | None,
    limit: int | None,
    gate: float,
    threads: int | None,
    json_path: str | None,
    plot_path: str | None,
    backend: str | None,
    device: str,
    no_record: bool,
    quiet: bool,
) -> None:
    """Top-1/top-5 and per-class accuracy of TARGET (artifact directory or zoo model name).

    For an artifact, the drop against its FP32 reference is gated: the command exits non-zero
    when top-1 falls below GATE x the reference's top-1 (exit code 3).
    """
    from deploykit.errors import GateError
    from deploykit.harness.validate import render, validate

    report = validate(
        target,
        data,
        weights=weights,
        num_classes=num_classes,
        overrides=data_overrides(input_size, mean, std, labels),
        gate=gate,
        batch_size=old_batch_size or batch,
        limit=limit,
        json_path=json_path,
        threads=threads,
        progress=not quiet,
        record=not no_record,
        plot_path=plot_path,
        backend=backend,
        device=device,
    )
    render(report)
    for what, path in (("results", json_path), ("plot", plot_path)):
        if path:
            click.echo(f"{what} written to {path}")
    if not report.passed:
        raise GateError(f"accuracy gate failed: {report.gate['message']}")
