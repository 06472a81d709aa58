"""``deploykit list`` and ``deploykit info``: what the zoo holds, and how one model is built."""

from __future__ import annotations

import contextlib

import click

from deploykit.cli.options import load_model_from_options, model_options


def _console():
    from rich.console import Console

    return Console(soft_wrap=False)


def _size(input_size: tuple[int, int, int]) -> str:
    return "x".join(str(v) for v in input_size)


@click.command("list")
@click.option("--family", default=None, help="Only this family (resnet, resnext, densenet, inception).")
def list_cmd(family: str | None) -> None:
    """List the model zoo: parameters and GMACs (1000 classes) at each model's input size."""
    from rich.table import Table

    from deploykit.models.info import zoo_summary

    rows = zoo_summary(family)
    table = Table(title="deploykit model zoo (1000 classes)")
    table.add_column("model", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("GMACs", justify="right", no_wrap=True)
    table.add_column("input", no_wrap=True)
    for r in rows:
        name = r["name"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "")
        table.add_row(name, r["family"], f"{r['params']:,}", f"{r['macs'] / 1e9:.2f}", _size(r["input_size"]))
    _console().print(table)


@click.command("info")
@click.argument("model_name", metavar="MODEL")
@model_options
def info_cmd(
    model_name: str, weights: str | None, num_classes: int | None, input_size, mean, std, labels: str | None
) -> None:
    """Show a model's block structure, parameters, MACs and data config."""
    import torch
    from rich.table import Table

    from deploykit.models import get_spec
    from deploykit.models.info import block_summary, count_macs, count_params

    spec = get_spec(model_name)  # unknown names fail here, with close-match suggestions
    # Without weights nothing needs real tensors: build on the meta device (instant, no memory).
    where = torch.device("meta") if weights is None else contextlib.nullcontext()
    with where:
        model = load_model_from_options(spec.name, weights, num_classes, input_size, mean, std, labels)
    cfg = model.data_config
    macs = count_macs(model, cfg.input_size)

    console = _console()
    aliases = f", aliases: {', '.join(spec.aliases)}" if spec.aliases else ""
    console.print(f"[bold]{spec.name}[/bold] (family: {spec.family}{aliases})")
    if weights:
        console.print(f"weights:        {weights}", markup=False, soft_wrap=True)
    console.print(f"parameters:     {count_params(model):,}")
    console.print(f"MACs:           {macs:,} ({macs / 1e9:.2f} G at batch 1, {_size(cfg.input_size)})")
    console.print(f"input size:     {_size(cfg.input_size)}")
    console.print(f"mean / std:     {_floats(cfg.mean)} / {_floats(cfg.std)}")
    console.print(f"interpolation:  {cfg.interpolation}, crop fraction {cfg.crop_pct:g}")
    labels_note = f" ({', '.join(cfg.labels[:5])}{', ...' if len(cfg.labels) > 5 else ''})" if cfg.labels else ""
    console.print(f"classes:        {cfg.num_classes}{labels_note}", markup=False)

    table = Table(title="block structure")
    table.add_column("stage", no_wrap=True)
    table.add_column("blocks", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    for stage in block_summary(model):
        table.add_row(stage.name, stage.describe(), f"{stage.params:,}")
    console.print(table)


def _floats(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:g}" for v in values)
