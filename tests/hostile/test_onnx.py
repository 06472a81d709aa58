"""ONNX models and their external data from strangers: refused before anything reads outside the
model's directory or runs an op nobody here knows, by every command that loads one."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_models import CLASSES, SIZE, tiny_onnx

from .helpers import assert_untouched, invoke, refused, snapshot


def _external(model: onnx.ModelProto, location: str, length: int | None = None) -> onnx.ModelProto:
    """``model`` with initializer 'fw' moved to external data at ``location``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    t = next(t for t in m.graph.initializer if t.name == "fw")
    raw = numpy_helper.to_array(t).tobytes()
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length or len(raw)))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return m


def _fw_bytes(model: onnx.ModelProto) -> bytes:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "fw")).tobytes()


def case_truncated(d: Path, m: onnx.ModelProto) -> str:
    (d / "model.onnx").write_bytes(m.SerializeToString()[:150])
    return "truncated or corrupt ONNX protobuf"


def case_empty(d: Path, m: onnx.ModelProto) -> str:
    (d / "model.onnx").write_bytes(b"")
    return "not an ONNX model"


def case_dotdot(d: Path, m: onnx.ModelProto) -> str:
    (d.parent / "secret.bin").write_bytes(_fw_bytes(m))
    (d / "model.onnx").write_bytes(_external(m, "../secret.bin").SerializeToString())
    return "outside its directory"


def case_absolute(d: Path, m: onnx.ModelProto) -> str:
    (d.parent / "secret.bin").write_bytes(_fw_bytes(m))
    (d / "model.onnx").write_bytes(_external(m, str(d.parent / "secret.bin")).SerializeToString())
    return "outside its directory"


def case_symlink(d: Path, m: onnx.ModelProto) -> str:
    (d.parent / "secret.bin").write_bytes(_fw_bytes(m))
    os.symlink(d.parent / "secret.bin", d / "weights.bin")
    (d / "model.onnx").write_bytes(_external(m, "weights.bin").SerializeToString())
    return "outside"


def case_length(d: Path, m: onnx.ModelProto) -> str:
    (d / "weights.bin").write_bytes(_fw_bytes(m)[:8])
    (d / "model.onnx").write_bytes(_external(m, "weights.bin").SerializeToString())
    return "external data"


def case_cycle(d: Path, m: onnx.ModelProto) -> str:
    m.graph.node[1].input[0] = "g"  # Relu reads GlobalAveragePool's output, which reads Relu's
    (d / "model.onnx").write_bytes(m.SerializeToString())
    return "invalid ONNX model"


def case_domain(d: Path, m: onnx.ModelProto) -> str:
    m.graph.node[1].domain = "evil.ops"
    m.opset_import.append(helper.make_opsetid("evil.ops", 1))
    (d / "model.onnx").write_bytes(m.SerializeToString())
    return "unknown domain 'evil.ops'"


CASES = {
    f.__name__[5:]: f
    for f in (
        case_truncated,
        case_empty,
        case_dotdot,
        case_absolute,
        case_symlink,
        case_length,
        case_cycle,
        case_domain,
    )
}


def _hostile_artifact(tmp_path: Path, case: str, input_shape=None) -> tuple[Path, str]:
    """An artifact whose manifest hashes match its (hostile) files, as an attacker would ship it."""
    from deploykit.artifact import ArtifactWriter, BatchProfile, Manifest, TensorSpec
    from deploykit.data.config import DataConfig

    good = onnx.load(str(tiny_onnx(tmp_path / "good.onnx")))
    (tmp_path / "shipped").mkdir()
    with ArtifactWriter(tmp_path / "shipped" / "art") as w:
        needle = CASES[case](w.dir, good) if case in CASES else (onnx.save(good, str(w.dir / "model.onnx")) or "")
        manifest = Manifest(
            model="tiny",
            family="test",
            format="onnx",
            precision="fp32",
            main_file="model.onnx",
            data_config=DataConfig(input_size=(3, SIZE, SIZE), num_classes=CLASSES),
            inputs=[TensorSpec("input", "float32", input_shape or ["batch", 3, SIZE, SIZE])],
            outputs=[TensorSpec("logits", "float32", ["batch", CLASSES])],
            batch=BatchProfile(1, 1, 8, True),
            opset=17,
        )
        art = w.commit(manifest)
    return art.path, needle


@pytest.mark.parametrize("case", list(CASES))
def test_optimize_artifact_refuses(tmp_path, previous, case):
    art, needle = _hostile_artifact(tmp_path, case)
    out, before = previous
    line = refused(invoke("optimize", art, "-o", out, "--force"), needle)
    assert str(art) in line
    assert_untouched(out, before)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_bench_artifact_refuses(tmp_path, case):
    art, _ = _hostile_artifact(tmp_path, case)
    report = tmp_path / "bench.json"
    line = refused(invoke("bench", art, "--iters", "1", "--warmup", "0", "--json", report))
    assert str(art) in line
    assert not report.exists()


@pytest.mark.parametrize("case", list(CASES))
def test_optimize_file_refuses(tmp_path, case):
    d = tmp_path / "m"
    d.mkdir()
    needle = CASES[case](d, onnx.load(str(tiny_onnx(tmp_path / "good.onnx"))))
    out = tmp_path / "out.onnx"
    tiny_onnx(out, bias_shift=1.0)
    before = out.read_bytes()
    line = refused(invoke("optimize", d / "model.onnx", "-o", out, "--force"), needle)
    assert str(d / "model.onnx") in line
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.onnx", "m", "out.onnx"] + (
        ["secret.bin"] if (tmp_path / "secret.bin").exists() else []
    )


@pytest.mark.parametrize(
    "shape, needle",
    [
        (["batch", 3, 16, 16], "declared ['batch', 3, 8, 8] in the model but ['batch', 3, 16, 16] in the manifest"),
        (["batch", 3, 8], "declared ['batch', 3, 8, 8] in the model"),
    ],
)
def test_declared_input_shape_disagreeing_with_the_manifest(tmp_path, previous, shape, needle):
    art, _ = _hostile_artifact(tmp_path, "consistent", input_shape=shape)
    out, before = previous
    refused(invoke("optimize", art, "-o", out, "--force"), str(art / "model.onnx"), needle)
    assert_untouched(out, before)
    refused(invoke("bench", art, "--iters", "1", "--warmup", "0"), needle)
    refused(invoke("validate", art, "--data", "fashion-mnist:test[:8]", "-q"), needle)
    assert snapshot(art)["manifest.json"] == (art / "manifest.json").read_bytes()


def test_a_consistent_artifact_passes_the_same_checks(tmp_path):
    """The control: the builder above makes loadable artifacts when nothing is hostile."""
    from deploykit.artifact import Artifact

    art, _ = _hostile_artifact(tmp_path, "consistent")
    r = invoke("bench", art, "--iters", "1", "--warmup", "0")
    assert r.exit_code == 0, r.output
    assert Artifact.load(art).manifest.inputs[0].shape == ["batch", 3, SIZE, SIZE]
