"""The torch-free runtime: same answers as ONNX Runtime, batching to the profile, bad inputs, threads."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import CLASSES, SIZE, tiny_artifact

from deploykit.data.transforms import preprocess_batch
from deploykit.errors import DeployKitError
from deploykit.onnx_io import ort_session
from deploykit.runtime import Predictor
from deploykit.runtime.predictor import softmax


def _ort_probs(art, x: np.ndarray) -> np.ndarray:
    sess = ort_session(art.main_path)
    return softmax(sess.run(None, {art.manifest.inputs[0].name: x})[0])


def test_predictions_equal_onnxruntime_on_fashion_mnist(fmnist_artifact, fmnist_images):
    pred = Predictor.from_artifact(fmnist_artifact.path)
    got = pred.predict(fmnist_images, topk=3)
    x = preprocess_batch(fmnist_images, fmnist_artifact.data_config)
    want = _ort_probs(fmnist_artifact, x)
    assert len(got) == len(fmnist_images) == 12  # 12 images > max batch 8: split in two calls
    labels = fmnist_artifact.data_config.labels
    for p, row, path in zip(got, want, fmnist_images):
        order = np.argsort(-row)[:3]
        assert p.indices == tuple(int(i) for i in order)
        assert p.labels == tuple(labels[i] for i in order)
        np.testing.assert_allclose(p.probabilities, row[order], rtol=1e-5, atol=1e-6)
        assert p.source == str(path)
    # PIL images, uint8 arrays and the preprocessed batch give the same answer as the files.
    pils = [Image.open(p) for p in fmnist_images[:4]]
    arrays = [np.asarray(Image.open(p)) for p in fmnist_images[:4]]
    for other in (pred.predict(pils, 3), pred.predict(arrays, 3), pred.predict(x[:4], 3)):
        assert [o.indices for o in other] == [g.indices for g in got[:4]]
        np.testing.assert_allclose([o.probabilities for o in other], [g.probabilities for g in got[:4]], rtol=1e-6)
    assert pred.predict(fmnist_images[0], topk=1)[0].indices == got[0].indices[:1]


def test_fixed_batch_artifact_pads_the_last_chunk(tmp_path):
    art = tiny_artifact(tmp_path / "fixed", dynamic=False, batch=4)
    x = np.random.default_rng(0).standard_normal((6, 3, SIZE, SIZE)).astype(np.float32)
    pred = Predictor.from_artifact(art.path)
    got = pred.logits(x)
    sess = ort_session(art.main_path)
    want = np.concatenate(
        [
            sess.run(None, {"input": x[:4]})[0],
            sess.run(None, {"input": np.concatenate([x[4:], np.zeros_like(x[:2])])})[0][:2],
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(DeployKitError, match="built for batch 4 only"):
        pred.infer(x[:3])


def test_topk_is_capped_and_probabilities_sum_to_one(tmp_path):
    pred = Predictor.from_artifact(tiny_artifact(tmp_path / "a").path)
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    out = pred.predict(x, topk=50)
    assert all(len(p.indices) == CLASSES for p in out)
    assert all(abs(sum(p.probabilities) - 1) < 1e-9 for p in out)
    assert all(list(p.probabilities) == sorted(p.probabilities, reverse=True) for p in out)
    assert out[0].labels == tuple(str(i) for i in out[0].indices)  # no labels in the manifest


def test_threads_share_one_predictor(tmp_path):
    pred = Predictor.from_artifact(tiny_artifact(tmp_path / "a").path)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((1 + i % 8, 3, SIZE, SIZE)).astype(np.float32) for i in range(64)]
    want = [pred.logits(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(pred.logits, batches))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 3, SIZE + 1, SIZE), np.float32), "array shape"),
        (np.zeros((2, 3, SIZE, SIZE), np.int32), "uint8 image|dtype int32"),
        (np.zeros((3, SIZE, SIZE), np.float32), "expected a float"),
    ],
)
def test_wrong_arrays_are_one_line_errors(tmp_path, bad, message):
    pred = Predictor.from_artifact(tiny_artifact(tmp_path / "a").path)
    with pytest.raises(DeployKitError, match=message):
        pred.predict(bad)


def test_batch_beyond_the_profile_is_refused_by_infer(tmp_path):
    pred = Predictor.from_artifact(tiny_artifact(tmp_path / "a").path)
    with pytest.raises(DeployKitError, match=r"outside its profile \[1, 8\]"):
        pred.infer(np.zeros((9, 3, SIZE, SIZE), np.float32))
    assert len(pred.logits(np.zeros((9, 3, SIZE, SIZE), np.float32))) == 9  # logits() splits instead
    pred.close()
    with pytest.raises(DeployKitError, match="predictor is closed"):
        pred.infer(np.zeros((1, 3, SIZE, SIZE), np.float32))


def test_tampered_and_missing_artifact_files(tmp_path):
    art = tiny_artifact(tmp_path / "a")
    with open(art.main_path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DeployKitError, match="model.onnx: size does not match"):
        Predictor.from_artifact(art.path)
    art.main_path.unlink()
    with pytest.raises(DeployKitError, match="model.onnx: listed in the manifest but missing"):
        Predictor.from_artifact(art.path)
    with pytest.raises(DeployKitError, match="artifact directory not found"):
        Predictor.from_artifact(tmp_path / "nope")


def test_undecodable_and_bomb_images_are_errors(tmp_path, monkeypatch):
    pred = Predictor.from_artifact(tiny_artifact(tmp_path / "a").path)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DeployKitError, match="junk.png: cannot decode image"):
        pred.predict([junk])
    big = tmp_path / "big.png"
    Image.new("L", (64, 64)).save(big)
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that: this image sits in that band.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    with pytest.raises(DeployKitError, match="big.png: refused as a decompression bomb"):
        pred.predict([big])
    with pytest.raises(DeployKitError, match="<bytes>: refused as a decompression bomb"):
        pred.predict([big.read_bytes()])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)  # past twice the limit Pillow raises
    with pytest.raises(DeployKitError, match="big.png: refused as a decompression bomb"):
        pred.predict([big])


def test_engine_artifact_names_the_tensorrt_backend(tmp_path):
    """An engine manifest dispatches to the TensorRT backend (missing here: a one-line error)."""
    from deploykit.artifact import ArtifactWriter, Manifest

    src = tiny_artifact(tmp_path / "a").manifest.to_dict()

    def engine(out, record):
        with ArtifactWriter(out) as w:
            (w.dir / "model.plan").write_bytes(b"not an engine")
            m = Manifest.from_dict({**src, "format": "tensorrt-engine", "main_file": "model.plan", "files": {}})
            if record:
                m.add_stage("build", engine={"tensorrt": "10.3.0", "gpu": "NVIDIA L4", "compute_capability": "8.9"})
            return w.commit(m)

    art = engine(tmp_path / "engine", record=True)
    with pytest.raises(DeployKitError, match="tensorrt-engine artifact runs on tensorrt, not onnxruntime"):
        Predictor.from_artifact(art.path, backend="onnxruntime")
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(DeployKitError, match="pip install 'deploykit\\[tensorrt\\]'"):
            Predictor.from_artifact(art.path)
    bare = engine(tmp_path / "bare", record=False)  # the guard has nothing to check it against
    with pytest.raises(DeployKitError, match="bare/manifest.json has no build stage with an engine record"):
        Predictor.from_artifact(bare.path)


RUNTIME_ONLY = textwrap.dedent("""
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        # torch, onnx and click behave as if not installed: importing them fails.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx", "click"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    from deploykit.runtime import Predictor

    pred = Predictor.from_artifact(sys.argv[1])
    out = pred.predict(sys.argv[2:], topk=2)
    heavy = sorted(m for m in ("torch", "onnx", "click") if m in sys.modules)
    print(json.dumps({"top": [p.indices for p in out], "heavy": heavy}))
""")


def test_runtime_never_imports_torch_onnx_or_click(fmnist_artifact, fmnist_images):
    files = [str(p) for p in fmnist_images[:3]]
    proc = subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, str(fmnist_artifact.path), *files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    want = Predictor.from_artifact(fmnist_artifact.path).predict(files, topk=2)
    assert result["top"] == [list(p.indices) for p in want]
