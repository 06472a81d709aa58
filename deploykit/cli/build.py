"""``deploykit build ARTIFACT``: an ONNX artifact -> a TensorRT engine artifact (model.plan + manifest)."""

from __future__ import annotations

import click

from deploykit.cli.options import output_options, quiet_option


def _batch(ctx: click.Context, param: click.Parameter, value: str | None):
    from deploykit.build import parse_batch
    from deploykit.errors import DeployKitError

    try:
        return parse_batch(value)
    except DeployKitError as e:
        raise click.BadParameter(str(e)) from None


@click.command("build")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8", "best"]),
    default="fp16",
    show_default=True,
    help="Engine precision, which must be what the artifact's graph holds (engines are strongly typed): "
    "fp32 from an FP32 artifact; fp16 from an FP16 one (an FP32 artifact is converted first); int8 from "
    "an INT8 artifact made with 'deploykit quantize --profile tensorrt'; best from one made with "
    "'--profile tensorrt --high-precision fp16' (INT8 with FP16 outside the Q/DQ pairs).",
)
@click.option(
    "--batch",
    callback=_batch,
    default=None,
    metavar="MIN:OPT:MAX",
    help="Batch profile, e.g. 1:8:32, or one number for a fixed batch (default: the artifact's profile).",
)
@click.option(
    "--workspace",
    "workspace_mb",
    type=click.IntRange(min=1),
    default=None,
    metavar="MB",
    help="Builder workspace memory pool limit in MB (default: TensorRT's, the GPU's memory).",
)
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False),
    default=None,
    help="Timing cache file: created when absent, reused when made by this TensorRT and GPU, refused "
    "when made by another TensorRT version (a PATH.meta.json sidecar records who wrote it).",
)
@click.option(
    "--opt-level",
    type=click.IntRange(0, 5),
    default=None,
    help="TensorRT builder optimisation level 0-5 (TensorRT's default 3; higher builds longer).",
)
@click.option(
    "--hardware-compat",
    type=click.Choice(["none", "ampere+", "same-cc"]),
    default="none",
    show_default=True,
    help="ampere+: the engine runs on any discrete Ampere or newer GPU (sm 8.0+; not on Jetson/DRIVE); "
    "same-cc: on any GPU of this one's compute capability. Both can be slower.",
)
@click.option(
    "--version-compatible",
    is_flag=True,
    help="The engine also runs on later TensorRT releases of the same major version, and a TensorRT 10 "
    "engine on TensorRT 11 (embeds the lean runtime; runners allow its host code).",
)
@click.option(
    "--tf32",
    is_flag=True,
    help="Let FP32 layers use TF32 on Ampere and newer (faster, ~1e-3 relative error); off by default, "
    "recorded in the manifest.",
)
@output_options("Engine artifact directory (default: ARTIFACT-trt-PRECISION next to ARTIFACT).")
@quiet_option
def build_cmd(
    artifact: str,
    precision: str,
    batch,
    workspace_mb: int | None,
    timing_cache: str | None,
    opt_level: int | None,
    hardware_compat: str,
    version_compatible: bool,
    tf32: bool,
    out: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Build a TensorRT engine artifact from the ONNX artifact ARTIFACT.

    Needs the tensorrt extra (pip install 'deploykit[tensorrt]') and an NVIDIA GPU. The result is a
    directory with model.plan, build.log and manifest.json recording the TensorRT version, GPU,
    compute capability, precision (checked against the graph's types before building), batch profile,
    flags, build time and the sha256 of the engine and the ONNX it was built from; runners refuse it
    on another TensorRT version or GPU unless it was built with --version-compatible / --hardware-compat.
    """
    from deploykit.build import build_engine_artifact

    progress = None if quiet else progress_printer()
    result = build_engine_artifact(
        artifact,
        precision=precision,
        batch=batch,
        workspace_mb=workspace_mb,
        timing_cache=timing_cache,
        opt_level=opt_level,
        hardware_compat=hardware_compat,
        version_compatible=version_compatible,
        tf32=tf32,
        out=out,
        force=force,
        progress=progress,
    )
    click.echo(engine_summary(result))


def progress_printer():
    """A progress callback printing one stderr line per builder phase and every tenth of its steps."""
    seen: dict[str, int] = {}

    def show(phase: str, step: int, steps: int) -> None:
        tenth = (10 * step // steps) if steps else 0
        if seen.get(phase) == tenth:
            return
        seen[phase] = tenth
        click.echo(f"  {phase}: {step}/{steps}", err=True)

    return show


def engine_summary(result) -> str:
    """One line: where the engine is, what it was built with, and how long it took."""
    r = result.record
    b = r["batch"]
    return (
        f"Wrote {result.path}: {r['precision']} engine, batch {b['min']}:{b['opt']}:{b['max']}, "
        f"TensorRT {r['tensorrt']} on {r['gpu']} (sm {r['compute_capability']}), built in {result.seconds:.1f} s"
    )
