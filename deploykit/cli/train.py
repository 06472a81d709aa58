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
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Override the recipe's epochs (a different recipe, so a separate cache entry).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=2),
    default=None,
    help="Train on only the first N training images (quick smoke runs).",
)
@click.option(
    "--eval-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Score only the first N test images (quick smoke runs).",
)
@click.option("--force", is_flag=True, help="Retrain even when a cached checkpoint exists.")
@click.option(
    "--threads",
    callback=_threads,
    default=None,
    help="CPU threads for training, or 'auto': all cores while the machine is otherwise "
    "idle, 1 while it is busy (default: torch's choice).",
)
@device_option
@quiet_option
@click.option("--no-progress", is_flag=True, hidden=True, callback=deprecated_alias("--no-progress", "--quiet"))
@click.option("--demo", is_flag=True, help="The short demo recipe (minutes on 2 CPU cores, float32).")
@click.option(
    "--bf16", is_flag=True, help="Train in bfloat16 even where the hardware emulates it (several times slower)."
)
def train_reference_cmd(
    model: str,
    epochs: int | None,
    limit: int | None,
    eval_limit: int | None,
    force: bool,
    threads: int | str | None,
    device: str,
    quiet: bool,
    no_progress: bool,
    demo: bool,
    bf16: bool,
) -> None:
    """Train MODEL on Fashion-MNIST with its reference recipe, once; print the cached checkpoint.

    The checkpoint path is the only thing on stdout; accuracy and timing go to stderr.
    """
    from deploykit.reference import cached_recipe, demo_recipe, get_recipe, read_result, train_reference

    overrides = {"epochs": epochs, "limit": limit, "eval_limit": eval_limit}
    if bf16:
        overrides.update(bf16=True, force_bf16=True)
    recipe = (
        demo_recipe(model).replace(**{k: v for k, v in overrides.items() if v is not None})
        if demo
        else get_recipe(model, **overrides)
    )
    found = None if force else cached_recipe(recipe, device)
    cached = read_result(found) if found is not None else None
    record = cached or train_reference(
        model, recipe=recipe, progress=not (quiet or no_progress), force=force, threads=threads, device=device
    )
    status = "cached" if cached else "trained"
    # Only the path goes to stdout, so a script can do: W=$(deploykit train-reference resnet18)
    click.echo(f"{record['checkpoint']}")
    precision = record.get("precision") or ("bfloat16" if record["recipe"].get("bf16") else "float32")
    click.echo(
        f"{recipe.model} (recipe {record['recipe_hash']}, {status}, {precision}): test top-1 "
        f"{record['test_top1'] * 100:.2f}% on {record['test_images']} images, "
        f"training time {record['train_seconds']:.0f} s (threads: {record['threads']})",
        err=True,
    )
