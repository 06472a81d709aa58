"""Images from strangers: bombs and broken files are one-line errors naming the file; odd modes are
converted the way a viewer would show them (or refused clearly)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from deploykit.data.config import DataConfig
from deploykit.data.datasets import ImageFolderDataset, load_image
from deploykit.data.transforms import decode, preprocess
from deploykit.errors import DeployKitError

from .helpers import invoke, refused, snapshot


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with a tiny (bogus) data stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_decompression_bomb_header_is_an_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(DeployKitError, match=r"bomb\.png: refused as a decompression bomb"):
        load_image(path)
    with pytest.raises(DeployKitError, match="<bytes>: refused as a decompression bomb"):
        decode(path.read_bytes())


def test_image_between_the_warning_and_error_limits_is_an_error_too(tmp_path):
    """Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; deploykit refuses."""
    side = int((Image.MAX_IMAGE_PIXELS * 1.2) ** 0.5)
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(DeployKitError, match=r"big\.png: refused as a decompression bomb"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(tmp_path, fmt):
    rng = np.random.default_rng(0)
    data = _bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DeployKitError, match=rf"cut\.{fmt.lower()}: cannot decode image"):
        load_image(path)


@pytest.mark.parametrize("content", [b"", b"hello, I am text", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_not_an_image(tmp_path, content):
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(DeployKitError, match=r"fake\.png: cannot decode image"):
        load_image(path)


def test_cmyk_is_converted_to_the_rgb_it_shows():
    cyan = Image.new("CMYK", (4, 4), (255, 0, 0, 0))
    rgb = np.asarray(decode(_bytes(cyan, "JPEG", quality=100)))
    assert rgb.shape == (4, 4, 3)
    assert np.abs(rgb.astype(int) - [0, 255, 255]).max() <= 8


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert load_image(path).mode.startswith("I")
    grey = np.asarray(decode(path, channels=1))
    assert grey.tolist() == [[0, 64], [128, 255]]
    rgb = np.asarray(decode(path, channels=3))
    assert rgb[1, 0].tolist() == [128, 128, 128]


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA"])
def test_transparency_is_composited_over_white(tmp_path, mode):
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 255, 0))  # fully transparent blue pixel: shows as the background
    img = rgba.convert(mode) if mode != "P" else rgba.convert("P")
    if mode == "P":
        img.info["transparency"] = img.getpixel((1, 0))
    path = tmp_path / "alpha.png"
    img.save(path)
    rgb = np.asarray(decode(path, channels=3))
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 0].tolist() != [255, 255, 255]


def test_floating_point_image_is_refused_clearly(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.ones((4, 4), dtype=np.float32)).save(path)
    with pytest.raises(DeployKitError, match=r"float\.tif: 32-bit floating-point images are not supported"):
        preprocess(path, DataConfig(input_size=(3, 8, 8), crop_pct=1.0))


def test_bad_image_in_a_folder_fails_validate_naming_it(tmp_path, previous):
    art, before = previous
    folder = tmp_path / "imgs"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / c / "ok.png")
    (folder / "b" / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    assert len(ImageFolderDataset(folder)) == 3
    line = refused(invoke("validate", art, "--data", folder, "-q"), str(folder / "b" / "bomb.png"), "refused")
    assert "exceeds limit" in line
    assert snapshot(art) == before  # nothing recorded in the manifest
