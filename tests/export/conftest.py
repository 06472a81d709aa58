"""Helpers for the export tests: a tiny CNN with a data config, and ONNX Runtime in one call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deploykit.data.config import DataConfig

SIZE = 16
CLASSES = 5


class TinyNet(nn.Module):
    """Conv-BN-ReLU, a residual Add, GAP and a Linear head: the ops the zoo is made of."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        y = torch.relu(y + self.conv2(y))
        return self.fc(torch.flatten(self.pool(y), 1))


def make_tiny(classes: int = CLASSES, size: int = SIZE, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyNet(classes)
    with torch.no_grad():  # non-trivial BatchNorm statistics so folding it is not a no-op
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.5, 0.5)
    model.eval()
    model.data_config = DataConfig(input_size=(3, size, size), num_classes=classes)
    model.model_name = "tiny"
    return model


@pytest.fixture
def tiny() -> nn.Module:
    return make_tiny()


def ort_run(path: Path | str, x: np.ndarray) -> np.ndarray:
    """Run an ONNX file on ONNX Runtime CPU with one input."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def torch_run(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture
def run_ort():
    return ort_run


@pytest.fixture
def run_torch():
    return torch_run
