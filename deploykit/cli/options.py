"""Options shared by every command that builds a model from a checkpoint."""

from __future__ import annotations

from typing import Any, Callable

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
        click.option("--weights", type=click.Path(dir_okay=False), default=None,
                     help="Checkpoint: .safetensors, or .pt/.pth (loaded with weights_only=True)."),
        click.option("--num-classes", type=click.IntRange(min=1), default=None,
                     help="Classifier size, when the checkpoint was fine-tuned."),
        click.option("--input-size", callback=_size, default=None,
                     help="Input H,W (or one number for square), overriding the model's data config."),
        click.option("--mean", callback=_floats, default=None, help="Normalisation mean, e.g. 0.5,0.5,0.5."),
        click.option("--std", callback=_floats, default=None, help="Normalisation std, e.g. 0.5,0.5,0.5."),
        click.option("--labels", type=click.Path(dir_okay=False), default=None,
                     help="Class names: a text file (one per line) or a JSON list."),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def data_overrides(input_size: Any = None, mean: Any = None, std: Any = None,
                   labels: str | None = None) -> dict[str, Any]:
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
    return out


def load_model_from_options(name: str, weights: str | None, num_classes: int | None,
                            input_size: Any, mean: Any, std: Any, labels: str | None):
    """Create a zoo model, load its weights and apply the user's data-config overrides."""
    from deploykit.models.weights import load_model

    return load_model(name, weights=weights, num_classes=num_classes,
                      overrides=data_overrides(input_size, mean, std, labels))
