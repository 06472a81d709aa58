"""Accuracy scoring (top-1/top-5/per class/confusion) and the MLPerf 99%-of-FP32 gate."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from deploykit.artifact import BatchProfile
from deploykit.data import datasets as D
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError
from deploykit.harness.accuracy import AccuracyResult, accuracy_gate, evaluate

N_CLASSES = 10


def _write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    return path


@pytest.fixture
def brightness_set(tmp_path):
    """37 uniform 4x4 images whose brightness encodes the label (20 * label), labels skewed."""
    labels = np.array([i % N_CLASSES for i in range(30)] + [3] * 7, dtype=np.uint8)
    images = np.repeat((labels * 20)[:, None, None], 4, axis=1).repeat(4, axis=2).astype(np.uint8)
    ds = D.IdxDataset(
        _write_idx(tmp_path / "i.gz", images),
        _write_idx(tmp_path / "l.gz", labels),
        classes=[f"c{i}" for i in range(N_CLASSES)],
        name="brightness",
    )
    cfg = DataConfig(input_size=(1, 4, 4), mean=(0.0,), std=(1.0,), crop_pct=1.0, num_classes=N_CLASSES)
    return ds, cfg, labels.astype(np.int64)


def brightness_logits(x: np.ndarray) -> np.ndarray:
    """A content-based oracle: the class whose brightness 20*k is nearest the image mean wins."""
    level = x.reshape(len(x), -1).mean(axis=1) * 255.0
    return -np.abs(level[:, None] - 20.0 * np.arange(N_CLASSES)[None, :]).astype(np.float32)


class FakeRunner:
    """The Runner surface evaluate() relies on: names, activate/deactivate, infer(feeds)."""

    def __init__(self, fn, batch_profile=None):
        self.fn = fn
        self.is_active = False
        self.activations = 0
        self.batch_profile = batch_profile
        self.input_names = ["input"]
        self.output_names = ["logits", "aux"]
        self.batches = []

    def activate(self):
        self.is_active = True
        self.activations += 1
        return self

    def deactivate(self):
        self.is_active = False

    def infer(self, feeds):
        assert self.is_active and list(feeds) == ["input"]
        x = feeds["input"]
        self.batches.append(len(x))
        return {"aux": np.zeros((len(x), N_CLASSES), np.float32), "logits": self.fn(x)}


def test_oracle_runner_scores_100_percent(brightness_set):
    ds, cfg, labels = brightness_set
    runner = FakeRunner(brightness_logits)
    res = evaluate(runner, ds, cfg, batch_size=8, progress=False, confusion=True)
    assert res.count == 37 and res.top1 == 1.0 and res.top5 == 1.0
    assert runner.activations == 1 and not runner.is_active  # activated and released by evaluate
    assert runner.batches == [8, 8, 8, 8, 5]
    np.testing.assert_array_equal(np.diag(res.confusion), np.bincount(labels, minlength=N_CLASSES))
    assert res.fingerprint == ds.fingerprint()


def test_constant_runner_scores_the_class_share(brightness_set):
    ds, cfg, labels = brightness_set
    const = FakeRunner(lambda x: np.tile(np.arange(N_CLASSES, dtype=np.float32), (len(x), 1)))
    res = evaluate(const, ds, cfg, batch_size=16, progress=False, confusion=True)
    assert res.top1 == pytest.approx(np.mean(labels == 9))  # always predicts class 9
    assert res.top5 == pytest.approx(np.mean(labels >= 5))  # top-5 is classes 5..9
    assert res.confusion[:, 9].sum() == 37 and res.confusion.sum() == 37


def test_per_class_accuracy_sums_correctly(brightness_set):
    ds, cfg, labels = brightness_set

    def wrong_on_threes(x):
        logits = brightness_logits(x)
        pred = logits.argmax(axis=1)
        logits[pred == 3, 4] = 1.0  # every class-3 image predicted as 4
        return logits

    res = evaluate(wrong_on_threes, ds, cfg, batch_size=5, progress=False)
    rows = {r["class"]: r for r in res.per_class}
    assert sum(r["count"] for r in res.per_class) == res.count == 37
    assert sum(r["correct"] for r in res.per_class) == round(res.top1 * res.count)
    assert rows["c3"]["count"] == 10 and rows["c3"]["correct"] == 0 and rows["c3"]["accuracy"] == 0
    assert rows["c4"]["accuracy"] == 1.0
    assert res.top1 == pytest.approx(27 / 37)
    assert AccuracyResult(**{**res.__dict__}).correct == 27


def test_torch_module_and_limit(brightness_set):
    torch = pytest.importorskip("torch")
    ds, cfg, labels = brightness_set

    class Oracle(torch.nn.Module):
        def forward(self, x):
            level = x.flatten(1).mean(1) * 255.0
            return -(level[:, None] - 20.0 * torch.arange(N_CLASSES)[None, :]).abs()

    m = Oracle().train()
    res = evaluate(m, ds, cfg, batch_size=4, limit=10, progress=False)
    assert res.count == 10 and res.top1 == 1.0 and m.training  # mode restored
    assert res.fingerprint == D.Subset(ds, range(10)).fingerprint() != ds.fingerprint()
    assert "first 10" in res.dataset


def test_fixed_batch_profile_pads_the_last_batch(brightness_set):
    ds, cfg, _ = brightness_set

    def only_six(x):
        assert len(x) == 6
        return brightness_logits(x)

    runner = FakeRunner(only_six, batch_profile=BatchProfile(min=6, opt=6, max=6, dynamic=False))
    res = evaluate(runner, ds, cfg, batch_size=64, progress=False)
    assert res.count == 37 and res.top1 == 1.0 and runner.batches == [6] * 7


def test_dataset_classes_mapped_to_model_labels_by_name(tmp_path):
    for cls, level in (("Trouser", 20), ("Bag", 160)):  # model indices 1 and 8
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("L", (4, 4), level).save(tmp_path / cls / f"{i}.png")
    ds = D.ImageFolderDataset(tmp_path)
    assert ds.classes == ("Bag", "Trouser")
    cfg = DataConfig(
        input_size=(1, 4, 4), mean=(0.0,), std=(1.0,), crop_pct=1.0, num_classes=10, labels=D.FASHION_MNIST_CLASSES
    )
    res = evaluate(brightness_logits, ds, cfg, batch_size=3, progress=False)
    assert res.top1 == 1.0
    assert [(r["class"], r["index"], r["count"]) for r in res.per_class] == [("Bag", 8, 2), ("Trouser", 1, 2)]


def test_bad_outputs_are_errors(brightness_set):
    ds, cfg, _ = brightness_set
    with pytest.raises(DeployKitError, match="has 10 classes but the model has only 3 outputs"):
        evaluate(lambda x: np.zeros((len(x), 3), np.float32), ds, cfg, progress=False)
    with pytest.raises(DeployKitError, match="expected"):
        evaluate(lambda x: np.zeros((len(x),), np.float32), ds, cfg, progress=False)
    with pytest.raises(DeployKitError, match="cannot evaluate"):
        evaluate(42, ds, cfg, progress=False)
    assert evaluate(lambda x: np.zeros((len(x), 10)), ds, cfg, progress=False).top5 is not None
    four = DataConfig(input_size=(1, 4, 4), mean=(0.0,), std=(1.0,), crop_pct=1.0, num_classes=4)
    sub = D.Subset(ds, [i for i in range(37) if ds.labels()[i] < 4])
    sub.classes = ("c0", "c1", "c2", "c3")
    assert evaluate(lambda x: brightness_logits(x)[:, :4], sub, four, progress=False).top5 is None


_REAL = D.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"
needs_fashion = pytest.mark.skipif(not _REAL.exists(), reason="Debian package dataset-fashion-mnist is not installed")


@needs_fashion
def test_fashion_mnist_oracle_and_constant(monkeypatch):
    from deploykit.data.specs import open_dataset

    monkeypatch.delenv(D.FASHION_MNIST_ENV, raising=False)
    ds = open_dataset("fashion-mnist:test[:300]")
    cfg = DataConfig(input_size=(1, 28, 28), mean=(0.5,), std=(0.5,), crop_pct=1.0, num_classes=10)
    labels = ds.labels()
    # Oracle: looks each preprocessed image up in a table built from the same pipeline.
    from deploykit.data.transforms import preprocess_batch

    table = {x.tobytes(): y for x, y in zip(preprocess_batch(ds.arrays()[0], cfg), labels)}

    def oracle(x):
        out = np.zeros((len(x), 10), np.float32)
        out[np.arange(len(x)), [table[row.tobytes()] for row in x]] = 1.0
        return out

    assert evaluate(oracle, ds, cfg, batch_size=64, progress=False).top1 == 1.0
    const = evaluate(lambda x: np.eye(10, dtype=np.float32)[np.zeros(len(x), int)], ds, cfg, progress=False)
    assert const.top1 == pytest.approx(np.mean(labels == 0))
    assert 0.05 < const.top1 < 0.15  # about one class in ten


@pytest.mark.parametrize(
    "top1, ref, ratio, passed",
    [
        (0.891, 0.90, 0.99, True),  # exactly 99% of FP32
        (0.8909, 0.90, 0.99, False),
        (0.95, 0.90, 0.99, True),  # better than FP32
        (0.855, 0.90, 0.95, True),  # exactly 95% with a custom gate
        (0.855, 0.90, 0.95 + 1e-6, False),
    ],
)
def test_gate_threshold(top1, ref, ratio, passed):
    ok, message = accuracy_gate(top1, ref, ratio)
    assert ok is passed
    assert ("PASS" if passed else "FAIL") in message and "\n" not in message


def test_gate_takes_a_result_and_checks_ratio(brightness_set):
    ds, cfg, _ = brightness_set
    res = evaluate(brightness_logits, ds, cfg, progress=False)
    assert accuracy_gate(res, 1.0)[0]
    with pytest.raises(DeployKitError, match="must be in"):
        accuracy_gate(res, 1.0, ratio=1.5)
