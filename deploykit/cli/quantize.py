"""``deploykit quantize``: FP32 artifact -> INT8 artifact behind an accuracy gate."""

from __future__ import annotations

import click

from deploykit.cli.options import deprecated_alias, output_options, quiet_option, threads_option
from deploykit.quantize.calibrators import METHODS
from deploykit.quantize.placement import PROFILES


def _gate(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not 0 < value <= 1:
        raise click.BadParameter(f"{value} must be in (0, 1], e.g. 0.995 (INT8 keeps 99.5% of FP32 top-1)")
    return value


@click.command("quantize")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option(
    "--calib",
    required=True,
    help="Calibration images: fashion-mnist:train[:512], or an image folder (never the validation split).",
)
@click.option("--val", required=True, help="Validation set for the accuracy gate, e.g. fashion-mnist:test.")
@click.option(
    "--profile",
    type=click.Choice(PROFILES),
    default="onnxruntime",
    show_default=True,
    help="Q/DQ layout for the runtime that will run the model (onnxruntime, openvino or tensorrt).",
)
@click.option(
    "--method",
    type=click.Choice([*METHODS, "auto"]),
    default=None,
    help="Calibrator (default: the recipe's); auto tries all and keeps the best that passes.",
)
@click.option(
    "--gate",
    type=float,
    default=None,
    callback=_gate,
    help="INT8 top-1 must be >= GATE x FP32 top-1 (default: the recipe's, 0.995).",
)
@click.option("--recipe", default=None, help="A shipped recipe by name (resnet, densenet, ...) or your own FILE.toml.")
@click.option("--num-images", type=click.IntRange(min=1), default=None, help="Calibration images to use.")
@click.option("--keep-fp32", multiple=True, help="Node-name glob (or first/last) to leave in FP32; repeatable.")
@click.option(
    "--max-fallbacks", type=click.IntRange(min=0), default=None, help="Layers that may return to FP32 before giving up."
)
@output_options("Output artifact directory (default: ARTIFACT-int8 / ARTIFACT-int8-trt).")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the quantisation report as JSON here (and its SQNR plot beside it).",
)
@click.option(
    "--report",
    "old_report",
    type=click.Path(dir_okay=False),
    default=None,
    hidden=True,
    callback=deprecated_alias("--report", "--json"),
)
@threads_option
@quiet_option
@click.option(
    "--int8-layout",
    "layout",
    type=click.Choice(["vnni", "avx2"]),
    default=None,
    help="CPU-profile (onnxruntime, openvino) weights: full range (vnni) or reduced 7-bit range (avx2, exact on CPUs "
    "without VNNI). Default: this CPU's.",
)
@click.option(
    "--search-images",
    type=click.IntRange(min=0),
    default=None,
    help="Validation images the fallback search scores candidates on before confirming on the whole "
    "set (default 2000; 0: the whole set).",
)
@click.option(
    "--high-precision",
    "high_precision",
    type=click.Choice(["fp32", "fp16"]),
    default=None,
    help="tensorrt profile: the type of the layers outside the Q/DQ pairs. fp16 is what "
    "`build --precision best` builds (FP16 scales, opset 19, FP32 kept where FP16 would overflow). "
    "Default fp32.",
)
@click.option(
    "--no-speed-check",
    is_flag=True,
    help="Skip the few seconds of timing INT8 against its FP32 parent on this machine.",
)
def quantize_cmd(
    artifact: str,
    calib: str,
    val: str,
    profile: str,
    method: str | None,
    gate: float | None,
    recipe: str | None,
    num_images: int | None,
    keep_fp32: tuple[str, ...],
    max_fallbacks: int | None,
    out: str | None,
    force: bool,
    json_path: str | None,
    old_report: str | None,
    threads: int | None,
    quiet: bool,
    layout: str | None,
    search_images: int | None,
    high_precision: str | None,
    no_speed_check: bool,
) -> None:
    """Quantise ARTIFACT to INT8, validate it, and fall back layer by layer until the gate passes.

    Exits 3 when INT8 stays under the gate after every allowed fallback (no artifact is written).
    """
    import warnings

    from rich.console import Console

    from deploykit.quantize import GateFailedError, QuantizeWarning, quantize_artifact

    err = Console(stderr=True)
    warnings.simplefilter("ignore", QuantizeWarning)  # printed once through log_fn instead
    try:
        result = quantize_artifact(
            artifact,
            calib,
            val,
            out=out,
            force=force,
            report=json_path or old_report,
            progress=not quiet,
            log_fn=lambda s: err.print(s, markup=False, highlight=False),
            speed_check=not no_speed_check,
            profile=profile,
            method=method,
            gate=gate,
            recipe=recipe,
            num_images=num_images,
            keep_fp32=list(keep_fp32) or None,
            max_fallbacks=max_fallbacks,
            threads=threads,
            layout=layout,
            high_precision_dtype=high_precision,
            search_images=search_images,
        )
    except GateFailedError as e:
        if e.report is not None:
            e.report.render(err)
        raise
    result.report.render(err)
    if recipe is None and result.options.recipe == "default":  # a family no recipe knows (an imported model)
        m = result.artifact.manifest
        err.print(
            f"recipe: the defaults (no INT8 recipe for {m.model}, family '{m.family}'; --recipe picks one)",
            markup=False,
            highlight=False,
        )
    if result.speed is not None:  # a PASS never stands without the speed-up it buys here
        err.print(result.speed.summary(), markup=False, highlight=False, soft_wrap=True)
        if result.speed.advice():
            err.print(result.speed.advice(), markup=False, highlight=False, soft_wrap=True)
    if (result.path / "calibration.cache").is_file():
        from deploykit.quantize import CACHE_NOTE

        err.print(CACHE_NOTE, markup=False, highlight=False, soft_wrap=True)
    click.echo(str(result.path))
