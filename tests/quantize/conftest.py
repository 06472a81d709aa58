"""Fixtures: tiny ONNX graphs, and a small CNN trained briefly on Fashion-MNIST as an FP32 artifact."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.data.config import DataConfig

CFG = DataConfig(input_size=(1, 28, 28), mean=(0.5,), std=(0.5,), crop_pct=1.0, num_classes=10)


def _tiny_cnn():
    import torch
    from torch import nn

    class TinyResNet(nn.Module):
        """conv-relu-pool, a residual block, a two-branch concat, a strided conv, linear."""

        def __init__(self, c: int = 12) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2))
            self.conv1 = nn.Conv2d(c, c, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1)
            self.br1 = nn.Conv2d(c, c, 1)
            self.br2 = nn.Conv2d(c, c, 3, padding=1)
            self.head = nn.Conv2d(2 * c, 2 * c, 3, padding=1, stride=2)
            self.fc = nn.Linear(2 * c * 7 * 7, 10)

        def forward(self, x):
            x = self.stem(x)  # N x c x 14 x 14
            x = torch.relu(x + self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            x = torch.cat([torch.relu(self.br1(x)), torch.relu(self.br2(x))], 1)
            x = torch.relu(self.head(x))  # N x 2c x 7 x 7
            return self.fc(torch.flatten(x, 1))

    return TinyResNet()


def train_tiny(steps: int = 120, seed: int = 0, lr: float = 2e-3):
    """A TinyResNet trained for a few seconds on Fashion-MNIST train[10000:16000] (CPU, 1 thread)."""
    import torch

    from deploykit.data.specs import open_dataset
    from deploykit.data.transforms import iter_batches

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = _tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all, y_all = next(iter_batches(open_dataset("fashion-mnist:train[10000:16000]"), CFG, 6000))
    xs, ys = torch.from_numpy(x_all), torch.from_numpy(y_all)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xs), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def write_fp32_artifact(model, out_dir, name: str = "tinyresnet"):
    """Export ``model`` (TorchScript exporter, opset 17) into an FP32 artifact directory."""
    import torch

    from deploykit.artifact import ArtifactWriter, BatchProfile, Manifest, TensorSpec

    with ArtifactWriter(out_dir, force=True) as w:
        torch.onnx.export(
            model,
            (torch.zeros(1, *CFG.input_size),),
            str(w.dir / "model.onnx"),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
        man = Manifest(
            model=name,
            family="resnet",
            format="onnx",
            precision="fp32",
            main_file="model.onnx",
            data_config=CFG,
            inputs=[TensorSpec("input", "float32", ["batch", 1, 28, 28])],
            outputs=[TensorSpec("logits", "float32", ["batch", 10])],
            batch=BatchProfile(1, 1, 64, True),
            opset=17,
        )
        man.add_stage("export", params={"exporter": "torchscript"})
        return w.commit(man)


@pytest.fixture(scope="session")
def tiny_model():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_tiny()


@pytest.fixture(scope="session")
def fp32_artifact(tiny_model, tmp_path_factory):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_fp32_artifact(tiny_model, tmp_path_factory.mktemp("art") / "tiny-fp32")


@pytest.fixture(scope="session")
def sensitive_artifact(tiny_model, tmp_path_factory):
    """The same network with conv1's channels (+BN, folded at export) scaled by factors spread
    over four decades and conv2's matching inputs divided back: FP32 output is unchanged (ReLU is
    positively homogeneous) but no single per-tensor INT8 scale fits conv2's input, so every
    calibrator either clips the large channels or zeroes the small ones."""
    import copy
    import warnings

    m = make_sensitive(copy.deepcopy(tiny_model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_fp32_artifact(m, tmp_path_factory.mktemp("art") / "sensitive-fp32", name="tinyresnet-sensitive")


def make_sensitive(m):
    """Scale conv1/bn1 output channels by 1..1e4 and divide them back in conv2 (FP32-neutral)."""
    import torch

    c = m.bn1.weight.shape[0]
    f = torch.logspace(0, 4, c)[torch.randperm(c, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        m.bn1.weight *= f
        m.bn1.bias *= f
        m.conv2.weight /= f.view(1, -1, 1, 1)
    return m


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
