"""validate(): which FP32 reference an artifact is gated against, and what is recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deploykit.artifact import Artifact, ArtifactWriter, BatchProfile, Manifest, TensorSpec
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError
from deploykit.harness.validate import render, validate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLASSES = ("dark", "light", "mid")
LEVELS = {"dark": 40, "light": 220, "mid": 128}
CFG = DataConfig(input_size=(1, 8, 8), mean=(0.0,), std=(1.0,), crop_pct=1.0, num_classes=3, labels=CLASSES)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 noisy uniform images, 4 per class; brightness identifies the class."""
    root = tmp_path_factory.mktemp("bright")
    rng = np.random.default_rng(0)
    for name, level in LEVELS.items():
        (root / name).mkdir()
        for i in range(4):
            px = np.clip(level + rng.integers(-10, 11, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(px, "L").save(root / name / f"{i}.png")
    return str(root)


def brightness_model(bias_shift: float = 0.0):
    """Mean brightness -> logits 2*c*x - c^2: argmax is the nearest class level (an exact oracle)."""
    import torch

    centres = torch.tensor([LEVELS[c] / 255.0 for c in CLASSES])
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 3))
    with torch.no_grad():
        model[2].weight.copy_((2 * centres)[:, None])
        model[2].bias.copy_(-(centres**2))
        model[2].bias[CLASSES.index("mid")] -= bias_shift  # >0: "mid" stops winning
    return model.eval()


def write_artifact(model, out_dir, precision="fp32", parent=None, force=False):
    import torch

    with ArtifactWriter(out_dir, force=force) as w:
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
            model="brightness",
            family="test",
            format="onnx",
            precision=precision,
            main_file="model.onnx",
            data_config=CFG,
            inputs=[TensorSpec("input", "float32", ["batch", 1, 8, 8])],
            outputs=[TensorSpec("logits", "float32", ["batch", 3])],
            batch=BatchProfile(1, 1, 64, True),
            opset=17,
            parent=parent.parent_ref() if parent is not None else None,
        )
        return w.commit(man)


@pytest.fixture
def chain(tmp_path):
    parent = write_artifact(brightness_model(), tmp_path / "fp32")
    child = write_artifact(brightness_model(bias_shift=1.0), tmp_path / "int8", "int8", parent=parent)
    return parent, child


def test_fp32_artifact_without_weights_has_no_reference(chain, folder, tmp_path):
    parent, _ = chain
    report = validate(parent.path, folder, progress=False, json_path=tmp_path / "r.json")
    assert report.result.top1 == 1.0 and report.result.count == 12
    assert report.reference is None and report.gate is None and report.passed
    assert any("no FP32 reference" in n for n in report.notes)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["accuracy"]["top1"] == 1.0 and saved["passed"] is True
    recorded = Artifact.load(parent.path).manifest.results["accuracy"]
    assert recorded["top1"] == 1.0 and recorded["dataset"] == folder and len(recorded["fingerprint"]) == 64


def test_child_gated_against_recorded_parent_accuracy(chain, folder):
    parent, child = chain
    validate(parent.path, folder, progress=False)  # records the FP32 accuracy
    report = validate(child.path, folder, progress=False)
    assert report.result.top1 == pytest.approx(8 / 12)  # every "mid" image is now wrong
    assert report.reference["source"] == "recorded in the FP32 parent's manifest"
    assert report.reference["top1"] == 1.0
    assert report.passed is False and "FAIL" in report.gate["message"]
    rows = {r["class"]: r["accuracy"] for r in report.result.per_class}
    assert rows == {"dark": 1.0, "light": 1.0, "mid": 0.0}
    assert Artifact.load(child.path).manifest.results["accuracy"]["passed"] is False
    assert validate(child.path, folder, gate=0.6, progress=False, record=False).passed


def test_other_data_evaluates_the_parent_now(chain, folder):
    parent, child = chain
    validate(parent.path, folder, progress=False)
    report = validate(child.path, folder + "[::2]", progress=False)  # a different fingerprint
    assert report.reference["source"] == "FP32 parent artifact evaluated now"
    assert report.reference["top1"] == 1.0 and report.result.count == 6


def test_replaced_or_missing_parent_gives_no_reference(chain, folder, tmp_path):
    import shutil

    parent, child = chain
    write_artifact(brightness_model(bias_shift=0.5), parent.path, force=True)
    report = validate(child.path, folder, progress=False, record=False)
    assert report.reference is None and report.passed
    assert any("was replaced" in n for n in report.notes)
    shutil.rmtree(parent.path)
    report = validate(child.path, folder, progress=False, record=False)
    assert any("no longer there" in n for n in report.notes)


def test_render_prints_tables(chain, folder):
    from rich.console import Console

    parent, child = chain
    validate(parent.path, folder, progress=False)
    console = Console(record=True, width=120)
    render(validate(child.path, folder, progress=False, record=False), console)
    text = console.export_text()
    assert "Per-class accuracy" in text and "mid" in text and "66.67%" in text and "FAIL" in text


def test_json_and_plot_files(chain, folder, tmp_path):
    parent, _ = chain
    validate(
        parent.path, folder, progress=False, record=False, json_path=tmp_path / "r.json", plot_path=tmp_path / "acc.png"
    )
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "r.json").read_text())
    assert np.asarray(saved["accuracy"]["confusion"]).trace() == 12
    assert "accuracy" not in Artifact.load(parent.path).manifest.results  # record=False


def test_bad_arguments(chain, folder, tmp_path):
    parent, _ = chain
    with pytest.raises(DeployKitError, match="must be in"):
        validate(parent.path, folder, gate=0)
    with pytest.raises(DeployKitError, match="apply to a zoo model name"):
        validate(parent.path, folder, num_classes=3)
    with pytest.raises(DeployKitError, match="unknown dataset"):
        validate(parent.path, "nope:split")
    (tmp_path / "model.onnx").write_bytes(b"\x00")
    with pytest.raises(DeployKitError, match="artifact"):
        validate(parent.path / "model.onnx", folder)


def test_backend_choice(chain, folder):
    import onnxruntime as ort

    parent, _ = chain
    report = validate(parent.path, folder, backend="ort", record=False, progress=False)
    assert report.backend == "onnxruntime" and report.result.top1 is not None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(DeployKitError, match=r"pip install 'deploykit\[gpu\]'"):
            validate(parent.path, folder, backend="onnxruntime-cuda", record=False, progress=False)
