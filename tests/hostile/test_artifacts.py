"""Artifacts from strangers: hashes, schema versions, file names, parent chains and calibration
caches are checked before anything is run or trusted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image
from tiny_models import CLASSES, tiny_artifact, tiny_onnx

from deploykit.artifact import Artifact
from deploykit.errors import DeployKitError
from deploykit.quantize.trt_cache import read_cache, write_cache

from .helpers import invoke, refused, snapshot


def _edit_manifest(art: Path, **changes) -> None:
    m = json.loads((art / "manifest.json").read_text())
    m.update(changes)
    (art / "manifest.json").write_text(json.dumps(m))


@pytest.fixture
def art(tmp_path):
    return tiny_artifact(tmp_path / "art").path


@pytest.mark.parametrize(
    "command", [["bench", "--iters", "1", "--warmup", "0"], ["validate", "--data", "fashion-mnist:test[:8]", "-q"]]
)
def test_hash_mismatch(art, command):
    data = bytearray((art / "model.onnx").read_bytes())
    data[-5] ^= 0xFF
    (art / "model.onnx").write_bytes(bytes(data))
    refused(invoke(command[0], art, *command[1:]), str(art / "model.onnx"), "sha256 does not match the manifest")


def test_truncated_model_file(art):
    (art / "model.onnx").write_bytes((art / "model.onnx").read_bytes()[:100])
    refused(invoke("bench", art), "size does not match the manifest")


def test_future_schema_version(art):
    _edit_manifest(art, schema="deploykit.artifact/7")
    refused(invoke("bench", art), "written by a newer deploykit (schema deploykit.artifact/7", "upgrade deploykit")


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"schema": "something-else/1"}, "is not deploykit.artifact/1"),
        ({"main_file": "../elsewhere.onnx"}, "points outside the artifact directory"),
        ({"main_file": "/etc/hostname"}, "points outside the artifact directory"),
        ({"files": {"../../etc/hostname": {"sha256": "0" * 64, "bytes": 1}}}, "points outside the artifact directory"),
        ({"files": {"model.onnx": "abc"}}, "needs a sha256 string and a byte count"),
        ({"parent": "somewhere"}, "'parent' must be an object or null"),
        ({"batch": {"min": 4, "opt": 2, "max": 8, "dynamic": True}}, "is not 1 <= min <= opt <= max"),
        ({"batch": {"min": 1, "opt": 1, "max": 8, "dynamic": True, "evil": 1}}, "malformed"),
        ({"inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 3, 8, 8]}]}, "invalid shape"),
        ({"data_config": {"input_size": [3, 8, 8], "mean": "x"}}, "manifest.json"),
        ({"format": "exe"}, "manifest format 'exe' is not one of"),
    ],
)
def test_malformed_manifest_fields(art, changes, needle):
    _edit_manifest(art, **changes)
    refused(invoke("bench", art), str(art / "manifest.json"), needle)


@pytest.mark.parametrize(
    "content, needle", [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"), ("", "not valid JSON")]
)
def test_manifest_not_json(art, content, needle):
    (art / "manifest.json").write_text(content)
    refused(invoke("bench", art), needle)


def test_listed_file_that_is_a_link_out_of_the_folder(tmp_path, art):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    os.symlink(secret, art / "labels.txt")
    from deploykit._io import sha256_file

    m = json.loads((art / "manifest.json").read_text())
    m["files"]["labels.txt"] = {"sha256": sha256_file(secret), "bytes": secret.stat().st_size}
    (art / "manifest.json").write_text(json.dumps(m))
    refused(invoke("bench", art), "a link that points outside the artifact directory")


def test_parent_chain_that_loops_terminates_and_says_so(tmp_path):
    a, b = tiny_artifact(tmp_path / "a").path, tiny_artifact(tmp_path / "b").path
    from deploykit._io import sha256_file

    for me, other in ((a, b), (b, a)):
        _edit_manifest(
            me,
            precision="int8",
            parent={
                "path": str(other),
                "manifest_sha256": "0" * 64,
                "main_sha256": sha256_file(other / "model.onnx"),
                "precision": "int8",
            },
        )
    folder = tmp_path / "imgs"
    for c in range(CLASSES):
        (folder / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (8, 8), (40 * c, 0, 0)).save(folder / f"c{c}" / "x.png")
    before = snapshot(a)
    r = invoke("validate", a, "--data", folder, "-q", "--no-record")
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.output
    assert "loops at" in " ".join(r.output.split()), r.output
    assert "no gate applied" in r.output
    assert snapshot(a) == before


def test_calibration_cache_made_for_another_model(tmp_path):
    model = tiny_onnx(tmp_path / "model.onnx")
    other = tiny_onnx(tmp_path / "other.onnx", bias_shift=1.0)
    cache = write_cache(tmp_path / "calib.cache", {"input": 0.01, "c": 0.02}, other)
    with pytest.raises(DeployKitError, match="calibration cache was made for another model"):
        read_cache(cache, model)
    assert read_cache(cache, other) == pytest.approx({"input": 0.01, "c": 0.02})


@pytest.mark.parametrize(
    "sidecar, cache_text, needle",
    [
        (None, "TRT-100300-EntropyCalibration2\ninput: 3c23d70a\n", "no sidecar"),
        ("[]", "TRT-100300-EntropyCalibration2\ninput: 3c23d70a\n", "malformed sidecar"),
        ('{"onnx_sha256": 5}', "TRT-100300-EntropyCalibration2\n", "malformed sidecar"),
        ("ok", "TRT-100300-EntropyCalibration2\ninput: 3c23d70a00\n", "line 2 is not 'tensor: hex-scale'"),
        ("ok", "#!/bin/sh\nrm -rf /\n", "not a TensorRT calibration cache"),
        ("ok", b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_broken_calibration_caches(tmp_path, sidecar, cache_text, needle):
    model = tiny_onnx(tmp_path / "model.onnx")
    cache = write_cache(tmp_path / "calib.cache", {"input": 0.01}, model)
    side = Path(str(cache) + ".json")
    if sidecar is None:
        side.unlink()
    elif sidecar != "ok":
        side.write_text(sidecar)
    if isinstance(cache_text, bytes):
        cache.write_bytes(cache_text)
    else:
        cache.write_text(cache_text)
    with pytest.raises(DeployKitError, match=needle):
        read_cache(cache, model)


def test_consistent_artifact_still_loads(art):
    """The control for the edits above: the untouched artifact is accepted."""
    assert Artifact.load(art).manifest.model == "tiny"
