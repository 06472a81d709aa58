"""Train (or reuse) every family's Fashion-MNIST reference checkpoint and record its FP32 accuracy.

    python benchmarks/reference/run.py                      # the six target models, in cost order
    python benchmarks/reference/run.py --models resnet18,googlenet --threads 2
    python benchmarks/reference/run.py --no-train           # collect what is already cached

Writes ``results-<machine>.json`` and ``.md`` next to this script after every model, so a long run
that is stopped keeps what finished; ``<machine>`` is ``deploykit.machine.machine_slug`` (CPU
generation and ISA, or the GPU), so runs on different machines never overwrite each other.
Training times depend on how busy the machine was: each row carries the load average at the start
and end of its training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from deploykit._io import atomic_write_json, atomic_write_text
from deploykit.errors import DeployKitError
from deploykit.reference import get_recipe, machine_info, read_result, train_reference

HERE = Path(__file__).resolve().parent
# Cheapest first, so a run that is cut short has finished as many families as possible.
DEFAULT_MODELS = ["resnet18", "densenet121", "googlenet", "resnet50", "resnext50_32x4d", "inception_v3"]
TARGET = 0.90


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    ap.add_argument(
        "--threads",
        type=_threads,
        default="auto",
        help="torch threads for training, or 'auto' (all cores while the machine is idle, 1 while it is busy)",
    )
    ap.add_argument("--device", default="cpu", help="train on cpu or cuda (scoring stays on the CPU)")
    ap.add_argument("--no-train", action="store_true", help="only collect cached checkpoints")
    ap.add_argument("--no-progress", action="store_true", help="one line per epoch (for logs)")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for results-<machine>.json/.md")
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (smoke runs)")
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images (smoke runs)")
    ap.add_argument("--eval-limit", type=int, default=None, help="score the first N test images")
    args = ap.parse_args(argv)
    stem = results_stem(machine_info())

    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        try:
            recipe = get_recipe(name, epochs=args.epochs, limit=args.limit, eval_limit=args.eval_limit)
        except DeployKitError as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        record = read_result(recipe)
        if record is None and args.no_train:
            print(f"{recipe.model}: not trained yet (recipe {recipe.hash})", file=sys.stderr)
            continue
        if record is None:
            try:
                record = train_reference(
                    name, recipe=recipe, progress=not args.no_progress, threads=args.threads, device=args.device
                )
            except DeployKitError as e:
                print(f"{recipe.model}: {e}", file=sys.stderr)
                continue
        # Re-read before writing: training takes long and another run may have updated the file.
        results = _load(args.out / f"{stem}.json")
        results["machine"] = machine_info()
        results["models"][recipe.model] = _row(record)
        results["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write(results, args.out / stem)
        print(
            f"{recipe.model}: test top-1 {record['test_top1']:.4f}, training {record['train_seconds']:.0f} s",
            flush=True,
        )
    return 0


def results_stem(machine: dict) -> str:
    """``results-<machine slug>``: the file name (without suffix) of this machine's results."""
    from deploykit.machine import machine_slug

    return f"results-{machine_slug(machine)}"


def _threads(text: str) -> int | str:
    if text == "auto":
        return text
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"threads {value} must be at least 1")
    return value


def _load(path: Path) -> dict:
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if isinstance(data.get("models"), dict):
                return data
        except json.JSONDecodeError:
            pass
    return {"machine": machine_info(), "target_top1": TARGET, "models": {}}


def _row(record: dict) -> dict:
    r = record["recipe"]
    epochs = record.get("epochs", [])
    rates = [e["img_per_s"] for e in epochs]
    return {
        "test_top1": record["test_top1"],
        "test_images": record["test_images"],
        "meets_target": record["test_top1"] >= TARGET,
        "train_seconds": record["train_seconds"],
        "mean_img_per_s": round(sum(rates) / len(rates), 1) if rates else None,
        "input_size": r["image_size"],
        "epochs": r["epochs"],
        "batch_size": r["batch_size"],
        "optimizer": f"{r['optimizer']} lr {r['lr']}",
        "train_images": record["train_images"],
        "threads": record["threads"],
        "device": record.get("device", "cpu"),
        "load_average": record.get("load_average"),
        "machine": record["machine"],
        "recipe_hash": record["recipe_hash"],
        "trained_at": record["trained_at"],
        "torch": record["torch"],
    }


def _machine_text(m: dict) -> str:
    """The machine line of deploykit.machine; older records (no ISA) keep their family/model text."""
    from deploykit.machine import machine_line

    if "isa" in m:
        return machine_line(m)
    return f"{m['cpu']} (family/model {m.get('cpu_family_model', '?')}), {m.get('cores', '?')} cores"


def _write(results: dict, stem: Path) -> None:
    """``stem``.json and ``stem``.md (stem: the folder plus ``results-<machine>``)."""
    atomic_write_json(stem.parent / f"{stem.name}.json", results)
    m = results["machine"]
    lines = [
        "# Reference checkpoints: Fashion-MNIST FP32 test top-1",
        "",
        f"Machine: {_machine_text(m)}, shared with other jobs while training: the "
        "load average per row says how busy it was, and training times scale with it. "
        "FP32 top-1 on the Fashion-MNIST test split (10,000 images unless the row says less), "
        f"scored through `deploykit.data.transforms` as `deploykit validate` scores. Target: >= {TARGET:.0%}.",
        "",
        "Reproduce: `python benchmarks/reference/run.py` (or `deploykit train-reference MODEL`).",
        "",
        "| model | input | epochs | train / test images | test top-1 | >= 90% | training time | img/s | threads "
        "| load avg (start/end) | recipe |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["models"].items():
        la = row.get("load_average") or {}
        load = f"{la.get('start', '?')}/{la.get('end', '?')}" if la else "n/a"
        lines.append(
            f"| {name} | {row['input_size']}x{row['input_size']} | {row['epochs']} | "
            f"{row['train_images']} / {row['test_images']} | "
            f"{row['test_top1'] * 100:.2f}% | {'yes' if row['meets_target'] else 'no'} | "
            f"{row['train_seconds'] / 60:.1f} min | {row['mean_img_per_s']} | {row['threads']} | "
            f"{load} | `{row['recipe_hash']}` |"
        )
    notes = results.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    atomic_write_text(stem.parent / f"{stem.name}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
