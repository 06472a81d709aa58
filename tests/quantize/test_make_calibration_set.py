"""calibration/make_calibration_set.py: balanced, deterministic, train split only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from deploykit.data.specs import open_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "calibration" / "make_calibration_set.py"


def load_script():
    spec = importlib.util.spec_from_file_location("make_calibration_set", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_balanced_and_deterministic():
    mod = load_script()
    labels = open_dataset("fashion-mnist:train").labels()
    a = mod.balanced_indices(labels, 53, seed=0)
    assert np.array_equal(a, mod.balanced_indices(labels, 53, seed=0))
    assert not np.array_equal(a, mod.balanced_indices(labels, 53, seed=1))
    counts = np.bincount(labels[a], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 53 and len(set(a)) == 53


def test_folder_and_index_outputs_feed_quantisation(tmp_path):
    from deploykit.quantize import _source

    mod = load_script()
    assert mod.main(["--num-images", "20", "--out", str(tmp_path / "f")]) == 0
    pngs = sorted((tmp_path / "f").rglob("*.png"))
    assert len(pngs) == 20 and len({p.parent.name for p in pngs}) == 10
    assert mod.main(["--num-images", "20", "--format", "index", "--out", str(tmp_path / "i.txt")]) == 0
    src = _source(str(tmp_path / "i.txt"), "calibration")
    train = open_dataset("fashion-mnist:train")
    assert len(src) == 20 and src.dataset.source_fingerprint() == train.source_fingerprint()
    # and the file names of the folder are the same train indices
    idx = sorted(int(p.stem) for p in pngs)
    assert idx == sorted(int(i) for i in src.dataset.indices())
