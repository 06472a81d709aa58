"""Preprocessing checked against hand-computed values on tiny images."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deploykit.data.transforms as T
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError


def cfg(c=1, h=2, w=2, mean=None, std=None, crop_pct=1.0, interpolation="nearest"):
    return DataConfig(
        input_size=(c, h, w),
        mean=mean or (0.0,) * c,
        std=std or (1.0,) * c,
        crop_pct=crop_pct,
        interpolation=interpolation,
        num_classes=10,
    )


def test_module_never_imports_torch():
    tree = ast.parse(Path(T.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" not in names


def test_resize_size_shorter_side_is_size_over_crop_pct():
    c = DataConfig(input_size=(3, 64, 64), crop_pct=0.875)
    assert T.resize_size(28, 28, c) == (73, 73)  # round(64 / 0.875) = 73
    assert T.resize_size(40, 20, c) == (146, 73)  # aspect ratio kept, shorter side 73
    assert T.resize_size(20, 40, c) == (73, 146)
    assert T.resize_size(40, 20, cfg(3, 32, 64)) == (64, 32)  # non-square target covered exactly


def test_nearest_downscale_picks_hand_computed_pixels():
    px = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    x = T.preprocess(Image.fromarray(px, "L"), cfg(1, 2, 2, interpolation="nearest"))
    # Pillow nearest for 4 -> 2 samples source index floor((i + 0.5) * 2) = 1, 3.
    expected = px[[1, 3]][:, [1, 3]] / 255.0
    assert x.shape == (1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], expected, rtol=0, atol=1e-6)


def test_centre_crop_without_resize():
    px = np.arange(24, dtype=np.uint8).reshape(4, 6)  # H=4, W=6
    x = T.preprocess(Image.fromarray(px, "L"), cfg(1, 4, 4))
    # Shorter side already 4: no resize; crop left = round((6 - 4) / 2) = 1.
    np.testing.assert_allclose(x[0] * 255.0, px[:, 1:5], atol=1e-4)


def test_crop_pct_resizes_then_crops():
    px = np.zeros((4, 4), dtype=np.uint8)
    px[1:3, 1:3] = 255  # bright centre
    c = cfg(1, 2, 2, crop_pct=0.5)  # resize to round(2 / 0.5) = 4 (no-op), crop the centre 2x2
    np.testing.assert_allclose(T.preprocess(Image.fromarray(px, "L"), c)[0], np.ones((2, 2)), atol=1e-6)


def test_bilinear_upscale_of_uniform_image_stays_uniform():
    img = Image.new("RGB", (7, 5), (51, 102, 153))
    x = T.preprocess(img, cfg(3, 8, 8, interpolation="bilinear"))
    assert x.shape == (3, 8, 8)
    np.testing.assert_allclose(x[:, 3, 3], [0.2, 0.4, 0.6], atol=1e-6)
    assert np.ptp(x, axis=(1, 2)).max() < 1e-6


def test_normalise_by_mean_and_std():
    img = Image.new("RGB", (2, 2), (51, 102, 255))
    x = T.preprocess(img, cfg(3, mean=(0.5, 0.4, 0.0), std=(0.25, 0.5, 2.0)))
    np.testing.assert_allclose(x[:, 0, 0], [(0.2 - 0.5) / 0.25, (0.4 - 0.4) / 0.5, 1.0 / 2.0], atol=1e-6)


def test_grayscale_expanded_to_three_channels():
    px = np.array([[0, 64], [128, 255]], dtype=np.uint8)
    x = T.preprocess(Image.fromarray(px, "L"), cfg(3))
    assert x.shape == (3, 2, 2)
    for ch in range(3):
        np.testing.assert_allclose(x[ch], px / 255.0, atol=1e-6)


def test_rgb_converted_to_luma_for_one_channel_models():
    x = T.preprocess(Image.new("RGB", (2, 2), (255, 0, 0)), cfg(1))
    # ITU-R 601-2 luma: 255 * 299 / 1000 = 76.2 -> 76
    np.testing.assert_allclose(x[0], np.full((2, 2), 76 / 255.0), atol=1e-6)


def test_transparent_pixels_composite_over_white():
    img = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    np.testing.assert_allclose(T.preprocess(img, cfg(3)), np.ones((3, 2, 2)), atol=1e-6)


def test_path_bytes_and_array_inputs_agree(tmp_path):
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(px).save(path)
    c = cfg(3, 6, 6, crop_pct=0.875, interpolation="bicubic")
    ref = T.preprocess(Image.fromarray(px), c)
    np.testing.assert_array_equal(T.preprocess(path, c), ref)
    np.testing.assert_array_equal(T.preprocess(str(path), c), ref)
    np.testing.assert_array_equal(T.preprocess(path.read_bytes(), c), ref)
    np.testing.assert_array_equal(T.preprocess(px, c), ref)


def test_preprocess_batch_matches_single_images():
    rng = np.random.default_rng(1)
    px = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    c = cfg(3, 16, 16, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875, interpolation="bilinear")
    batch = T.preprocess_batch(px, c)
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == np.float32
    for i in range(3):
        np.testing.assert_array_equal(batch[i], T.preprocess(Image.fromarray(px[i], "L"), c))
    c1 = cfg(1, 28, 28)
    np.testing.assert_allclose(T.preprocess_batch(px, c1)[:, 0], px / 255.0, atol=1e-6)
    assert T.preprocess_batch([], c).shape == (0, 3, 16, 16)


def test_undecodable_file_is_one_line_error_naming_it(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png\n" * 4)
    with pytest.raises(DeployKitError) as e:
        T.preprocess(bad, cfg(3))
    assert "broken.png" in str(e.value) and "\n" not in str(e.value)


def test_truncated_image_is_an_error(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, format="PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(buf.getvalue()[:60])
    with pytest.raises(DeployKitError, match="cut.png"):
        T.preprocess(cut, cfg(3))


def test_missing_file_and_wrong_type_are_errors(tmp_path):
    with pytest.raises(DeployKitError, match="nope.jpg"):
        T.preprocess(tmp_path / "nope.jpg", cfg(3))
    with pytest.raises(DeployKitError, match="float"):
        T.preprocess(np.zeros((4, 4), dtype=np.float64), cfg(1))
    with pytest.raises(DeployKitError):
        T.preprocess(12, cfg(1))


class _ListDataset:
    def __init__(self, items):
        self.items = items
        self.name = "list"

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_iter_batches_sizes_limit_and_fast_path_agree():
    rng = np.random.default_rng(2)
    px = rng.integers(0, 256, size=(7, 10, 10), dtype=np.uint8)
    items = [(Image.fromarray(p, "L"), i % 3) for i, p in enumerate(px)]
    slow = _ListDataset(items)

    class Fast(_ListDataset):
        def arrays(self):
            return px, np.array([i % 3 for i in range(7)], dtype=np.int64)

    c = cfg(3, 8, 8, crop_pct=0.875, interpolation="bilinear")
    slow_batches = list(T.iter_batches(slow, c, batch_size=3))
    fast_batches = list(T.iter_batches(Fast(items), c, batch_size=3, progress=True))
    assert [len(y) for _, y in slow_batches] == [3, 3, 1]
    for (xs, ys), (xf, yf) in zip(slow_batches, fast_batches):
        assert xs.shape[1:] == (3, 8, 8) and ys.dtype == np.int64
        np.testing.assert_array_equal(xs, xf)
        np.testing.assert_array_equal(ys, yf)
    limited = list(T.iter_batches(slow, c, batch_size=4, limit=5))
    assert sum(len(y) for _, y in limited) == 5
    assert list(T.iter_batches(slow, c, batch_size=4, limit=0)) == []
    with pytest.raises(DeployKitError, match="batch size"):
        list(T.iter_batches(slow, c, batch_size=0))
