#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment away from the source tree, and
# check that the package data a feature needs (the calibration recipes) came with it.
# Usage: scripts/check_wheel.sh [PYTHON]   (PYTHON: the project's venv python, for the dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/dist" .
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-deps "$work"/dist/deploykit-*.whl
# The dependencies (torch, onnx, ...) come from the project's venv, without its editable deploykit:
# a .pth line adds that site-packages as a plain path, whose own .pth files are not processed.
deps=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$deps" > "$site/zz-project-deps.pth"
cd "$work"
"$work/venv/bin/python" - "$site" <<'PY'
import sys
from pathlib import Path

import deploykit
from deploykit.quantize.recipes import FAMILY_RECIPES, recipe_for, shipped_recipes

site = Path(sys.argv[1]).resolve()
where = Path(deploykit.__file__).resolve()
assert where.is_relative_to(site), f"deploykit imported from {where}, not from the installed wheel in {site}"
missing = set(FAMILY_RECIPES.values()) - set(shipped_recipes())
assert not missing, f"the wheel lacks the recipes {sorted(missing)}"
for key in FAMILY_RECIPES:
    r = recipe_for(key, key)
    print(f"wheel: {key:13s} -> recipe {r.name} (method {r.method})")
print(f"wheel check passed: {len(shipped_recipes())} recipes shipped in {where.parent}")
PY
