"""``deploykit validate`` end to end: a briefly trained resnet18, its artifact and a degraded child."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from deploykit.cli import cli

SLICE = "fashion-mnist:test[:500]"


def invoke(*args: str):
    return CliRunner().invoke(cli, ["validate", *args, "--quiet", "--threads", "1"])


@pytest.fixture(scope="module")
def fp32_artifact(tiny_resnet18_weights, tmp_path_factory):
    from deploykit.export.api import export_model

    return export_model(
        "resnet18", weights=tiny_resnet18_weights, progress=False, out=tmp_path_factory.mktemp("art") / "resnet18-fp32"
    )


def degraded_child(parent, out_dir, noise: float = 1.0, seed: int = 0):
    """A child artifact of ``parent`` whose weights carry heavy noise: its accuracy collapses."""
    import onnx
    from onnx import numpy_helper

    from deploykit.artifact import ArtifactWriter, Manifest

    proto = onnx.load(str(parent.main_path))
    rng = np.random.default_rng(seed)
    for init in proto.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.ndim >= 2:
            noisy = w + rng.normal(0, noise * (w.std() + 1e-8), w.shape).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    with ArtifactWriter(out_dir) as wr:
        onnx.save(proto, str(wr.dir / "model.onnx"))
        man = Manifest.from_dict(parent.manifest.to_dict())
        man.precision = "int8"
        man.parent = parent.parent_ref()
        man.results = {}
        man.add_stage("quantize", params={"note": "test: noise instead of quantisation"})
        return wr.commit(man)


@pytest.mark.slow
def test_zoo_model_with_weights_scores_well_above_chance(tiny_resnet18_weights, tmp_path):
    out = tmp_path / "acc.json"
    res = invoke(
        "resnet18", "--weights", str(tiny_resnet18_weights), "--data", SLICE, "--json", str(out), "--batch-size", "100"
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["accuracy"]["count"] == 500 and data["kind"] == "model"
    assert data["accuracy"]["top1"] > 0.5  # chance is 0.1
    assert data["accuracy"]["top5"] >= data["accuracy"]["top1"]
    assert [r["class"] for r in data["accuracy"]["per_class"]][:2] == ["T-shirt/top", "Trouser"]
    assert sum(r["count"] for r in data["accuracy"]["per_class"]) == 500
    assert np.asarray(data["accuracy"]["confusion"]).sum() == 500
    assert "Per-class accuracy" in res.output and "Ankle boot" in res.output


@pytest.mark.slow
def test_artifact_gated_against_pytorch_and_recorded(fp32_artifact, tiny_resnet18_weights):
    from deploykit.artifact import Artifact
    from deploykit.data.specs import open_dataset

    res = invoke(str(fp32_artifact.path), "--data", SLICE)
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "FP32 reference top-1" in res.output
    acc = Artifact.load(fp32_artifact.path).manifest.results["accuracy"]  # hashes still verify
    assert acc["dataset"] == SLICE and acc["fingerprint"] == open_dataset(SLICE).fingerprint()
    assert acc["top1"] > 0.5 and acc["count"] == 500
    # ONNX Runtime and PyTorch agree on (almost) every image of an FP32 export.
    assert abs(acc["top1"] - acc["reference"]["top1"]) <= 0.004
    assert acc["passed"] is True and acc["gate"] == 0.99
    assert acc["reference"]["source"] == "PyTorch model rebuilt from the recorded weights"


@pytest.mark.slow
def test_degraded_child_fails_the_gate(fp32_artifact, tmp_path):
    from deploykit.artifact import Artifact

    child = degraded_child(fp32_artifact, tmp_path / "child")
    # The parent was validated on the same slice above or is evaluated now; both give a reference.
    res = invoke(str(child.path), "--data", SLICE, "--json", str(tmp_path / "c.json"))
    assert res.exit_code == 3, res.output  # a failed gate
    assert "accuracy gate failed" in res.output and "FAIL" in res.output
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["passed"] is False and report["reference"]["path"] == str(fp32_artifact.path)
    assert report["accuracy"]["top1"] < 0.99 * report["reference"]["top1"]
    assert Artifact.load(child.path).manifest.results["accuracy"]["passed"] is False
    # A looser gate (keep 10% of FP32) passes the same artifact.
    loose = invoke(str(child.path), "--data", SLICE, "--gate", "0.1", "--no-record")
    expect = 0 if report["accuracy"]["top1"] >= 0.1 * report["reference"]["top1"] else 1
    assert loose.exit_code == expect, loose.output


@pytest.mark.slow
def test_parent_gone_means_no_reference(fp32_artifact, tmp_path):
    parent_copy = tmp_path / "parent"
    shutil.copytree(fp32_artifact.path, parent_copy)
    from deploykit.artifact import Artifact

    child = degraded_child(Artifact.load(parent_copy), tmp_path / "child", noise=0.0)
    shutil.rmtree(parent_copy)
    res = invoke(str(child.path), "--data", "fashion-mnist:test[:64]", "--json", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    # Falls back to the PyTorch weights recorded in the manifest (still on disk), noting the gone parent.
    assert res.exit_code == 0, res.output
    assert any("no longer there" in n for n in report["notes"])
    assert report["reference"]["source"] == "PyTorch model rebuilt from the recorded weights"


def test_bad_inputs_are_one_line_errors(tmp_path):
    res = invoke("resnet18", "--data", "imagenet:val")
    assert res.exit_code == 1 and "unknown dataset 'imagenet:val'" in res.output
    assert res.output.strip().count("\n") == 0
    res = invoke("resnet181", "--data", "fashion-mnist:test[:8]")
    assert res.exit_code == 1 and "resnet18" in res.output
    res = invoke(str(tmp_path), "--data", "fashion-mnist:test[:8]")
    assert res.exit_code == 1 and "not an artifact directory" in res.output
    res = CliRunner().invoke(cli, ["validate", "resnet18"])
    assert res.exit_code == 2 and "--data" in res.output
    res = invoke("resnet18", "--data", "fashion-mnist:test[:8]", "--gate", "1.5")
    assert res.exit_code == 2


def test_artifact_refuses_model_options(tmp_path):
    from deploykit.artifact import ArtifactWriter, Manifest, TensorSpec
    from deploykit.data.config import DataConfig

    with ArtifactWriter(tmp_path / "a") as w:
        (w.dir / "model.onnx").write_bytes(b"x")
        w.commit(
            Manifest(
                model="resnet18",
                family="resnet",
                format="onnx",
                precision="fp32",
                main_file="model.onnx",
                data_config=DataConfig(),
                inputs=[TensorSpec("input", "float32", ["batch", 3, 224, 224])],
                outputs=[TensorSpec("logits", "float32", ["batch", 1000])],
            )
        )
    res = invoke(str(tmp_path / "a"), "--data", "fashion-mnist:test[:8]", "--weights", "w.safetensors")
    assert res.exit_code == 1 and "apply to a zoo model name" in res.output
