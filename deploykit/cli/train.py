"""``deploykit train-reference``: train (or reuse) a model's Fashion-MNIST reference checkpoint."""

from __future__ import annotations

import click

from deploykit.cli.options import deprecated_alias, device_option, quiet_option


def _threads(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a number of threads or 'auto'") from None
    if n < 1:
        raise click.BadParameter(f"{n} threads: need at least 1")
    return n


@click.command("train-reference")
@click.argument("model")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Override the recipe's epochs (a different recipe, so a separate cache entry).")
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Train on only the first N training images (quick smoke runs).")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None,
              help="Score only the first N test images (quick smoke runs).")
@click.option("--force", is_flag=True, help="Retrain even when a cached checkpoint exists.")
@click.option("--threads", callback=_threads, default=None,
              help="CPU threads for training, or 'auto': all cores while the machine is otherwise "
                   "idle, 1 while it is busy (default: torch's choice).")
@device_option
@quiet_option
@click.option("--no-progress", is_flag=True, hidden=True, callback=deprecated_alias("--no-progress", "--quiet"))
def train_reference_cmd(model: str, epochs: int | None, limit: int | None, eval_limit: int | None,
                        force: bool, threads: int | str | None, device: str, quiet: bool, no_progress: bool) -> None:
    """Train MODEL on Fashion-MNIST with its reference recipe, once; print the cached checkpoint.

    The checkpoint path is the only thing on stdout; accuracy and timing go to stderr.
    """
    from deploykit.reference import get_recipe, read_result, train_reference

    recipe = get_recipe(model, epochs=epochs, limit=limit, eval_limit=eval_limit)
    cached = None if force else read_result(recipe)
    record = cached or train_reference(model, recipe=recipe, progress=not (quiet or no_progress),
                                       force=force, threads=threads, device=device)
    status = "cached" if cached else "trained"
    # Only the path goes to stdout, so a script can do: W=$(deploykit train-reference resnet18)
    click.echo(f"{record['checkpoint']}")
    click.echo(f"{recipe.model} (recipe {recipe.hash}, {status}): test top-1 "
               f"{record['test_top1'] * 100:.2f}% on {record['test_images']} images, "
               f"training time {record['train_seconds']:.0f} s (threads: {record['threads']})", err=True)
