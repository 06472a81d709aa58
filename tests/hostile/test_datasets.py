"""Datasets: broken idx files, empty folders and bad specs are one line naming the file or spec."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from deploykit.data.datasets import IdxDataset, read_idx
from deploykit.data.specs import open_dataset
from deploykit.errors import DeployKitError

from .helpers import invoke, refused, snapshot


def _idx(path, arr: np.ndarray, magic: int | None = None, dims=None):
    dims = arr.shape if dims is None else dims
    magic = (0x08 << 8 | len(dims)) if magic is None else magic
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + arr.tobytes())
    return path


@pytest.mark.parametrize("magic", [0x12345678, 0x00000803 | 0x0100_0000, 0x00000F03, 0x00000800, 0x00000809])
def test_bad_magic(tmp_path, magic):
    path = _idx(tmp_path / "x-idx3-ubyte", np.zeros((2, 3, 3), np.uint8), magic=magic)
    with pytest.raises(DeployKitError, match=r"x-idx3-ubyte: bad idx magic number"):
        read_idx(path)


def test_header_counts_more_than_the_file_holds(tmp_path):
    path = _idx(tmp_path / "x", np.zeros((2, 3, 3), np.uint8), dims=(1_000_000, 3, 3))
    with pytest.raises(DeployKitError, match="truncated idx file"):
        read_idx(path)


def test_header_counts_fewer_than_the_file_holds(tmp_path):
    path = _idx(tmp_path / "x", np.zeros((2, 3, 3), np.uint8), dims=(1, 3, 3))
    with pytest.raises(DeployKitError, match="bytes more than its header"):
        read_idx(path)


def test_images_and_labels_disagree_on_the_count(tmp_path):
    images = _idx(tmp_path / "img", np.zeros((5, 4, 4), np.uint8))
    labels = _idx(tmp_path / "lab", np.zeros(4, np.uint8))
    with pytest.raises(DeployKitError, match=r"img has 5 images but .*lab has 4 labels"):
        IdxDataset(images, labels)


def test_labels_beyond_the_named_classes(tmp_path):
    images = _idx(tmp_path / "img", np.zeros((2, 4, 4), np.uint8))
    labels = _idx(tmp_path / "lab", np.array([0, 7], np.uint8))
    with pytest.raises(DeployKitError, match="labels span 0..7 but only 3 classes are named"):
        IdxDataset(images, labels, classes=["a", "b", "c"])


def test_empty_image_folders(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(DeployKitError, match="no class subfolders"):
        open_dataset(str(tmp_path / "none"))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DeployKitError, match="no images found"):
        open_dataset(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("fashion-mnist:test[a:b]", "must hold integers"),
        ("fashion-mnist:test[::0]", "step 0 must be a positive integer"),
        ("fashion-mnist:test[::-1]", "step -1 must be a positive integer"),
        ("fashion-mnist:test[5]", "must look like [start:stop]"),
        ("fashion-mnist:test[1:2:3:4]", "must look like [start:stop]"),
        ("fashion-mnist:test[500:100]", "selects no items"),
        ("fashion-mnist:test[20000:]", "selects no items"),
        ("fashion-mnist:validation", "has splits 'train' and 'test'"),
        ("fashion-mnist:test[:10", "unknown dataset"),
        ("   ", "empty dataset spec"),
    ],
)
def test_bad_dataset_specs_through_the_cli(previous, spec, needle):
    art, before = previous
    refused(invoke("validate", art, "--data", spec, "-q"), needle)
    assert snapshot(art) == before
