"""Dataset specs: Fashion-MNIST splits, slices, folders and the error listing accepted forms."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deploykit.data import datasets as D
from deploykit.data.specs import open_dataset, parse_slice
from deploykit.errors import DeployKitError


def write_idx(path, arr, compress=False):
    import gzip

    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """A 20-item Fashion-MNIST stand-in so spec parsing is tested without the Debian package."""
    images = np.arange(20 * 28 * 28, dtype=np.int64).reshape(20, 28, 28).astype(np.uint8)
    labels = (np.arange(20) % 10).astype(np.uint8)
    for split in ("t10k", "train"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels, compress=True)
    monkeypatch.setenv(D.FASHION_MNIST_ENV, str(tmp_path))
    return images, labels


def test_whole_splits(fake_fashion):
    test = open_dataset("fashion-mnist:test")
    assert test.name == "fashion-mnist:test" and len(test) == 20
    assert test.classes == D.FASHION_MNIST_CLASSES
    assert open_dataset(" fashion-mnist:train ").name == "fashion-mnist:train"


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("fashion-mnist:test[:5]", range(0, 5)),
        ("fashion-mnist:test[10:15]", range(10, 15)),
        ("fashion-mnist:test[::7]", range(0, 20, 7)),
        ("fashion-mnist:train[1:9:3]", range(1, 9, 3)),
        ("fashion-mnist:test[-3:]", range(17, 20)),
    ],
)
def test_slices(fake_fashion, spec, expected):
    images, labels = fake_fashion
    ds = open_dataset(spec)
    assert ds.name == spec and len(ds) == len(expected)
    np.testing.assert_array_equal(ds.labels(), labels[list(expected)])
    np.testing.assert_array_equal(ds.arrays()[0], images[list(expected)])
    np.testing.assert_array_equal(np.asarray(ds[0][0]), images[expected[0]])


def test_fingerprints_differ_by_slice_and_detect_overlap(fake_fashion):
    a, b = open_dataset("fashion-mnist:train[:10]"), open_dataset("fashion-mnist:train[5:15]")
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == open_dataset("fashion-mnist:train[0:10:1]").fingerprint()
    assert D.overlap(a, b) == 5
    assert D.overlap(open_dataset("fashion-mnist:train[::2]"), open_dataset("fashion-mnist:train[1::2]")) == 0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("imagenet:val", "unknown dataset 'imagenet:val': expected fashion-mnist:train"),
        ("fashion-mnist:dev", "splits 'train' and 'test', not 'dev'"),
        ("fashion-mnist:test[5]", r"slice \[5\] must look like"),
        ("fashion-mnist:test[a:b]", "must hold integers"),
        ("fashion-mnist:test[::0]", "step 0 must be a positive"),
        ("fashion-mnist:test[::-1]", "step -1 must be a positive"),
        ("fashion-mnist:test[100:]", "selects no items"),
        ("", "empty dataset spec"),
    ],
)
def test_bad_specs(fake_fashion, spec, message):
    with pytest.raises(DeployKitError, match=message):
        open_dataset(spec)


def test_parse_slice():
    assert parse_slice(":500", "s") == slice(None, 500, None)
    assert parse_slice("1000:2000", "s") == slice(1000, 2000, None)
    assert parse_slice("::10", "s") == slice(None, None, 10)


def test_folder_specs(tmp_path):
    for cls, n in (("cat", 3), ("dog", 2)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (4, 4), i * 40).save(tmp_path / "imgs" / cls / f"{i}.png")
    spec = str(tmp_path / "imgs")
    ds = open_dataset(spec)
    assert ds.name == spec and ds.classes == ("cat", "dog") and len(ds) == 5
    sub = open_dataset(spec + "[1:4]")
    assert len(sub) == 3 and list(sub.labels()) == [0, 0, 1]
    with pytest.raises(DeployKitError, match="is a file, not an image folder"):
        open_dataset(str(tmp_path / "imgs" / "cat" / "0.png"))
    with pytest.raises(DeployKitError, match="unknown dataset"):
        open_dataset(str(tmp_path / "nowhere"))


def test_folder_whose_name_has_brackets(tmp_path):
    d = tmp_path / "set[1:2]" / "only"
    d.mkdir(parents=True)
    Image.new("L", (2, 2)).save(d / "a.png")
    assert len(open_dataset(str(tmp_path / "set[1:2]"))) == 1
