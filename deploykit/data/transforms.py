"""Preprocessing driven by a model's DataConfig, written once for every stage.

Export parity, calibration, validation, training and the torch-free runtime all call this module,
so an artifact is always fed exactly as its model was. numpy and Pillow only: never import torch.

Pipeline (timm/torchvision "eval" transform): decode → RGB (or L for 1-channel models) → resize so
the crop fits, scaling the shorter side to ``round(size / crop_pct)`` → centre crop (H, W) →
[0, 1] → ``(x - mean) / std`` → float32 CHW.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from deploykit.data.config import DataConfig
from deploykit.data.datasets import no_decompression_bombs, refuse_bomb
from deploykit.errors import DeployKitError
from deploykit.progress import task

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}

ImageLike = Any  # PIL.Image.Image | str | os.PathLike | bytes | np.ndarray (uint8 HxW or HxWxC)


def decode(img: ImageLike, channels: int = 3) -> Image.Image:
    """Any accepted image input as a PIL image in RGB (3 channels) or L (1 channel)."""
    from deploykit.data.datasets import load_image

    where = str(img) if isinstance(img, (str, os.PathLike)) else "<image>"
    if isinstance(img, (str, os.PathLike)):
        img = load_image(img)
    elif isinstance(img, (bytes, bytearray, memoryview)):
        try:
            with no_decompression_bombs(), Image.open(io.BytesIO(bytes(img))) as im:
                refuse_bomb(im, "<bytes>")
                im.load()
                img = im.copy()
        except DeployKitError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DeployKitError(f"<bytes>: refused as a decompression bomb ({e})") from None
        except Exception as e:  # Pillow raises several types for bad data
            raise DeployKitError(f"<bytes>: cannot decode image ({e.__class__.__name__}: {e})") from None
    elif isinstance(img, np.ndarray):
        img = _from_array(img)
    elif not isinstance(img, Image.Image):
        raise DeployKitError(f"cannot preprocess a {type(img).__name__}: expected an image, path or bytes")
    mode = "RGB" if channels == 3 else "L"
    if img.mode == mode:
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grey: Pillow's own convert() clips at 255 (a white image); scale 0..65535 to 0..255.
        arr = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        img = Image.fromarray(((arr * 255 + 32767) // 65535).astype(np.uint8))
    elif img.mode == "F":
        raise DeployKitError(
            f"{where}: 32-bit floating-point images are not supported; save it with 8 or 16 bits per channel"
        )
    if img.mode in ("P", "PA", "LA", "RGBA") and mode == "RGB":
        img = img.convert("RGBA")
        # Composite transparency over white rather than the undefined colour under alpha 0.
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    try:
        return img.convert(mode)
    except ValueError as e:  # e.g. LAB or HSV, which Pillow cannot convert to RGB
        raise DeployKitError(f"{where}: cannot convert a {img.mode} image to {mode} ({e})") from None


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise DeployKitError(f"image array must be uint8 (got {arr.dtype})")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        return Image.fromarray(np.ascontiguousarray(arr.reshape(arr.shape[:2])))  # mode L
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(arr))  # mode RGB or RGBA
    raise DeployKitError(f"image array shape {arr.shape} is not H x W, H x W x 1, 3 or 4")


def resize_size(width: int, height: int, cfg: DataConfig) -> tuple[int, int]:
    """(width, height) to resize to before the centre crop, keeping the aspect ratio."""
    crop_h, crop_w = cfg.image_size
    scale_h, scale_w = round(crop_h / cfg.crop_pct), round(crop_w / cfg.crop_pct)
    # The smallest aspect-preserving size covering (scale_h, scale_w): for a square target the
    # shorter side becomes exactly round(size / crop_pct).
    s = max(scale_h / height, scale_w / width)
    return max(scale_w, round(width * s)), max(scale_h, round(height * s))


def resize_crop(img: ImageLike, cfg: DataConfig) -> Image.Image:
    """Decode, resize and centre-crop to the config's (H, W); pixels stay uint8."""
    img = decode(img, cfg.input_size[0])
    crop_h, crop_w = cfg.image_size
    w, h = img.size
    new_w, new_h = resize_size(w, h, cfg)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample=RESAMPLE[cfg.interpolation])
    if (new_w, new_h) != (crop_w, crop_h):
        left = int(round((new_w - crop_w) / 2.0))
        top = int(round((new_h - crop_h) / 2.0))
        img = img.crop((left, top, left + crop_w, top + crop_h))
    return img


def normalize(pixels: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """uint8 N,H,W(,C) pixels → float32 N,C,H,W scaled to [0, 1] and normalised by mean/std."""
    x = np.asarray(pixels, dtype=np.float32) * np.float32(1.0 / 255.0)
    if x.ndim == 3:  # N,H,W grayscale
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != cfg.input_size[0]:
        raise DeployKitError(f"pixels of shape {np.shape(pixels)} do not match {cfg.input_size[0]} channel(s)")
    mean = np.asarray(cfg.mean, dtype=np.float32)
    inv_std = np.asarray([1.0 / s for s in cfg.std], dtype=np.float32)
    x = (x - mean) * inv_std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(img: ImageLike, cfg: DataConfig) -> np.ndarray:
    """One image (PIL, path, bytes or uint8 array) → float32 C,H,W ready for the model."""
    return normalize(np.asarray(resize_crop(img, cfg))[None], cfg)[0]


def preprocess_batch(imgs: Iterable[ImageLike] | np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Many images → float32 N,C,H,W; a uint8 N,H,W(,C) array is handled without decoding."""
    c, h, w = cfg.input_size
    if isinstance(imgs, np.ndarray) and imgs.dtype == np.uint8 and imgs.ndim in (3, 4):
        if imgs.ndim == 3 and c == 1 and imgs.shape[1:] == (h, w):
            return normalize(imgs, cfg)  # already the right size: no per-image work at all
        imgs = list(imgs)
    pixels = [np.asarray(resize_crop(im, cfg)) for im in imgs]
    if not pixels:
        return np.zeros((0, c, h, w), dtype=np.float32)
    return normalize(np.stack(pixels), cfg)


def iter_batches(
    dataset: Sequence, cfg: DataConfig, batch_size: int, limit: int | None = None, progress: bool | str = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x float32 N,C,H,W, y int64 N) over a dataset, reporting progress when asked."""
    if batch_size < 1:
        raise DeployKitError(f"batch size {batch_size} must be at least 1")
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n < 0:
        raise DeployKitError(f"limit {limit} must not be negative")
    fast = getattr(dataset, "arrays", None)
    images = labels = None
    if fast is not None:
        images, labels = fast()
    with task(progress, f"images from {getattr(dataset, 'name', 'data')}", n) as advance:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if images is not None:
                x = preprocess_batch(images[start:stop], cfg)
                y = np.asarray(labels[start:stop], dtype=np.int64)
            else:
                items = [dataset[i] for i in range(start, stop)]
                x = preprocess_batch([im for im, _ in items], cfg)
                y = np.asarray([lab for _, lab in items], dtype=np.int64)
            advance(stop - start)
            yield x, y
