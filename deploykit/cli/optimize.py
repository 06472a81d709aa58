"""``deploykit optimize IN``: rewrite an ONNX file or artifact with the graph passes, prove parity."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.options import deprecated_alias, report_tables


def _passes(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    from deploykit.errors import DeployKitError
    from deploykit.optimize import resolve_passes

    try:
        return resolve_passes(value)
    except DeployKitError as e:
        raise click.BadParameter(str(e)) from None


@click.command("optimize")
@click.argument("source", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file or artifact directory (default: <IN>-opt).",
)
@click.option("--force", is_flag=True, help="Replace the output if it exists (atomically).")
@click.option(
    "--passes",
    callback=_passes,
    default=None,
    metavar="LIST",
    help="Comma-separated passes, or 'all' / 'default' (default: the ORT-CPU pipeline, "
    "without fuse_parallel_conv); see --list-passes.",
)
@click.option("--details", is_flag=True, help="Show what each pass rewrote.")
@click.option(
    "--report", "old_report", is_flag=True, hidden=True, callback=deprecated_alias("--report (the flag)", "--details")
)
@report_tables
@click.option(
    "--no-verify", is_flag=True, help="Files only: skip the ONNX Runtime parity check (e.g. custom ops ORT cannot run)."
)
@click.option(
    "--list-passes",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, p, v: _list(ctx) if v else None,
    help="List the passes and exit.",
)
def optimize_cmd(
    source: Path,
    out: Path | None,
    force: bool,
    passes: list[str] | None,
    details: bool,
    old_report: bool,
    json_path: str | None,
    md_path: str | None,
    no_verify: bool,
) -> None:
    """Optimise IN (an .onnx file or an fp32 artifact directory) and check it still computes the same."""
    from deploykit.artifact import is_artifact_dir
    from deploykit.errors import DeployKitError
    from deploykit.optimize import default_output, optimize_artifact, optimize_file

    target = out or default_output(source)
    if is_artifact_dir(source):
        if no_verify:
            raise click.UsageError("--no-verify is for plain .onnx files; artifacts always record parity")
        artifact, result = optimize_artifact(source, target, passes=passes, force=force)
        written = artifact.path
    else:
        if source.is_dir():
            raise DeployKitError(f"{source}: a directory without manifest.json; give an .onnx file or an artifact")
        if target.exists() and not force:
            raise DeployKitError(f"{target}: already exists; pass --force to replace it")
        result = optimize_file(source, target, passes=passes, verify=not no_verify)
        written = target
    _print(result, written, details or old_report)
    _write_reports(result, written, json_path, md_path)


def _write_reports(result, written: Path, json_path: str | None, md_path: str | None) -> None:
    """The per-pass report as JSON and a Markdown table, for CI logs and reviews."""
    from deploykit._io import atomic_write_json, atomic_write_text

    doc = {"output": str(written), **result.to_dict()}
    if json_path:
        atomic_write_json(json_path, doc)
    if md_path:
        rows = ["| pass | nodes before | nodes after | rewrites | seconds |", "|---|---:|---:|---:|---:|"]
        rows += [
            f"| {r.name} | {r.nodes_before} | {r.nodes_after} | {r.rewrites} | {r.seconds:.2f} |"
            for r in result.reports
        ]
        atomic_write_text(md_path, f"# Optimisation of {written}\n\n" + "\n".join(rows) + "\n")


def _print(result, written: Path, report: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title="Optimisation passes", show_lines=False)
    for col, just in (
        ("pass", "left"),
        ("nodes before", "right"),
        ("nodes after", "right"),
        ("rewrites", "right"),
        ("seconds", "right"),
    ):
        table.add_column(col, justify=just)
    for r in result.reports:
        table.add_row(r.name, str(r.nodes_before), str(r.nodes_after), str(r.rewrites), f"{r.seconds:.2f}")
    console.print(table)
    if report:
        for r in result.reports:
            for d in r.details:
                click.echo(f"  {r.name}: {d}")
    p = result.parity
    parity = (
        "parity NOT checked (--no-verify)"
        if p is None
        else f"parity vs input: max rel err {p.max_rel:.3g}, top-1 agreement {p.top1_agreement:.1%} "
        f"on batch {p.batch} (gate passed)"
    )
    click.echo(
        f"Wrote {written}: {result.nodes_before} -> {result.nodes_after} nodes in "
        f"{result.iterations} round(s); {parity}"
    )


def _list(ctx: click.Context) -> None:
    from deploykit.optimize import DEFAULT_PASSES, list_passes
    from deploykit.optimize.passes import PASSES

    for name in list_passes():
        mark = "*" if name in DEFAULT_PASSES else " "
        click.echo(f"{mark} {name:20s} {PASSES[name].description}")
    click.echo("* = in the default pipeline; 'all' adds fuse_parallel_conv; others by name only")
    ctx.exit(0)
