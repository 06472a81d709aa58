"""Numerical parity with torchvision: same random weights, same input, compare eval-mode logits.

Run in a scratch environment that has torchvision (not a deploykit dependency):

    PYTHONPATH=/work/main /tmp/tvenv/bin/python benchmarks/torchvision_parity/check.py

For every zoo model torchvision also has, it builds torchvision's model with random weights,
randomises BatchNorm affine parameters and measures its statistics on random input (so BN is
not the identity and logits stay O(1)), loads that
state dict into ours through ``load_model`` (a ``.pth`` file, ``weights_only=True``,
``strict=True``), runs both in eval mode on one random input (64 px;
75 px, the minimum, for Inception-v3) and records the max abs difference of the logits. Writes
``results-<machine>.json`` and ``.md`` beside this file (``deploykit.machine.machine_slug``: CPU
generation and ISA), so runs on different machines never overwrite each other. One torch thread and
small inputs keep it to a few minutes on a shared 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torchvision import models as tvm

from deploykit._io import atomic_write_json, atomic_write_text
from deploykit.machine import describe_machine, machine_line, machine_slug
from deploykit.models import list_models
from deploykit.models.weights import load_model

HERE = Path(__file__).parent
SIZES = {"inception_v3": 75}  # everything else runs at --size
# torchvision's defaults differ from ours for these; build both the same way.
TV_KWARGS = {
    "googlenet": {"aux_logits": False, "transform_input": False, "init_weights": True},
    "inception_v3": {"aux_logits": True, "transform_input": False, "init_weights": True},
}


def randomise_bn(model: torch.nn.Module, size: int, gen: torch.Generator) -> None:
    """Random BatchNorm affine parameters, then running statistics measured on random input.

    Measured statistics keep activations O(1) through 100+ layers, so the logits compared are of a
    realistic scale rather than the 1e10 that random weights with identity BatchNorm give.
    """
    with torch.no_grad():
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in bns:
            m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
            m.train()  # only BatchNorm trains: the model stays in eval (no aux heads, no dropout)
        model(torch.randn(4, 3, size, size, generator=gen))
        for m in bns:
            m.eval()


def check(name: str, size: int, seed: int) -> dict:
    """Build both models with torchvision's weights and compare their logits on one input."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    theirs = tvm.get_model(name, weights=None, **TV_KWARGS.get(name, {})).eval()
    randomise_bn(theirs, size, gen)
    with tempfile.TemporaryDirectory() as tmp:
        # The user's path: a torchvision .pth file through deploykit's safe, strict loader.
        path = Path(tmp) / f"{name}.pth"
        torch.save(theirs.state_dict(), path)
        ours = load_model(name, weights=path)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    x = torch.randn(1, 3, size, size, generator=gen)
    with torch.no_grad():
        a, b = theirs(x), ours(x)
    assert isinstance(b, torch.Tensor) and a.shape == b.shape, (type(b), a.shape)
    diff = float((a - b).abs().max())
    scale = float(a.abs().max())
    return {
        "model": name,
        "input": [1, 3, size, size],
        "max_abs_diff": diff,
        "max_abs_logit": scale,
        "rel_diff": diff / scale if scale else diff,
        "top1_equal": bool((a.argmax(1) == b.argmax(1)).all()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4, help="max allowed relative diff")
    parser.add_argument("models", nargs="*", help="default: every zoo model torchvision has")
    args = parser.parse_args()
    torch.set_num_threads(1)

    available = set(tvm.list_models())
    names = args.models or [n for n in list_models() if n in available]
    rows = []
    for name in names:
        t0 = time.perf_counter()
        row = check(name, SIZES.get(name, args.size), args.seed)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        row["pass"] = row["rel_diff"] <= args.tol and row["top1_equal"]
        rows.append(row)
        print(
            f"{name:18s} max|diff| {row['max_abs_diff']:.3e}  max|logit| {row['max_abs_logit']:.3e}"
            f"  rel {row['rel_diff']:.2e}  {'ok' if row['pass'] else 'FAIL'}  ({row['seconds']} s)",
            flush=True,
        )

    machine = describe_machine()
    machine["versions"]["torchvision"] = torchvision.__version__
    result = {"machine": machine, "seed": args.seed, "tolerance_rel": args.tol, "results": rows}
    stem = f"results-{machine_slug(machine)}"
    atomic_write_json(HERE / f"{stem}.json", result)

    lines = [
        "# deploykit vs torchvision: eval-mode logits with identical random weights",
        "",
        f"Machine: {machine_line(machine)}, shared; Python {machine['python']}, "
        f"torchvision {torchvision.__version__}, {torch.get_num_threads()} torch thread.",
        "",
        "torchvision's model with random weights, random BatchNorm affine parameters and BatchNorm "
        "statistics measured on random input; its state dict saved with `torch.save` and loaded "
        "into ours by `deploykit.models.weights.load_model` (`weights_only=True`, `strict=True`); "
        "both in eval mode on one random input of batch 1; "
        f"pass = relative diff (max abs diff / max abs logit) <= {args.tol:g} and same top-1.",
        "",
        "| model | input | max abs diff | max abs logit | relative | top-1 equal | pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['input'][2]}x{r['input'][3]} | {r['max_abs_diff']:.3e} | "
            f"{r['max_abs_logit']:.3e} | {r['rel_diff']:.2e} | {r['top1_equal']} | "
            f"{'yes' if r['pass'] else 'NO'} |"
        )
    lines.append("")
    lines.append("Reproduce: `PYTHONPATH=. /tmp/tvenv/bin/python benchmarks/torchvision_parity/check.py`")
    atomic_write_text(HERE / f"{stem}.md", "\n".join(lines) + "\n")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
