#!/usr/bin/env bash
# Build the wheel and install it into fresh virtual environments away from the source tree:
#  1. with the project venv's dependencies: the package data a feature needs (the calibration
#     recipes) came with it;
#  2. with no extras at all (pip fetches numpy, Pillow and click): no ONNX Runtime either, since
#     onnxruntime and onnxruntime-gpu must never be installed together and pip cannot swap a core
#     dependency, so `deploykit predict` stops with the one-line error naming 'deploykit[cpu]' and
#     'deploykit[gpu]'; then with the `cpu` extra (onnxruntime): torch is absent, the runtime and
#     `deploykit predict` work on an artifact the project venv exported (with the `openvino` extra
#     too: `--backend openvino` agrees with ONNX Runtime, and still no torch or onnx), and a pipeline command
#     (`deploykit export`) stops with the one-line MissingExtraError.
# Usage: scripts/check_wheel.sh [PYTHON]   (PYTHON: the project's venv python, for the dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
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

# -- 2. the plain install: the torch-free runtime ------------------------------------------------
# A small artifact (resnet18 at 32x32, random weights) and an image, made by the project venv.
cd "$work"
"$PY" -c 'from deploykit.cli import main; main()' export resnet18 --num-classes 10 --input-size 32 \
  --no-optimize -q -o "$work/art" >/dev/null
"$PY" -c 'import sys; from PIL import Image; Image.new("RGB", (40, 40), (200, 30, 90)).save(sys.argv[1])' "$work/img.png"
python3 -m venv "$work/lean"
wheel=$(ls "$work"/dist/deploykit-*.whl)
"$work/lean/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
if "$work/lean/bin/python" -c 'import onnxruntime' 2>/dev/null; then
  echo "plain wheel install: onnxruntime is importable, but it belongs to the cpu extra (gpu has onnxruntime-gpu)" >&2
  exit 1
fi
set +e
"$work/lean/bin/deploykit" predict "$work/art" "$work/img.png" >"$work/bare.out" 2>"$work/bare.err"
code=$?
set -e
want="^Error: .*needs ONNX Runtime, which is not installed; install it with: pip install 'deploykit\[cpu\]' \(or 'deploykit\[gpu\]'"
if [ "$code" -ne 1 ] || [ "$(wc -l <"$work/bare.err")" -ne 1 ] || ! grep -Eq "$want" "$work/bare.err"; then
  echo "plain wheel: deploykit predict without ONNX Runtime should exit 1 naming both extras; got exit $code:" >&2
  cat "$work/bare.err" >&2
  exit 1
fi
echo "plain wheel: deploykit predict without ONNX Runtime -> exit 1: $(cat "$work/bare.err")"
"$work/lean/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel[cpu]"
if "$work/lean/bin/python" -c 'import torch' 2>/dev/null; then
  echo "lean wheel install: torch is importable, but a plain install must not pull it" >&2
  exit 1
fi
"$work/lean/bin/python" -c 'import deploykit.runtime, sys; assert "torch" not in sys.modules and "onnx" not in sys.modules'
"$work/lean/bin/deploykit" --help >/dev/null
"$work/lean/bin/deploykit" predict "$work/art" "$work/img.png" --json -k 3 >"$work/pred.json"
"$work/lean/bin/python" - "$work/pred.json" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
assert len(out) == 1 and len(out[0]["top"]) == 3, out
print(f"lean wheel: deploykit predict top-1 class {out[0]['top'][0]['index']} without torch")
PY
# the openvino extra on the same lean install: OpenVINO, still no torch and no onnx package
"$work/lean/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel[openvino]"
"$work/lean/bin/python" -c 'import importlib.util as u; assert not u.find_spec("onnx") and not u.find_spec("torch")'
"$work/lean/bin/deploykit" predict "$work/art" "$work/img.png" --json -k 3 --backend openvino >"$work/pred-ov.json"
"$work/lean/bin/python" - "$work/pred.json" "$work/pred-ov.json" <<'PY'
import json, sys
ort, ov = (json.load(open(p)) for p in sys.argv[1:3])
assert [t["index"] for t in ov[0]["top"]] == [t["index"] for t in ort[0]["top"]], (ort, ov)
print("lean wheel + openvino: deploykit predict --backend openvino agrees with ONNX Runtime, without torch or onnx")
PY
set +e
"$work/lean/bin/deploykit" export resnet18 -o "$work/never" >"$work/export.out" 2>"$work/export.err"
code=$?
set -e
want="^Error: deploykit export needs the '(torch|onnx)' package, which is not installed; install it with: pip install 'deploykit\[pipeline\]'$"
if [ "$code" -ne 1 ] || [ "$(wc -l <"$work/export.err")" -ne 1 ] || ! grep -Eq "$want" "$work/export.err" || [ -e "$work/never" ]; then
  echo "lean wheel: deploykit export should exit 1 with the one-line extra message; got exit $code:" >&2
  cat "$work/export.err" >&2
  exit 1
fi
echo "lean wheel: deploykit export without torch -> exit 1: $(cat "$work/export.err")"
echo "lean wheel check passed: torch absent, runtime and predict work (ONNX Runtime and OpenVINO), pipeline commands name the extra"
