#!/usr/bin/env python
"""Draw a deterministic, class-balanced calibration set from the Fashion-MNIST *train* split.

    python calibration/make_calibration_set.py --num-images 512 --out calib/fmnist-512
    python calibration/make_calibration_set.py --num-images 512 --format index --out calib/fmnist-512.txt

``--format folder`` (default) writes an ImageFolder of PNGs (``<out>/<class>/<index>.png``) that
``deploykit quantize --calib <out>`` reads directly. ``--format index`` writes the chosen train
indices, one per line, with a header naming the source file's sha256 (for manifests and audits).
The test split is never used: it is the validation split, and calibrating on it would make the
accuracy gate optimistic.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def balanced_indices(labels: np.ndarray, num_images: int, seed: int = 0) -> np.ndarray:
    """``num_images`` indices, as equal per class as possible, chosen by a seeded permutation."""
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    per_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    base, extra = divmod(num_images, len(classes))
    chosen = []
    for k, c in enumerate(classes):
        want = base + (1 if k < extra else 0)
        if want > len(per_class[c]):
            raise SystemExit(f"error: class {c} has only {len(per_class[c])} images, {want} requested")
        chosen.append(per_class[c][:want])
    return np.sort(np.concatenate(chosen))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=512, help="total images (split evenly over classes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=["folder", "index"], default="folder")
    ap.add_argument("--out", required=True, help="output folder (folder format) or text file (index format)")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = ap.parse_args(argv)

    from deploykit._io import atomic_write_text
    from deploykit.data.specs import open_dataset

    if args.num_images < 1:
        raise SystemExit("error: --num-images must be at least 1")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise SystemExit(f"error: {out} already exists; pass --force to replace it")
    ds = open_dataset("fashion-mnist:train")  # never the test split
    idx = balanced_indices(ds.labels(), args.num_images, args.seed)
    if args.format == "index":
        header = (
            f"# deploykit calibration set: fashion-mnist:train, {len(idx)} images, seed {args.seed}, "
            f"source sha256 {ds.source_fingerprint()}\n"
        )
        atomic_write_text(out, header + "\n".join(str(int(i)) for i in idx) + "\n")
    else:
        import shutil
        import tempfile

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            for i in idx:
                img, label = ds[int(i)]
                cls = ds.classes[label].replace("/", "-")
                (tmp / cls).mkdir(exist_ok=True)
                img.save(tmp / cls / f"{int(i):05d}.png")
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    print(f"wrote {len(idx)} calibration images from fashion-mnist:train to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
