"""Train the short Fashion-MNIST checkpoints this benchmark quantises (not the reference ones).

    nice -n 10 python benchmarks/int8_trt/train_ckpts.py --out /work/scratch/ckpt \\
        "resnet50:image_size=32,limit=20000,epochs=1,..."

Each variant is a model name plus recipe overrides, as in ``benchmarks/reference/sweep.py``
(same parser, same ``train_reference`` code). The checkpoint is copied to ``<out>/<model>.safetensors``
with a ``<model>.json`` record (recipe, command, training time, test top-1, load average), and
``<out>/README`` is rewritten from all records, so a reader polling it sees each model as it lands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the worktree's deploykit

from benchmarks.reference.sweep import parse_variant  # noqa: E402
from deploykit._io import atomic_write_json, atomic_write_text  # noqa: E402


def _readme(out: Path) -> None:
    lines = [
        "Short Fashion-MNIST checkpoints for the INT8 TensorRT-profile benchmark (issue #22).",
        "NOT the full reference checkpoints (deploykit/reference.py RECIPES): 1 short epoch each.",
        "Written by benchmarks/int8_trt/train_ckpts.py (branch int8-bench); one line per model, as each lands.",
        "",
        "model | input | test top-1 (10,000 images) | training s | recipe hash | overrides | load avg start/end",
    ]
    for rec in sorted(out.glob("*.json"), key=lambda p: p.stat().st_mtime):
        r = json.loads(rec.read_text())
        lines.append(
            f"{r['model']} | 3x{r['image_size']}x{r['image_size']} | {r['test_top1'] * 100:.2f}% | "
            f"{r['train_seconds']:.0f} | {r['recipe_hash']} | {r['variant']} | {r['load_start']}/{r['load_end']}"
        )
    lines += ["", "file: <model>.safetensors (safetensors, metadata has the recipe); <model>.json: the full record."]
    lines += [
        "command: " + "nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/int8_trt/train_ckpts.py"
        " --out /work/scratch/ckpt '<variant>'"
    ]
    atomic_write_text(out / "README", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", help="model[:field=value,...]")
    ap.add_argument("--out", type=Path, default=Path("/work/scratch/ckpt"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from deploykit.reference import train_reference

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        recipe = parse_variant(variant)
        load_start = round(os.getloadavg()[0], 2)
        t0 = time.time()
        record = train_reference(
            recipe.model, recipe=recipe, progress=False, log=lambda m, v=variant: print(f"[{v}] {m}", flush=True)
        )
        dest = args.out / f"{recipe.model}.safetensors"
        shutil.copyfile(record["checkpoint"], dest.with_suffix(".tmp"))
        os.replace(dest.with_suffix(".tmp"), dest)
        atomic_write_json(
            args.out / f"{recipe.model}.json",
            {
                "model": recipe.model,
                "variant": variant,
                "image_size": recipe.image_size,
                "recipe_hash": record["recipe_hash"],
                "recipe": record["recipe"],
                "test_top1": record["test_top1"],
                "train_seconds": record["train_seconds"],
                "wall_seconds": round(time.time() - t0, 1),
                "threads": args.threads,
                "load_start": load_start,
                "load_end": round(os.getloadavg()[0], 2),
                "checkpoint": str(dest),
                "epochs": record.get("epochs"),
            },
        )
        _readme(args.out)
        print(f"done {variant}: top-1 {record['test_top1']:.4f}, {record['train_seconds']:.0f} s -> {dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
