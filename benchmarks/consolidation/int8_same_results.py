"""Run one checkout's INT8 accuracy benchmark on given checkpoints, with full-range (VNNI) weights.

    PYTHONPATH=ROOT python benchmarks/consolidation/int8_same_results.py ROOT TAG NAME=CHECKPOINT ...

The code before the consolidation (7a39cb0) only had full-range weights; a newer checkout is held
to its ``vnni`` layout, so both quantise the same way and their results must match. Results go to
ROOT/benchmarks/results/int8/accuracy-<machine>-TAG.*; few latency rounds (latency is not compared).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    root, tag, *pairs = argv
    checkpoints = dict(p.split("=", 1) for p in pairs)
    import deploykit.reference as reference

    reference.reference_checkpoint = lambda name, **_: Path(checkpoints[name])
    try:
        import deploykit.quantize.placement as placement
    except ImportError:
        placement = None
    if placement is not None and hasattr(placement, "default_layout"):
        placement.default_layout = lambda cpu=None: "vnni"
    spec = importlib.util.spec_from_file_location("int8_run", Path(root) / "benchmarks/int8/run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--models", *checkpoints, "--tag", tag, "--sessions", "1", "--rounds", "1", "--per-round", "5"]
    return bench.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
