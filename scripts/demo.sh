#!/usr/bin/env bash
# The main job, end to end on real data: a trained reference checkpoint becomes an optimised,
# parity-proven ONNX artifact, is validated on the Fashion-MNIST test split, quantised to INT8
# behind an accuracy gate, compared across backends and benchmarked.
set -euo pipefail
MODEL=${MODEL:-resnet18}
OUT=${OUT:-artifacts/demo}
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/7 the zoo"
deploykit list --family resnext

# The short demo recipe (float32, minutes on 2 cores); FULL=1 trains the full reference recipe.
RECIPE_FLAG=--demo
[ "${FULL:-0}" = 1 ] && RECIPE_FLAG=
step "2/7 reference checkpoint for $MODEL (trained once on Fashion-MNIST, then cached)"
WEIGHTS=${WEIGHTS:-$(deploykit train-reference "$MODEL" $RECIPE_FLAG --threads auto)}  # WEIGHTS=file: skip training
echo "$WEIGHTS"

step "3/7 export to ONNX: optimised, parity-gated against PyTorch"
deploykit export "$MODEL" --weights "$WEIGHTS" --data "fashion-mnist:test[:256]" --out "$OUT/$MODEL" --force

step "4/7 validate on the full Fashion-MNIST test split"
deploykit validate "$OUT/$MODEL" --data fashion-mnist:test --json "$OUT/$MODEL.accuracy.json" \
  --plot "$OUT/$MODEL.accuracy.png"

step "5/7 INT8: calibrate on the train split, gate on the test split"
deploykit quantize "$OUT/$MODEL" --calib "fashion-mnist:train[:1024]" --val fashion-mnist:test \
  --out "$OUT/$MODEL-int8" --force --json "$OUT/$MODEL-int8.report.json"

step "6/7 compare backends on the same real images"
deploykit compare "$OUT/$MODEL" --backend torch,onnxruntime --data "fashion-mnist:test[:256]"

step "7/7 latency: FP32 and INT8 on ONNX Runtime"
deploykit bench "$OUT/$MODEL" --batch 1,8,32 --iters 100 --json "$OUT/$MODEL.bench.json" \
  --md "$OUT/$MODEL.bench.md" --plot "$OUT/$MODEL.bench.png"
deploykit bench "$OUT/$MODEL-int8" --batch 1,8,32 --iters 100 --json "$OUT/$MODEL-int8.bench.json" \
  --md "$OUT/$MODEL-int8.bench.md"

step "done in $((SECONDS / 60)) min $((SECONDS % 60)) s: artifacts and reports are in $OUT/"
ls -1 "$OUT"
