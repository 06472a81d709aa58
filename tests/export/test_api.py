"""export_model end to end: one model per family with the parity gate, manifest and hashes, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploykit import parity
from deploykit._io import sha256_file
from deploykit.artifact import MANIFEST_NAME, Artifact
from deploykit.errors import DeployKitError, GateError
from deploykit.export.api import default_out_dir, export_model
from deploykit.export.to_onnx import get_metadata
from deploykit.models.weights import load_model, save_weights
from deploykit.parity import ParityResult, check_gate, compare_outputs, parity_inputs

# One model of every family, at the smallest sizes that keep the test fast (Inception-v3 needs 75).
FAMILIES = [
    ("resnet18", 32, "resnet"),
    ("resnext50", 32, "resnext"),
    ("densenet121", 32, "densenet"),
    ("googlenet", 32, "inception"),
    ("inception_v3", 75, "inception"),
]
CLASSES = 10
FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ckpt")


_MODELS: dict[Path, object] = {}


def checkpoint(ckpt_dir: Path, name: str, size: int) -> Path:
    """A random-init checkpoint with its data config; the model that wrote it is kept for checks."""
    path = ckpt_dir / f"{name}-{size}.safetensors"
    if not path.exists():
        import torch

        torch.manual_seed(0)
        model = load_model(name, num_classes=CLASSES, overrides={"image_size": (size, size)})
        save_weights(model, path)
        _MODELS[path] = model
    return path


def independent_parity(ckpt: Path, onnx_path: Path, seed: int = 123, dtype=np.float32):
    """The model that wrote the checkpoint vs the artifact, on inputs the export never saw."""
    import onnxruntime as ort
    import torch

    model = _MODELS[ckpt]
    x = parity_inputs(model.data_config, 3, seed=seed)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.astype(dtype)})[0].astype(np.float32)
    return compare_outputs(ref, out)


def rehash(art_dir: Path) -> None:
    """Every file is listed with its sha256 and size; nothing unlisted sits beside them."""
    manifest = json.loads((art_dir / MANIFEST_NAME).read_text())
    on_disk = {p.relative_to(art_dir).as_posix() for p in art_dir.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {MANIFEST_NAME}
    for rel, info in manifest["files"].items():
        assert sha256_file(art_dir / rel) == info["sha256"]
        assert (art_dir / rel).stat().st_size == info["bytes"]


@pytest.mark.parametrize("name,size,family", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_export_every_family_passes_parity(name, size, family, ckpt_dir, tmp_path):
    ckpt = checkpoint(ckpt_dir, name, size)
    out = tmp_path / "art"
    art = export_model(name, weights=ckpt, out=out, progress=False)
    assert art.path == out and sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "model.onnx"]
    rehash(out)
    loaded = Artifact.load(out)  # verifies hashes too
    m = loaded.manifest
    assert (m.family, m.format, m.precision, m.main_file, m.opset) == (family, "onnx", "fp32", "model.onnx", 18)
    assert m.model == _MODELS[ckpt].model_name  # canonical name even for an alias
    assert m.data_config.input_size == (3, size, size) and m.data_config.num_classes == CLASSES
    assert [(t.name, t.dtype, t.shape) for t in m.inputs] == [("input", "float32", ["batch", 3, size, size])]
    assert [(t.name, t.dtype, t.shape) for t in m.outputs] == [("logits", "float32", ["batch", CLASSES])]
    assert m.batch.dynamic
    assert m.weights["sha256"] == sha256_file(ckpt) and m.weights["file"] == ckpt.name
    assert {"deploykit", "torch", "onnx", "onnxruntime"} <= set(m.versions)
    assert [s["stage"] for s in m.stages] == ["export", "optimize"]
    assert m.stages[1]["parity"]["fixed_seed"]["count"] == 8
    assert "passes" in m.stages[1]["params"]
    p = m.results["parity"]
    assert p["passed"] and p["precision"] == "fp32" and p["reference"] == "pytorch"
    fs = {k: v for k, v in p["fixed_seed"].items() if k != "seed"}
    assert check_gate(ParityResult(**fs), "fp32") == []
    # The gate is proven independently: the original model, new inputs, a new session.
    r = independent_parity(ckpt, loaded.main_path)
    assert check_gate(r, "fp32") == [], r
    meta = get_metadata(onnx.load(str(loaded.main_path), load_external_data=False))
    assert meta["deploykit.model"] == m.model and meta["deploykit.precision"] == "fp32"


@pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST is not installed (dataset-fashion-mnist)")
def test_fp16_export_with_real_image_parity(ckpt_dir, tmp_path):
    ckpt = checkpoint(ckpt_dir, "resnet18", 32)
    out = tmp_path / "fp16"
    art = export_model("resnet18", weights=ckpt, out=out, fp16=True, data="fashion-mnist:test[:12]", progress=False)
    m = Artifact.load(out).manifest
    assert m.precision == "fp16" and [s["stage"] for s in m.stages] == ["export", "optimize", "fp16"]
    assert m.inputs[0].dtype == "float32"  # float32 I/O kept
    p = m.results["parity"]
    assert p["gate"] == {"min_top1": 0.99, "min_cosine": 0.999}
    assert p["data"]["count"] == 12 and p["fixed_seed"]["count"] == 8
    assert p["data"]["top1_agreement"] >= 0.99 and p["data"]["cosine"] >= 0.999
    model = onnx.load(str(art.main_path))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert get_metadata(model)["deploykit.precision"] == "fp16"
    r = independent_parity(ckpt, art.main_path)
    assert check_gate(r, "fp16") == [] and r.max_abs > 0


def test_fixed_batch_without_optimiser_is_recorded(ckpt_dir, tmp_path):
    ckpt = checkpoint(ckpt_dir, "resnet18", 32)
    art = export_model("resnet18", weights=ckpt, out=tmp_path / "b2", batch=2, optimize=False, progress=False)
    m = art.manifest
    assert m.inputs[0].shape == [2, 3, 32, 32] and m.outputs[0].shape == [2, CLASSES]
    assert not m.batch.dynamic and m.batch.max == 2
    assert [s["stage"] for s in m.stages] == ["export"]
    assert m.results["parity"]["fixed_seed"]["count"] == 8  # four batches of two


def test_export_without_weights_is_reproducible_from_its_seed(tmp_path):
    """Same command, same model file; the seed in the manifest rebuilds the PyTorch reference."""
    from deploykit.harness.compare import compare_backends

    kw = dict(overrides={"image_size": (32, 32)}, num_classes=CLASSES, progress=False)
    a = export_model("resnet18", out=tmp_path / "a", **kw)
    b = export_model("resnet18", out=tmp_path / "b", **kw)
    c = export_model("resnet18", out=tmp_path / "c", seed=1, **kw)
    sha = {k: art.manifest.files["model.onnx"]["sha256"] for k, art in (("a", a), ("b", b), ("c", c))}
    assert sha["a"] == sha["b"] != sha["c"]
    assert a.manifest.weights == {"init": "random", "seed": 0} and c.manifest.weights["seed"] == 1
    result = compare_backends(c.path, ["torch", "onnxruntime"], batch=2)
    assert result.passed and result.rows[0].parity.max_abs < 1e-3


def test_default_out_dir():
    assert default_out_dir("resnet18") == Path("artifacts/resnet18")
    assert default_out_dir("resnet18", fp16=True) == Path("artifacts/resnet18-fp16")


# ---- bad inputs: one-line error, nothing left on disk ------------------------------------------


def assert_one_line(e: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(e.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, msg


def assert_nothing_left(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p.name for p in parent.iterdir() if name in p.name]  # no temp siblings


def test_unknown_model(tmp_path):
    with pytest.raises(DeployKitError) as e:
        export_model("resnet19", out=tmp_path / "x", progress=False)
    assert_one_line(e, "unknown model 'resnet19'", "resnet18")
    assert_nothing_left(tmp_path, "x")


def test_weights_for_another_architecture(ckpt_dir, tmp_path):
    ckpt = checkpoint(ckpt_dir, "resnet18", 32)
    with pytest.raises(DeployKitError) as e:
        export_model("googlenet", weights=ckpt, out=tmp_path / "x", progress=False)
    assert_one_line(e, ckpt.name)
    assert_nothing_left(tmp_path, "x")


def test_truncated_checkpoint(ckpt_dir, tmp_path):
    ckpt = checkpoint(ckpt_dir, "resnet18", 32)
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(DeployKitError) as e:
        export_model("resnet18", weights=bad, out=tmp_path / "x", progress=False)
    assert_one_line(e, "cut.safetensors")
    assert_nothing_left(tmp_path, "x")


def test_output_directory_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DeployKitError) as e:
        export_model("resnet18", out=blocker / "art", progress=False)
    assert_one_line(e, "not writable")
    assert blocker.read_text() == "not a directory"


def test_existing_artifact_needs_force(ckpt_dir, tmp_path):
    out = tmp_path / "art"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(DeployKitError) as e:
        export_model("resnet18", out=out, progress=False)
    assert_one_line(e, str(out), "--force")
    assert (out / "keep.txt").read_text() == "old"


def test_opset_out_of_range(tmp_path):
    with pytest.raises(DeployKitError) as e:
        export_model("resnet18", out=tmp_path / "x", opset=21, progress=False)
    assert_one_line(e, "opset 21 is out of range")
    assert_nothing_left(tmp_path, "x")


def test_gate_failure_leaves_no_directory(ckpt_dir, tmp_path, monkeypatch):
    real = parity.compare_outputs

    def drifting(ref, out):
        r = real(ref, out)
        return ParityResult(r.max_abs + 1.0, (r.max_abs + 1.0) / r.logit_range, r.cosine, 0.5, r.logit_range, r.count)

    monkeypatch.setattr(parity, "compare_outputs", drifting)
    ckpt = checkpoint(ckpt_dir, "resnet18", 32)
    parent = tmp_path / "new" / "deeper"  # created by the export, removed again on failure
    with pytest.raises(GateError) as e:
        export_model("resnet18", weights=ckpt, out=parent / "art", progress=False)
    assert_one_line(e, "FP32 parity gate failed", "top-1 agreement 50.00%", "logit range")
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_an_artifact_and_tampering_is_detected(ckpt_dir, tmp_path):
    ckpt = checkpoint(ckpt_dir, "resnet18", 32)
    out = tmp_path / "art"
    out.mkdir()
    (out / "manifest.json").write_text("{}")  # an old artifact: --force replaces only artifacts
    (out / "stale.txt").write_text("old")
    # optimize=False keeps it quick: the optimiser is tested above
    art = export_model("resnet18", weights=ckpt, out=out, force=True, optimize=False, progress=False)
    assert not (out / "stale.txt").exists()
    Artifact.load(art.path)
    assert_nothing_left(tmp_path, "art.")  # no .old or temp directories
    data = bytearray(art.main_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.main_path.write_bytes(bytes(data))
    with pytest.raises(DeployKitError) as e:
        Artifact.load(art.path)
    assert_one_line(e, "model.onnx", "sha256 does not match")
