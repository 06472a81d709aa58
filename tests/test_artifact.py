"""The artifact directory: atomic commit, re-hashing on load, tamper and schema errors, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploykit._io import sha256_file
from deploykit.artifact import (
    MANIFEST_NAME,
    SCHEMA,
    Artifact,
    ArtifactWriter,
    BatchProfile,
    Manifest,
    TensorSpec,
    is_artifact_dir,
)
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError


def manifest(**kw) -> Manifest:
    base = dict(
        model="resnet18",
        family="resnet",
        format="onnx",
        precision="fp32",
        main_file="model.onnx",
        data_config=DataConfig(input_size=(3, 32, 32), num_classes=10),
        inputs=[TensorSpec("input", "float32", ["batch", 3, 32, 32])],
        outputs=[TensorSpec("logits", "float32", ["batch", 10])],
        batch=BatchProfile(1, 1, 8, True),
        opset=18,
    )
    base.update(kw)
    return Manifest(**base)


def write(out: Path, force: bool = False, extra: dict[str, bytes] | None = None) -> Artifact:
    with ArtifactWriter(out, force=force) as w:
        (w.dir / "model.onnx").write_bytes(b"onnx bytes " * 100)
        for name, data in (extra or {}).items():
            (w.dir / name).parent.mkdir(parents=True, exist_ok=True)
            (w.dir / name).write_bytes(data)
        m = manifest()
        m.add_stage("export", params={"opset": 18})
        return w.commit(m)


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_commit_writes_manifest_with_hashes(tmp_path):
    out = tmp_path / "art"
    art = write(out, extra={"model.onnx.data": b"weights" * 10, "sub/x.bin": b"x"})
    assert is_artifact_dir(out) and art.path == out
    raw = json.loads((out / MANIFEST_NAME).read_text())
    assert raw["schema"] == SCHEMA
    assert set(raw["files"]) == {"model.onnx", "model.onnx.data", "sub/x.bin"}
    for rel, info in raw["files"].items():
        assert info == {"sha256": sha256_file(out / rel), "bytes": (out / rel).stat().st_size}
    assert raw["stages"][0]["stage"] == "export" and raw["stages"][0]["params"] == {"opset": 18}
    assert {"deploykit", "python"} <= set(raw["versions"])
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # the temp directory was renamed


def test_round_trip(tmp_path):
    write(tmp_path / "art")
    art = Artifact.load(tmp_path / "art")
    m = art.manifest
    assert m.inputs[0].shape == ["batch", 3, 32, 32] and m.batch == BatchProfile(1, 1, 8, True)
    assert m.data_config == DataConfig(input_size=(3, 32, 32), num_classes=10)
    assert art.main_path == tmp_path / "art" / "model.onnx"
    assert Manifest.from_dict(m.to_dict()).to_dict() == m.to_dict()


@pytest.mark.parametrize("change", ["flip", "truncate", "delete"])
def test_tampered_files_are_detected(tmp_path, change):
    write(tmp_path / "art", extra={"model.onnx.data": b"w" * 64})
    target = tmp_path / "art" / "model.onnx.data"
    if change == "flip":
        target.write_bytes(b"W" + b"w" * 63)
    elif change == "truncate":
        target.write_bytes(b"w" * 10)
    else:
        target.unlink()
    with pytest.raises(DeployKitError) as e:
        Artifact.load(tmp_path / "art")
    msg = one_line(e)
    assert "model.onnx.data" in msg
    assert {"flip": "sha256 does not match", "truncate": "size does not match", "delete": "missing"}[change] in msg
    Artifact.load(tmp_path / "art", verify=False)  # loading without verification still works


def test_failure_inside_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ArtifactWriter(tmp_path / "art") as w:
            (w.dir / "model.onnx").write_bytes(b"partial")
            raise RuntimeError("parity gate failed")
    assert list(tmp_path.iterdir()) == []


def test_existing_needs_force_and_force_replaces(tmp_path):
    write(tmp_path / "art")
    with pytest.raises(DeployKitError) as e:
        ArtifactWriter(tmp_path / "art")
    assert "already exists; pass --force" in one_line(e)
    write(tmp_path / "art", force=True, extra={"new.bin": b"1"})
    assert "new.bin" in Artifact.load(tmp_path / "art").manifest.files
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # the old copy is gone too


def test_unwritable_parent(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DeployKitError) as e:
        ArtifactWriter(tmp_path / "f" / "art")
    assert "not writable" in one_line(e)


def test_commit_without_main_file_is_a_bug(tmp_path):
    with pytest.raises(RuntimeError, match="main file model.onnx was not written"):
        with ArtifactWriter(tmp_path / "art") as w:
            w.commit(manifest())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda d: d.pop("model"), "missing required field model"),
        (lambda d: d.update(schema="other/2"), "schema 'other/2'"),
        (lambda d: d.update(precision="fp8"), "precision 'fp8'"),
        (lambda d: d.update(format="tflite"), "format 'tflite'"),
        (lambda d: d["files"].pop("model.onnx"), "main file 'model.onnx' is not listed"),
    ],
)
def test_bad_manifests(tmp_path, edit, expected):
    write(tmp_path / "art")
    mpath = tmp_path / "art" / MANIFEST_NAME
    d = json.loads(mpath.read_text())
    edit(d)
    mpath.write_text(json.dumps(d))
    with pytest.raises(DeployKitError) as e:
        Artifact.load(tmp_path / "art")
    assert expected in one_line(e)


def test_not_an_artifact(tmp_path):
    with pytest.raises(DeployKitError, match="not found"):
        Artifact.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployKitError, match="manifest not found"):
        Artifact.load(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DeployKitError, match="not valid JSON"):
        Artifact.load(tmp_path / "bad")


def test_record_result_and_parent_ref(tmp_path):
    art = write(tmp_path / "art")
    art.record_result("accuracy", {"top1": 0.91})
    again = Artifact.load(tmp_path / "art")  # hashes still verify: the manifest is not hashed
    assert again.manifest.results["accuracy"] == {"top1": 0.91}
    ref = again.parent_ref()
    assert ref["manifest_sha256"] == sha256_file(tmp_path / "art" / MANIFEST_NAME)
    assert ref["main_sha256"] == sha256_file(tmp_path / "art" / "model.onnx")
    assert ref["precision"] == "fp32"


def test_batch_profile_check():
    BatchProfile(1, 4, 8, True).check(8)
    with pytest.raises(DeployKitError, match=r"outside its profile \[1, 8\]"):
        BatchProfile(1, 4, 8, True).check(9)
    with pytest.raises(DeployKitError, match="built for batch 2 only"):
        BatchProfile(2, 2, 2, False).check(1)
