"""``deploykit import``: a foreign ONNX file becomes an artifact, and every stage takes it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper
from optimize.foreign import hand_built, legacy_style

from deploykit._io import sha256_file
from deploykit.artifact import Artifact
from deploykit.cli import cli
from deploykit.export.from_onnx import import_onnx
from deploykit.onnx_io import ort_session


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _run(*args) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def test_import_records_the_source_and_what_changed(tmp_path):
    import deploykit

    assert deploykit.import_onnx is import_onnx  # the Python entry point beside export_model
    src = _save(hand_built(), tmp_path / "legacy.onnx")
    art = import_onnx(src, tmp_path / "art", progress=False)
    m = Artifact.load(art.path).manifest  # hashes verified
    stage = m.stages[0]
    assert stage["stage"] == "import"
    assert stage["source"]["sha256"] == sha256_file(src)
    assert (stage["source"]["producer_name"], stage["source"]["ir_version"], stage["source"]["opset"]) == (
        "hand-built-test",
        3,
        9,
    )
    assert stage["changes"] == ["opset 9 -> 18 (onnx.version_converter)"]
    assert (m.model, m.family, m.precision, m.opset) == ("legacy", "imported", "fp32", 18)
    assert m.weights is None
    assert [(t.name, t.shape) for t in m.inputs] == [("data", ["N", 3, 32, 32])]
    assert [(t.name, t.shape) for t in m.outputs] == [("prob", ["N", 10])]
    assert m.batch.dynamic and (m.batch.min, m.batch.max) == (1, 32)
    assert m.data_config.input_size == (3, 32, 32) and m.data_config.num_classes == 10
    assert any("ImageNet's normalisation is assumed" in n for n in m.results["notes"])
    parity = m.results["parity"]
    assert parity["reference"] == "source ONNX file" and parity["fixed_seed"]["top1_agreement"] == 1.0
    stored = onnx.load(str(art.main_path))
    assert next(o.version for o in stored.opset_import if o.domain == "") == 18
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    ref = ort_session(src).run(None, {"data": x})[0]
    np.testing.assert_allclose(ort_session(art.main_path).run(None, {"data": x})[0], ref, rtol=1e-5, atol=1e-5)


def test_data_config_options_and_a_fixed_batch(tmp_path):
    model = hand_built()
    model.graph.input[0].type.tensor_type.shape.dim[0].Clear()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    model.graph.output[0].type.tensor_type.shape.dim[0].Clear()
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    src = _save(model, tmp_path / "fixed.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)))
    out = _run(
        "import", src, "-o", tmp_path / "art", "-q", "--name", "legacynet", "--family", "resnet",
        "--mean", "0.5", "--std", "0.25", "--labels", labels, "--interpolation", "bicubic", "--crop-pct", "1.0",
    )  # fmt: skip
    assert "legacynet (family resnet)" in out and "Changed: opset 9 -> 18" in out
    m = Artifact.load(tmp_path / "art").manifest
    cfg = m.data_config
    assert (cfg.mean, cfg.std, cfg.interpolation, cfg.crop_pct) == ((0.5,) * 3, (0.25,) * 3, "bicubic", 1.0)
    assert cfg.labels[3] == "class3"
    assert not m.batch.dynamic and m.batch.max == 4 and m.inputs[0].shape == [4, 3, 32, 32]
    assert "notes" not in m.results


def test_symbolic_image_size_is_fixed_by_input_size(tmp_path):
    model = hand_built()
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.Clear()
        dim.dim_param = "side"
    src = _save(model, tmp_path / "any.onnx")
    art = import_onnx(src, tmp_path / "art", overrides={"image_size": (32, 32)}, progress=False)
    assert art.manifest.inputs[0].shape == ["N", 3, 32, 32]
    assert any("fixed to 32x32" in c for c in art.manifest.stages[0]["changes"])


def test_name_comes_from_the_file_and_is_checked(tmp_path):
    from deploykit.errors import DeployKitError

    src = _save(hand_built(), tmp_path / "my model (v2).onnx")
    assert import_onnx(src, tmp_path / "a", progress=False).manifest.model == "my-model-v2"
    with pytest.raises(DeployKitError, match="model name '../x' must be"):
        import_onnx(src, tmp_path / "b", name="../x", progress=False)
    assert not (tmp_path / "b").exists()


def test_opset_in_range_is_stored_as_given(tmp_path):
    import onnx.version_converter

    src = _save(onnx.version_converter.convert_version(hand_built(), 18), tmp_path / "new.onnx")
    art = import_onnx(src, tmp_path / "art", progress=False)
    assert art.manifest.stages[0]["changes"] == [] and art.manifest.opset == 18


def test_external_data_inside_the_folder_is_imported(tmp_path):
    model = hand_built()
    folder = tmp_path / "src"
    folder.mkdir()
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True, location="m.weights", size_threshold=64)
    proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer)
    art = import_onnx(folder / "m.onnx", tmp_path / "art", progress=False)
    assert art.manifest.stages[0]["source"]["external_data"] == ["m.weights"]
    stored = onnx.load(str(art.main_path))
    w2 = next(t for t in stored.graph.initializer if t.name == "w2")
    assert numpy_helper.to_array(w2).shape == (8, 8, 3, 3)


def test_output_that_exists_is_refused_before_any_work(tmp_path):
    from deploykit.errors import DeployKitError

    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "notes.txt").write_text("mine")
    with pytest.raises(DeployKitError, match="already exists"):
        import_onnx(tmp_path / "missing.onnx", tmp_path / "art", progress=False)


def _foreign_tiny(path: Path) -> Path:
    """The quantize tests' small CNN, trained a few seconds on Fashion-MNIST, exported the legacy way."""
    import torch
    from quantize.conftest import train_tiny

    model = train_tiny()
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 28, 28),
        buf,
        dynamo=False,
        keep_initializers_as_inputs=True,
        opset_version=9,
        training=torch.onnx.TrainingMode.EVAL,
        do_constant_folding=False,
        input_names=["data"],
        output_names=["prob"],
        dynamic_axes={"data": {0: "N"}, "prob": {0: "N"}},
    )
    return _save(legacy_style(onnx.load_from_string(buf.getvalue())), path)


@pytest.mark.slow
def test_every_stage_takes_an_imported_artifact(tmp_path):
    from PIL import Image

    src = _foreign_tiny(tmp_path / "tiny.onnx")
    fp32, opt = tmp_path / "tiny", tmp_path / "tiny-opt"
    out = _run("import", src, "-o", fp32, "-q", "--mean", "0.5", "--std", "0.5", "--crop-pct", "1.0")
    assert "family 'imported' has no INT8 recipe: deploykit quantize will use the default recipe" in out
    out = _run("optimize", fp32, "-o", opt)
    assert "gate passed" in out
    om = Artifact.load(opt).manifest
    assert [s["stage"] for s in om.stages] == ["import", "optimize"]
    report = om.stages[-1]["report"]
    assert report["nodes_after"] < report["nodes_before"]
    proto = onnx.load(str(opt / "model.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"Sum", "Mul", "MatMul", "Constant", "Shape"} and [i.name for i in proto.graph.input] == ["data"]

    out = _run("validate", opt, "--data", "fashion-mnist:test[:500]")
    assert "FP32 reference" in out and "PASS" in out

    int8 = {}
    for profile in ("onnxruntime", "tensorrt"):
        int8[profile] = tmp_path / f"tiny-int8-{profile}"
        out = _run(
            "quantize", opt, "--profile", profile, "--calib", "fashion-mnist:train[:256]",
            "--val", "fashion-mnist:test[:500]", "-o", int8[profile], "--num-images", "256",
        )  # fmt: skip
        assert "recipe: the defaults (no INT8 recipe for tiny, family 'imported'" in out
        q = Artifact.load(int8[profile]).manifest
        assert q.precision == "int8" and q.results["accuracy"]["passed"]
        assert q.stages[-1]["params"]["recipe"] == "default"

    out = _run("compare", int8["onnxruntime"])
    assert "there is no PyTorch reference" in out and "PASS" in out
    out = _run("compare", fp32, "--json", tmp_path / "cmp.json")
    assert json.loads((tmp_path / "cmp.json").read_text())["reference"]["note"].startswith("tiny was imported")

    out = _run("bench", opt, "--batch", "1", "--iters", "10")
    from deploykit.machine import describe_machine

    machine = describe_machine(threads=False)  # the footer names the CPU generation and ISA
    if machine.get("cpu_generation") not in (None, "unknown"):
        assert f"[{machine['cpu_generation']}]" in out
    if machine.get("isa"):
        assert f"[{machine['isa']}]" in out

    img = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype("uint8")).save(img)
    out = _run("predict", int8["onnxruntime"], img)
    assert "class" in out

    out = _run("triton", int8["onnxruntime"], "--repo", tmp_path / "repo")
    assert (tmp_path / "repo" / "tiny" / "1" / "model.onnx").is_file()
    assert "max_batch_size: 32" in (tmp_path / "repo" / "tiny" / "config.pbtxt").read_text()


def test_build_takes_an_imported_artifact(tmp_path):
    """The CPU side of ``deploykit build`` (planning, the engine manifest) with a stand-in builder."""
    from hostile.fake_trt import fake_engine

    art = import_onnx(_save(hand_built(), tmp_path / "m.onnx"), tmp_path / "art", progress=False)
    engine = fake_engine(art.path, tmp_path / "engine")
    m = Artifact.load(engine.path).manifest
    assert (m.format, m.family, m.model) == ("tensorrt-engine", "imported", "m")
    assert [s["stage"] for s in m.stages] == ["import", "build"]


@pytest.mark.slow
def test_serve_takes_an_imported_artifact(tmp_path):
    pytest.importorskip("pytriton.triton", reason="PyTriton is in the serve extra: pip install 'deploykit[serve]'")
    httpclient = pytest.importorskip("tritonclient.http", reason="pip install 'deploykit[serve]'")
    from serving import serving

    src = _save(hand_built(), tmp_path / "legacy.onnx")
    art = import_onnx(src, tmp_path / "legacynet", progress=False)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with serving(art.path, "legacy", tmp_path) as s:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{s.http}", network_timeout=30)
        inp = httpclient.InferInput("data", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("legacy", [inp]).as_numpy("prob")
    np.testing.assert_allclose(got, ort_session(src).run(None, {"data": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_quantize_straight_after_import(tmp_path):
    src = _foreign_tiny(tmp_path / "tiny.onnx")
    _run("import", src, "-o", tmp_path / "tiny", "-q", "--mean", "0.5", "--std", "0.5", "--crop-pct", "1.0")
    _run(
        "quantize", tmp_path / "tiny", "--calib", "fashion-mnist:train[:256]", "--val", "fashion-mnist:test[:500]",
        "-o", tmp_path / "int8", "-q",
    )  # fmt: skip
    assert Artifact.load(tmp_path / "int8").manifest.results["accuracy"]["passed"]
    # The int64 batch-size subgraph of the legacy head gets no Q/DQ under either profile.
    _run(
        "quantize", tmp_path / "tiny", "--profile", "tensorrt", "--calib", "fashion-mnist:train[:256]",
        "--val", "fashion-mnist:test[:500]", "-o", tmp_path / "int8-trt", "-q", "--gate", "0.97",
    )  # fmt: skip
    assert Artifact.load(tmp_path / "int8-trt").manifest.results["accuracy"]["passed"]
