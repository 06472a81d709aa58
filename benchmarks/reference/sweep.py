"""Try recipe variants side by side (on a GPU when there is one) to choose the reference recipes.

    python benchmarks/reference/sweep.py --device cuda --jobs 4 --out sweep/ \\
        "resnet50" "resnet50:zero_init_residual=1,lr=0.1" "inception_v3:epochs=3"

Each variant is a model name plus recipe overrides (``field=value``, comma-separated). Variants
run in parallel worker processes (one GPU is shared well by small-batch jobs, which are bound by
kernel launches) and each trains with the code path ``deploykit train-reference`` uses, so a
recipe chosen here reproduces on the CPU. Results go to ``sweep.json`` and ``sweep.md`` after
every variant, in the order given, so a run cut short keeps what finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from deploykit._io import atomic_write_json, atomic_write_text


def parse_variant(text: str):
    """``model[:field=value,...]`` → Recipe (the model's default recipe with the overrides)."""
    from deploykit.reference import Recipe, get_recipe

    model, _, spec = text.partition(":")
    types = {f.name: f.type for f in dataclasses.fields(Recipe)}
    overrides: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, sep, raw = item.partition("=")
        if not sep or key not in types:
            raise SystemExit(f"variant '{text}': '{item}' is not field=value for a recipe field")
        kind = str(types[key])
        if "bool" in kind:
            overrides[key] = raw.lower() in ("1", "true", "yes")
        elif "int" in kind:
            overrides[key] = int(raw)
        elif "float" in kind:
            overrides[key] = float(raw)
        else:
            overrides[key] = raw
    return get_recipe(model, **overrides)


def _train(variant: str, device: str, threads: int) -> dict[str, Any]:
    import torch

    from deploykit.reference import train_reference

    torch.set_num_threads(threads)
    recipe = parse_variant(variant)
    record = train_reference(
        recipe.model,
        recipe=recipe,
        progress=False,
        device=device,
        log=lambda msg: print(f"[{variant}] {msg}", flush=True),
    )
    return {
        "variant": variant,
        **{k: record[k] for k in ("recipe_hash", "recipe", "test_top1", "train_seconds", "eval_seconds", "epochs")},
        "device": record.get("device"),
        "torch": record["torch"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", help="model[:field=value,...]")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="variants trained at once")
    ap.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 1) // 4),
        help="CPU threads per worker (augmentation and scoring)",
    )
    ap.add_argument("--out", type=Path, default=Path("sweep"))
    args = ap.parse_args(argv)

    from deploykit.reference import prepare_split

    recipes = [parse_variant(v) for v in args.variants]  # fail on a typo before any training
    # Resize each input size once here, so the workers share the cached arrays.
    for recipe in {(r.image_size, r.interpolation): r for r in recipes}.values():
        prepare_split("train", recipe)

    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    started = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(_train, v, args.device, args.threads): v for v in args.variants}
        for fut in as_completed(futures):
            v = futures[fut]
            try:
                rows[v] = fut.result()
            except Exception as e:  # one bad variant should not lose the others
                rows[v] = {"variant": v, "error": f"{type(e).__name__}: {e}"}
            print(
                f"done {v}: {rows[v].get('test_top1', rows[v].get('error'))} "
                f"({time.time() - started:.0f} s since start)",
                flush=True,
            )
            _write(args, rows)
    return 0


def _write(args: argparse.Namespace, rows: dict[str, dict[str, Any]]) -> None:
    ordered = [rows[v] for v in args.variants if v in rows]
    atomic_write_json(args.out / "sweep.json", {"device": args.device, "variants": ordered})
    lines = ["| variant | recipe | test top-1 | train s | last-epoch train top-1 |", "|---|---|---|---|---|"]
    for r in ordered:
        if "error" in r:
            lines.append(f"| `{r['variant']}` | | error: {r['error']} | | |")
            continue
        last = r["epochs"][-1]["train_top1"] if r["epochs"] else float("nan")
        lines.append(
            f"| `{r['variant']}` | `{r['recipe_hash']}` | {r['test_top1'] * 100:.2f}% | "
            f"{r['train_seconds']:.0f} | {last:.3f} |"
        )
    atomic_write_text(args.out / "sweep.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
