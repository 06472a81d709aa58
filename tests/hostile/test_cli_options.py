"""Every command refuses out-of-range numbers, empty strings, a folder given for a file, and an
output inside its input: one error line, exit 2 (usage) or 1 (a bad value), nothing written."""

from __future__ import annotations

import pytest
from tiny_models import tiny_artifact

from .helpers import assert_untouched, invoke, refused, snapshot

# (command line with {art} = an artifact, {dir} = an existing folder, {out} = the output location;
#  the exit code; a piece of the error line)
CASES = [
    # export
    ("export resnet18 --num-classes 0", 2, "--num-classes"),
    ("export resnet18 --batch 0", 2, "--batch"),
    ("export resnet18 --max-batch 0", 2, "--max-batch"),
    ("export resnet18 --opt-batch -3", 2, "--opt-batch"),
    ("export resnet18 --opset 5 --out {out}", 1, "opset"),
    ("export resnet18 --input-size 4", 2, "--input-size"),
    ("export resnet18 --input-size 0,0", 2, "--input-size"),
    ("export resnet18 --mean 1,2", 2, "--mean"),
    ("export resnet18 --std 0 --input-size 32 --out {out}", 1, "std"),
    ("export  --out {out}", 1, "model"),
    ("export resnet18 --weights  --out {out}", 1, "weights"),
    ("export resnet18 --weights {dir}", 2, "--weights"),
    ("export resnet18 --labels {dir}", 2, "--labels"),
    ("export resnet18 --data  --out {out}", 1, "dataset"),
    ("export resnet18 --input-size 32 --num-classes 10 --out {art}/sub -q", 1, "inside the artifact"),
    ("export resnet18 --input-size 32 --num-classes 10 --out {dir} --force -q", 1, "not an artifact directory"),
    # validate
    ("validate {art} --data fashion-mnist:test --batch-size 0", 2, "--batch-size"),
    ("validate {art} --data fashion-mnist:test --limit 0", 2, "--limit"),
    ("validate {art} --data fashion-mnist:test --gate 0", 2, "--gate"),
    ("validate {art} --data fashion-mnist:test --gate 1.5", 2, "--gate"),
    ("validate {art} --data fashion-mnist:test --threads 0", 2, "--threads"),
    ("validate {art} --data ", 1, "empty dataset spec"),
    ("validate  --data fashion-mnist:test", 1, ""),
    ("validate {art} --data fashion-mnist:test --json {dir}", 2, "--json"),
    # optimize
    ("optimize ", 2, "IN"),
    ("optimize {art} --passes ", 2, "--passes"),
    ("optimize {art} -o {art}/inner", 1, "inside the artifact"),
    ("optimize {art} -o {art} --force", 1, "overwrite the input"),
    ("optimize {art} -o {dir} --force", 1, "not an artifact directory"),
    ("optimize {dir}", 1, "a directory without manifest.json"),
    # quantize
    ("quantize {art} --calib fashion-mnist:train[:64] --val fashion-mnist:test[:64] --gate 0", 2, "--gate"),
    ("quantize {art} --calib fashion-mnist:train[:64] --val fashion-mnist:test[:64] --num-images 0", 2, "--num-images"),
    (
        "quantize {art} --calib fashion-mnist:train[:64] --val fashion-mnist:test[:64] --max-fallbacks -1",
        2,
        "--max-fallbacks",
    ),
    ("quantize {art} --calib fashion-mnist:train[:64] --val fashion-mnist:test[:64] --threads 0", 2, "--threads"),
    ("quantize {art} --calib  --val fashion-mnist:test[:64] --out {out}", 1, "dataset spec"),
    (
        "quantize {art} --calib fashion-mnist:train[:64] --val fashion-mnist:test[:64] --recipe {dir} --out {out}",
        1,
        "recipe",
    ),
    ("quantize {art} --calib fashion-mnist:train[:64] --val fashion-mnist:test[:64] --report {dir}", 2, "--report"),
    (
        "quantize {art} --calib fashion-mnist:train[:64] --val fashion-mnist:test[:64] --out {dir} --force",
        1,
        "not an artifact directory",
    ),
    # bench / compare
    ("bench {art} --batch 0", 2, "--batch"),
    ("bench {art} --batch ,", 2, "--batch"),
    ("bench {art} --threads 0", 2, "--threads"),
    ("bench {art} --warmup -1", 2, "--warmup"),
    ("bench {art} --iters 0", 2, "--iters"),
    ("bench {art} --duration 0", 2, "--duration"),
    ("bench {art} --rounds 0", 2, "--rounds"),
    ("bench {art} --backend ", 2, "--backend"),
    ("bench {art} --json {dir}", 2, "--json"),
    ("bench ", 1, ""),
    ("compare {art} --batch 0", 2, "--batch"),
    ("compare {art} --samples 0", 2, "--samples"),
    ("compare {art} --threads 0", 2, "--threads"),
    ("compare {art} --backends ", 2, "--backends"),
    # info / list / train-reference
    ("info resnet18 --num-classes 0", 2, "--num-classes"),
    ("info ", 1, "model"),
    ("list --family nosuchfamily", 1, "nosuchfamily"),
    ("train-reference resnet18 --epochs 0", 2, "--epochs"),
    ("train-reference resnet18 --limit 1", 2, "--limit"),
    ("train-reference resnet18 --eval-limit 0", 2, "--eval-limit"),
    ("train-reference resnet18 --threads 0", 2, "--threads"),
    ("train-reference ", 1, "model"),
]


@pytest.mark.parametrize("line, code, needle", CASES, ids=[c[0].replace(" ", "_")[:60] for c in CASES])
def test_bad_option_is_refused(tmp_path, line, code, needle):
    art = tiny_artifact(tmp_path / "art").path
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("a user's file")
    out = tmp_path / "out"
    before = {p: snapshot(p) for p in (art, folder)}
    args = [a.format(art=art, dir=folder, out=out) for a in line.split(" ")]
    refused(invoke(*args), needle, code=code)
    assert_untouched(out, {})
    for p, snap in before.items():
        assert_untouched(p, snap)
