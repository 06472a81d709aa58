"""Options shared by every command that builds a model from a checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def _floats(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of numbers") from None
    if len(vals) not in (1, 3):
        raise click.BadParameter(f"'{value}' needs 1 or 3 values")
    return vals * 3 if len(vals) == 1 else vals


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        vals = tuple(int(v) for v in value.lower().replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a size such as 224 or 224,224") from None
    if len(vals) == 3:  # C,H,W given: keep H,W
        vals = vals[1:]
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 8:
        raise click.BadParameter(f"'{value}' is not a valid input size (H,W each at least 8)")
    return vals  # type: ignore[return-value]


def model_options(fn: Callable) -> Callable:
    """--weights, --num-classes and the data-config overrides for a fine-tuned checkpoint."""
    options = [
        click.option(
            "--weights",
            type=click.Path(dir_okay=False),
            default=None,
            help="Checkpoint: .safetensors, or .pt/.pth (loaded with weights_only=True).",
        ),
        click.option(
            "--num-classes",
            type=click.IntRange(min=1),
            default=None,
            help="Classifier size, when the checkpoint was fine-tuned.",
        ),
        *_data_options(),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def data_config_options(fn: Callable) -> Callable:
    """The whole data config of a model that carries none (an imported ONNX file): size,
    normalisation, labels, resize interpolation and crop."""
    from deploykit.data.config import INTERPOLATIONS

    options = [
        *_data_options(),
        click.option(
            "--interpolation",
            type=click.Choice(INTERPOLATIONS),
            default=None,
            help="Resize interpolation of the preprocessing (default bilinear).",
        ),
        click.option(
            "--crop-pct",
            type=click.FloatRange(min=0, max=1, min_open=True),
            default=None,
            help="Centre-crop fraction of the preprocessing (default 0.875).",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _data_options() -> list[Callable]:
    """--input-size, --mean, --std, --labels: one spelling for export and import."""
    return [
        click.option(
            "--input-size",
            callback=_size,
            default=None,
            help="Input H,W (or one number for square), overriding the model's data config.",
        ),
        click.option("--mean", callback=_floats, default=None, help="Normalisation mean, e.g. 0.5,0.5,0.5."),
        click.option("--std", callback=_floats, default=None, help="Normalisation std, e.g. 0.5,0.5,0.5."),
        click.option(
            "--labels",
            type=click.Path(dir_okay=False),
            default=None,
            help="Class names: a text file (one per line) or a JSON list.",
        ),
    ]


def data_overrides(
    input_size: Any = None,
    mean: Any = None,
    std: Any = None,
    labels: str | None = None,
    interpolation: str | None = None,
    crop_pct: float | None = None,
) -> dict[str, Any]:
    """The data-config fields a user overrode on the command line."""
    from deploykit.data.config import read_labels_file

    out: dict[str, Any] = {}
    if input_size is not None:
        out["image_size"] = tuple(input_size)
    if mean is not None:
        out["mean"] = tuple(mean)
    if std is not None:
        out["std"] = tuple(std)
    if labels is not None:
        out["labels"] = read_labels_file(labels)
    if interpolation is not None:
        out["interpolation"] = interpolation
    if crop_pct is not None:
        out["crop_pct"] = crop_pct
    return out


def load_model_from_options(
    name: str, weights: str | None, num_classes: int | None, input_size: Any, mean: Any, std: Any, labels: str | None
):
    """Create a zoo model, load its weights and apply the user's data-config overrides."""
    from deploykit.models.weights import load_model

    return load_model(
        name, weights=weights, num_classes=num_classes, overrides=data_overrides(input_size, mean, std, labels)
    )


# -- option groups: one spelling per concept, added to every command that has the concept -------
def _apply(fn: Callable, options: list[Callable]) -> Callable:
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def int_list(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> list[int] | None:
    """Comma-separated positive integers ("1,8,32")."""
    if value is None:
        return None
    try:
        vals = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of integers") from None
    if not vals or min(vals) < 1:
        raise click.BadParameter(f"'{value}' must list batch sizes of at least 1")
    return vals


def name_list(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> list[str] | None:
    """Comma-separated names ("torch,onnxruntime")."""
    if value is None:
        return None
    vals = [v.strip() for v in str(value).split(",") if v.strip()]
    if not vals:
        raise click.BadParameter("needs at least one name")
    return vals


def batch_spec(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> tuple[int, int, int] | int | None:
    """A batch size ``N`` (fixed) or a dynamic profile ``MIN:OPT:MAX`` (1 <= MIN <= OPT <= MAX)."""
    if value is None:
        return None
    parts = str(value).split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a batch size N or a profile MIN:OPT:MAX") from None
    if len(nums) == 1:
        if nums[0] < 1:
            raise click.BadParameter(f"batch {nums[0]} must be at least 1")
        return nums[0]
    if len(nums) != 3 or not 1 <= nums[0] <= nums[1] <= nums[2]:
        raise click.BadParameter(f"'{value}' must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return nums[0], nums[1], nums[2]


def output_options(help_text: str, file_okay: bool = False) -> Callable:
    """-o/--out and --force: where a command writes, and whether it may replace what is there."""
    return lambda fn: _apply(
        fn,
        [
            click.option(
                "--out",
                "-o",
                type=click.Path(file_okay=file_okay, dir_okay=not file_okay),
                default=None,
                help=help_text,
            ),
            click.option("--force", is_flag=True, help="Replace the output if it exists (atomically)."),
        ],
    )


def quiet_option(fn: Callable) -> Callable:
    """-q/--quiet: no progress display."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress display.")(fn)


def threads_option(fn: Callable) -> Callable:
    """--threads: intra-op CPU threads of PyTorch / ONNX Runtime."""
    return click.option(
        "--threads", type=click.IntRange(min=1), default=None, help="Intra-op CPU threads (default: the library's)."
    )(fn)


def device_option(fn: Callable) -> Callable:
    """--device: cpu, cuda or cuda:N."""
    return click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")(fn)


def seed_option(fn: Callable) -> Callable:
    """--seed: the seed of random initialisation or random inputs, recorded with the result."""
    return click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Seed of random initialisation and fixed inputs.",
    )(fn)


def report_tables(fn: Callable) -> Callable:
    """--json/--md for a command whose report has no plot."""
    return report_options(fn, plot=False)


def report_options(fn: Callable, plot: bool = True) -> Callable:
    """--json/--md/--plot: write the report as JSON, Markdown and a PNG."""
    options = [
        click.option(
            "--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the JSON report here."
        ),
        click.option(
            "--md", "md_path", type=click.Path(dir_okay=False), default=None, help="Write the Markdown report here."
        ),
    ]
    if plot:
        options.append(
            click.option(
                "--plot",
                "plot_path",
                type=click.Path(dir_okay=False),
                default=None,
                help="Write the report's plot (PNG) here.",
            )
        )
    return _apply(fn, options)


def instances_option(help_text: str) -> Callable:
    """``--instances N``: model instances (Triton's instance_group count), for triton and serve."""
    return click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True, help=help_text)


def queue_delay_option(fn: Callable) -> Callable:
    """``--max-queue-delay-us``: how long Triton's dynamic batcher may hold a request."""
    return click.option(
        "--max-queue-delay-us",
        type=click.IntRange(min=0),
        default=100,
        show_default=True,
        help="How long the dynamic batcher may hold a request to fill a batch.",
    )(fn)


def deprecated_alias(old: str, new: str) -> Callable:
    """A hidden old spelling that still works for one release and says so once on stderr."""

    def warn(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False, ()):
            click.echo(
                f"deploykit: {old} is deprecated; use {new} (the old spelling goes in the next release)", err=True
            )
        return value

    return warn
