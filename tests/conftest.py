"""Shared test setup: GPU/TensorRT markers skip cleanly with their reason on this CPU machine."""

from __future__ import annotations

import importlib.util

import pytest


def _cuda_available() -> bool:
    """A CUDA GPU this process can use, seen by NVIDIA's cuda-bindings (the engine runtime's CUDA,
    no torch needed) or, where those are not installed, by torch."""
    if importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None:
        from deploykit.backends.cuda import cuda_available

        if cuda_available():
            return True
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is part of the test environment
        return False


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op torch thread per test process: the suite runs two workers on two cores, and
    extra OpenMP threads only spin against each other (an order of magnitude slower when busy)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = _cuda_available()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is present on this machine")
    skip_trt = pytest.mark.skip(reason="needs TensorRT (pip install 'deploykit[tensorrt]') and a GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "tensorrt" in item.keywords and not (has_trt and has_cuda):
            item.add_marker(skip_trt)


# -- a briefly trained zoo model (data helper) --------------------------------------------------

FASHION_MNIST_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


@pytest.fixture(scope="session")
def tiny_resnet18_weights(tmp_path_factory):
    """resnet18 at 32x32 trained one epoch on Fashion-MNIST train[:2000] (about 15 CPU-seconds).

    One thread on purpose: with several busy processes on a 2-core machine, two OpenMP threads
    spin-wait and cost an order of magnitude more CPU. Scores about 70% on test[:500].
    """
    import os

    if not os.path.exists(FASHION_MNIST_TEST) and not os.environ.get("DEPLOYKIT_FASHION_MNIST_DIR"):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    import torch

    from deploykit.data.datasets import FASHION_MNIST_CLASSES
    from deploykit.data.specs import open_dataset
    from deploykit.data.transforms import iter_batches
    from deploykit.models.weights import load_model, save_weights

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = load_model(
            "resnet18",
            num_classes=10,
            overrides={
                "image_size": (32, 32),
                "mean": (0.5,) * 3,
                "std": (0.5,) * 3,
                "labels": FASHION_MNIST_CLASSES,
                "crop_pct": 1.0,
            },
        )
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        model.train()
        for x, y in iter_batches(open_dataset("fashion-mnist:train[:2000]"), model.data_config, 32):
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        return save_weights(model, tmp_path_factory.mktemp("tiny-resnet18") / "resnet18-fmnist.safetensors")
    finally:
        torch.set_num_threads(threads)


# -- the runtime and serving tests: a real Fashion-MNIST artifact and image files ---------------


@pytest.fixture(scope="session")
def fmnist_artifact(tmp_path_factory, tiny_resnet18_weights):
    """resnet18 at 32x32 trained briefly on Fashion-MNIST, exported to an ONNX artifact (batch 1..8)."""
    from deploykit.data.datasets import FASHION_MNIST_CLASSES
    from deploykit.export.api import export_model

    out = tmp_path_factory.mktemp("fmnist-art") / "resnet18"
    return export_model(
        "resnet18",
        weights=tiny_resnet18_weights,
        num_classes=10,
        out=out,
        progress=False,
        overrides={
            "image_size": (32, 32),
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
            "labels": FASHION_MNIST_CLASSES,
            "crop_pct": 1.0,
        },
        max_batch=8,
    )


@pytest.fixture(scope="session")
def fmnist_images(tmp_path_factory) -> list:
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
