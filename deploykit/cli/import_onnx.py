"""``deploykit import MODEL.onnx``: any ONNX image classifier -> a checked deploykit artifact."""

from __future__ import annotations

import click

from deploykit.cli.options import data_config_options, data_overrides, output_options, quiet_option, seed_option


@click.command("import")
@click.argument("source", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@data_config_options
@click.option("--name", default=None, help="Model name recorded in the manifest (default: the file's stem).")
@click.option(
    "--family",
    default="imported",
    show_default=True,
    help="Model family; picks the INT8 recipe (resnet, densenet, googlenet, inception...); "
    "'imported' uses the defaults.",
)
@output_options("Artifact directory (default artifacts/NAME/).")
@quiet_option
@seed_option
def import_cmd(
    source: str,
    input_size,
    mean,
    std,
    labels: str | None,
    interpolation: str | None,
    crop_pct: float | None,
    name: str | None,
    family: str,
    out: str | None,
    force: bool,
    quiet: bool,
    seed: int,
) -> None:
    """Import MODEL.onnx (another exporter's file) as an artifact every stage takes.

    Checks it (ONNX checker, shape inference), upgrades an old opset to 18, loads it in ONNX
    Runtime and proves the stored model matches the source file on fixed-seed inputs.
    """
    from deploykit.export.from_onnx import import_onnx

    artifact = import_onnx(
        source,
        out,
        name=name,
        family=family,
        overrides=data_overrides(input_size, mean, std, labels, interpolation, crop_pct),
        force=force,
        progress=not quiet,
        seed=seed,
    )
    click.echo(summary(artifact))


def summary(artifact) -> str:
    """Where the artifact is, what it was imported from, what changed and what parity proved."""
    m = artifact.manifest
    stage = m.stages[0]
    src = stage["source"]
    size = sum(f["bytes"] for f in m.files.values())
    shape = "x".join(str(d) for d in m.inputs[0].shape)
    producer = " ".join(v for v in (src["producer_name"], src["producer_version"]) if v) or "unknown producer"
    lines = [
        f"Wrote {artifact.path} ({size / 1e6:.1f} MB): {m.model} (family {m.family}) fp32, opset {m.opset}, "
        f"input {m.inputs[0].name} {shape}, {m.data_config.num_classes} classes",
        f"Imported from {src['path']} ({producer}, IR {src['ir_version']}, opset {src['opset']}, "
        f"sha256 {src['sha256'][:12]})",
    ]
    lines += [f"Changed: {c}" for c in stage["changes"]] or ["Changed: nothing (graph stored as given)"]
    r = stage["parity"]["fixed_seed"]
    lines.append(
        f"Parity vs the source file on {r['count']} fixed-seed inputs: max abs {r['max_abs']:.3g}, "
        f"cosine {r['cosine']:.6f}, top-1 agreement {r['top1_agreement']:.1%} (gate passed)"
    )
    lines += [f"Note: {n}" for n in m.results.get("notes", [])]
    return "\n".join(lines)
