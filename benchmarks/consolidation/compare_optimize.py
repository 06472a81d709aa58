"""Compare the deterministic figures of two optimiser benchmark runs (before/after a refactor).

    python benchmarks/consolidation/compare_optimize.py OLD.json NEW.json

Node counts, ORT layout reorders, maximum relative error and top-1 agreement against the plain
export, and the rewrites per pass, must be equal; latency is not compared (not deterministic).
Exits 1 on any difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIGURES = ("nodes", "ort_layout_reorders", "max_rel_err_vs_plain", "top1_agreement_vs_plain")
REWRITES = ("deploykit_rewrites", "deploykit_all_rewrites", "deploykit_passes")


def differences(old: dict, new: dict) -> tuple[int, list[str]]:
    """The number of rows compared and one line per differing figure."""
    rows, diffs = 0, []
    for model, result in new.items():
        before = old.get(model)
        if before is None:
            diffs.append(f"{model}: not in the old run")
            continue
        diffs += [
            f"{model} {key}: {before.get(key)} -> {result.get(key)}"
            for key in REWRITES
            if before.get(key) != result.get(key)
        ]
        for variant, figures in result["variants"].items():
            rows += 1
            was = before["variants"].get(variant, {})
            diffs += [
                f"{model} {variant} {f}: {was.get(f)} -> {figures[f]}" for f in FIGURES if was.get(f) != figures[f]
            ]
    return rows, diffs


def main(argv: list[str]) -> int:
    old, new = (json.loads(Path(p).read_text())["results"] for p in argv)
    rows, diffs = differences(old, new)
    print("\n".join(diffs))
    print(f"{rows} rows compared, {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
