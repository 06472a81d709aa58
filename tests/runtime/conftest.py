"""Fixtures for the runtime and serving tests: a real Fashion-MNIST model artifact and image files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fmnist_artifact(tmp_path_factory, tiny_resnet18_weights):
    """resnet18 at 32x32 trained briefly on Fashion-MNIST, exported to an ONNX artifact (batch 1..8)."""
    from deploykit.data.datasets import FASHION_MNIST_CLASSES
    from deploykit.export.api import export_model

    out = tmp_path_factory.mktemp("fmnist-art") / "resnet18"
    return export_model(
        "resnet18", weights=tiny_resnet18_weights, num_classes=10, out=out, progress=False,
        overrides={"image_size": (32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3,
                   "labels": FASHION_MNIST_CLASSES, "crop_pct": 1.0},
        max_batch=8,
    )


@pytest.fixture(scope="session")
def fmnist_images(tmp_path_factory) -> list[Path]:
    """The first 12 Fashion-MNIST test images written as PNG files (28x28 grayscale)."""
    from deploykit.data.specs import open_dataset

    out = tmp_path_factory.mktemp("fmnist-png")
    ds = open_dataset("fashion-mnist:test[:12]")
    paths = []
    for i in range(len(ds)):
        img, _ = ds[i]
        p = out / f"img{i:02d}.png"
        img.save(p)
        paths.append(p)
    return paths
