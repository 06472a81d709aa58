"""idx and ImageFolder readers, including every corrupt-input error."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploykit.data import datasets as D
from deploykit.errors import DeployKitError


def write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> Path:
    """The idx layout by hand: 0, 0, type code 0x08 (uint8), ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def idx_pair(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    labels = np.array([0, 1, 2, 2, 1, 0], dtype=np.uint8)
    return (
        write_idx(tmp_path / "img-idx3-ubyte.gz", images, compress=True),
        write_idx(tmp_path / "lab-idx1-ubyte", labels),
        images,
        labels,
    )


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    got = D.read_idx(write_idx(tmp_path / f"a{compress}", arr, compress))
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, arr)


def test_read_idx_magic_numbers_are_the_mnist_ones(tmp_path):
    labels = write_idx(tmp_path / "l", np.zeros(3, np.uint8))
    images = write_idx(tmp_path / "i", np.zeros((1, 2, 2), np.uint8))
    assert int.from_bytes(labels.read_bytes()[:4], "big") == D.IDX_LABELS_MAGIC == 2049
    assert int.from_bytes(images.read_bytes()[:4], "big") == D.IDX_IMAGES_MAGIC == 2051


def test_bad_magic(tmp_path):
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x89PNG" + bytes(100))
    with pytest.raises(DeployKitError, match=r"bad-idx: bad idx magic") as e:
        D.read_idx(bad)
    assert "\n" not in str(e.value)


def test_truncated_plain_and_gzip(tmp_path):
    arr = np.ones((4, 8, 8), dtype=np.uint8)
    plain = write_idx(tmp_path / "plain", arr)
    plain.write_bytes(plain.read_bytes()[:-10])
    with pytest.raises(DeployKitError, match="plain: truncated"):
        D.read_idx(plain)
    gz = write_idx(tmp_path / "cut.gz", arr, compress=True)
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(DeployKitError, match="cut.gz: corrupt or truncated gzip"):
        D.read_idx(gz)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DeployKitError, match="short: truncated"):
        D.read_idx(short)


def test_extra_bytes_and_missing_file(tmp_path):
    p = write_idx(tmp_path / "long", np.ones(3, np.uint8))
    p.write_bytes(p.read_bytes() + b"xx")
    with pytest.raises(DeployKitError, match="2 bytes more"):
        D.read_idx(p)
    with pytest.raises(DeployKitError, match="absent.gz: idx file not found"):
        D.read_idx(tmp_path / "absent.gz")


def test_idx_dataset_items_and_arrays(idx_pair):
    img_path, lab_path, images, labels = idx_pair
    ds = D.IdxDataset(img_path, lab_path, classes=["a", "b", "c"], name="toy")
    assert len(ds) == 6 and ds.classes == ("a", "b", "c") and ds.name == "toy"
    im, y = ds[3]
    assert im.mode == "L" and im.size == (4, 5) and y == 2
    np.testing.assert_array_equal(np.asarray(im), images[3])
    assert ds[-1][1] == 0
    x, yy = ds.arrays()
    assert x.dtype == np.uint8 and x.shape == (6, 5, 4) and yy.dtype == np.int64
    np.testing.assert_array_equal(yy, labels)
    with pytest.raises(IndexError):
        ds[6]


def test_idx_count_mismatch(tmp_path):
    img = write_idx(tmp_path / "img", np.zeros((5, 2, 2), np.uint8))
    lab = write_idx(tmp_path / "lab", np.zeros(4, np.uint8))
    with pytest.raises(DeployKitError, match="has 5 images but .* has 4 labels"):
        D.IdxDataset(img, lab)


def test_idx_wrong_roles_and_unnamed_labels(tmp_path):
    img = write_idx(tmp_path / "img", np.zeros((3, 2, 2), np.uint8))
    lab = write_idx(tmp_path / "lab", np.array([0, 1, 5], np.uint8))
    with pytest.raises(DeployKitError, match="expected uint8 images"):
        D.IdxDataset(lab, lab)
    with pytest.raises(DeployKitError, match="only 2 classes"):
        D.IdxDataset(img, lab, classes=["x", "y"])
    assert D.IdxDataset(img, lab).classes == tuple(str(i) for i in range(6))


def test_fingerprint_tracks_content_and_selection(idx_pair, tmp_path):
    img_path, lab_path, images, labels = idx_pair
    ds = D.IdxDataset(img_path, lab_path)
    fp = ds.fingerprint()
    assert fp == D.IdxDataset(img_path, lab_path).fingerprint() and len(fp) == 64
    half = D.Subset(ds, slice(0, 3))
    assert half.fingerprint() != fp
    assert D.Subset(ds, slice(0, 6)).fingerprint() == fp  # the whole set, however it is selected
    assert D.overlap(half, D.Subset(ds, slice(2, 6))) == 1
    assert D.overlap(half, D.Subset(ds, slice(3, 6))) == 0
    changed = images.copy()
    changed[0, 0, 0] ^= 1
    img2 = write_idx(tmp_path / "img2", changed)
    assert D.IdxDataset(img2, lab_path).fingerprint() != fp


def test_subset_arrays_and_labels(idx_pair):
    img_path, lab_path, images, labels = idx_pair
    sub = D.Subset(D.IdxDataset(img_path, lab_path), slice(1, None, 2), name="odd")
    x, y = sub.arrays()
    np.testing.assert_array_equal(x, images[1::2])
    np.testing.assert_array_equal(y, labels[1::2])
    np.testing.assert_array_equal(sub.labels(), labels[1::2])
    np.testing.assert_array_equal(np.asarray(sub[1][0]), images[3])
    picked = D.Subset(D.IdxDataset(img_path, lab_path), [5, 0])
    np.testing.assert_array_equal(picked.arrays()[0], images[[5, 0]])
    with pytest.raises(DeployKitError, match="outside"):
        D.Subset(D.IdxDataset(img_path, lab_path), [6])


def _save(path: Path, color, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (3, 3), color).save(path)


def test_image_folder_classes_sorted(tmp_path):
    _save(tmp_path / "zebra" / "1.png", (255, 255, 255))
    _save(tmp_path / "ant" / "b.JPG", (0, 0, 0))
    _save(tmp_path / "ant" / "nested" / "a.bmp", (9, 9, 9))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = D.ImageFolderDataset(tmp_path)
    assert ds.classes == ("ant", "zebra")
    assert len(ds) == 3
    assert list(ds.labels()) == [0, 0, 1]
    im, y = ds[2]
    assert y == 1 and np.asarray(im.convert("RGB"))[0, 0].tolist() == [255, 255, 255]
    assert not D.has_arrays(ds) and not D.has_arrays(D.Subset(ds, [0]))
    assert len(D.ImageFolderDataset(tmp_path).fingerprint()) == 64


def test_image_folder_errors(tmp_path):
    with pytest.raises(DeployKitError, match="image folder not found"):
        D.ImageFolderDataset(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeployKitError, match=r"empty: no class subfolders"):
        D.ImageFolderDataset(empty)
    (empty / "cats").mkdir()
    (empty / "cats" / "readme.txt").write_text("x")
    with pytest.raises(DeployKitError, match=r"empty: no images found"):
        D.ImageFolderDataset(empty)
    (empty / "cats" / "corrupt.jpg").write_bytes(b"\xff\xd8 garbage")
    ds = D.ImageFolderDataset(empty)  # listing works; decoding reports the file when read
    with pytest.raises(DeployKitError, match="corrupt.jpg: cannot decode image"):
        ds[0]


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(D.FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(DeployKitError, match="apt-get install dataset-fashion-mnist"):
        D.fashion_mnist("test")
    with pytest.raises(DeployKitError, match="split 'dev'"):
        D.fashion_mnist("dev")


def test_fashion_mnist_env_override_reads_plain_files(tmp_path, monkeypatch):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 9], np.uint8))
    monkeypatch.setenv(D.FASHION_MNIST_ENV, str(tmp_path))
    ds = D.fashion_mnist("test")
    assert len(ds) == 2 and ds[1][1] == 9 and ds.classes[9] == "Ankle boot"


_REAL = D.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"


@pytest.mark.skipif(
    not _REAL.exists() or bool(os.environ.get(D.FASHION_MNIST_ENV)),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_test_split():
    ds = D.fashion_mnist("test")
    assert len(ds) == 10000 and len(ds.classes) == 10
    assert ds.classes == D.FASHION_MNIST_CLASSES
    x, y = ds.arrays()
    assert x.shape == (10000, 28, 28) and sorted(np.bincount(y).tolist()) == [1000] * 10
    assert ds[0][0].size == (28, 28)
