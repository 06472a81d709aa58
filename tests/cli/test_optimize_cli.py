"""``deploykit optimize``: files and artifacts in, optimised and parity-proven outputs out."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

from deploykit.artifact import Artifact, ArtifactWriter, Manifest, TensorSpec
from deploykit.cli import cli
from deploykit.data.config import DataConfig

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,3,8,8] input) => (float[N,5] logits) {
  c = Conv(input, w)
  p = AveragePool<kernel_shape = [2, 2], strides = [2, 2]>(c)
  i = Identity(p)
  g = GlobalAveragePool(i)
  f = Flatten(g)
  logits = Gemm<transB = 1>(f, fw, fb)
}
"""


def _model() -> onnx.ModelProto:
    model = onnx.parser.parse_model(TEXT)
    rng = np.random.default_rng(0)
    for name, shape in (("w", (6, 3, 1, 1)), ("fw", (5, 6)), ("fb", (5,))):
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        )
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(_model(), path)
    return path


def _artifact(tmp_path, precision: str = "fp32"):
    with ArtifactWriter(tmp_path / "art") as w:
        onnx.save(_model(), w.dir / "model.onnx")
        (w.dir / "labels.txt").write_text("a\nb\nc\nd\ne\n")
        manifest = Manifest(
            model="tiny",
            family="test",
            format="onnx",
            precision=precision,
            main_file="model.onnx",
            data_config=DataConfig(input_size=(3, 8, 8), num_classes=5),
            inputs=[TensorSpec("input", "float32", ["batch", 3, 8, 8])],
            outputs=[TensorSpec("logits", "float32", ["batch", 5])],
        )
        manifest.results["accuracy"] = {"top1": 0.5}
        return w.commit(manifest)


def test_optimize_file_prints_the_pass_table(onnx_file, tmp_path):
    res = CliRunner().invoke(
        cli,
        ["optimize", str(onnx_file), "--details", "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md")],
    )
    assert res.exit_code == 0, res.output
    out = onnx_file.with_name("tiny-opt.onnx")
    assert out.is_file()
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ops == ["AveragePool", "Conv", "GlobalAveragePool", "Flatten", "Gemm"]
    assert "pool_before_conv" in res.output and "moved before" in res.output
    assert "6 -> 5 nodes" in res.output and "gate passed" in res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["nodes_before"] == 6 and doc["nodes_after"] == 5 and doc["parity"]["passed"]
    assert "| pool_before_conv | 5 | 5 | 1 |" in (tmp_path / "r.md").read_text()  # per pass, after the ones before


def test_the_old_report_flag_still_works_and_says_it_is_deprecated(onnx_file):
    res = CliRunner().invoke(cli, ["optimize", str(onnx_file), "--report"])
    assert res.exit_code == 0, res.output
    assert "--report (the flag) is deprecated; use --details" in res.output and "moved before" in res.output


def test_optimize_file_with_explicit_passes_and_output(onnx_file, tmp_path):
    out = tmp_path / "o" / "x.onnx"
    res = CliRunner().invoke(cli, ["optimize", str(onnx_file), "-o", str(out), "--passes", "cleanup"])
    assert res.exit_code == 0, res.output
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ops == ["Conv", "AveragePool", "GlobalAveragePool", "Flatten", "Gemm"]


def test_existing_output_needs_force(onnx_file):
    runner = CliRunner()
    assert runner.invoke(cli, ["optimize", str(onnx_file)]).exit_code == 0
    res = runner.invoke(cli, ["optimize", str(onnx_file)])
    assert res.exit_code == 1 and "already exists" in res.output
    assert runner.invoke(cli, ["optimize", str(onnx_file), "--force"]).exit_code == 0


def test_unknown_pass_is_a_usage_error(onnx_file):
    res = CliRunner().invoke(cli, ["optimize", str(onnx_file), "--passes", "cleanup,magic"])
    assert res.exit_code == 2 and "unknown optimisation pass 'magic'" in res.output


def test_not_onnx_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xff garbage" * 10)
    res = CliRunner().invoke(cli, ["optimize", str(bad)])
    assert res.exit_code == 1
    (line,) = [ln for ln in res.output.splitlines() if ln.strip()]
    assert line.startswith("Error: ") and str(bad) in line
    assert not (tmp_path / "bad-opt.onnx").exists()


def test_artifact_in_artifact_out(tmp_path):
    parent = _artifact(tmp_path)
    res = CliRunner().invoke(cli, ["optimize", str(parent.path)])
    assert res.exit_code == 0, res.output
    child = Artifact.load(tmp_path / "art-opt")  # re-hashes every file
    m = child.manifest
    assert m.parent["manifest_sha256"] == parent.manifest_sha256()
    stage = m.stages[-1]
    assert stage["stage"] == "optimize" and stage["params"]["passes"][0] == "cleanup"
    assert stage["report"]["nodes_before"] == 6 and stage["report"]["nodes_after"] == 5
    assert m.results["parity"]["passed"] is True and m.results["parity"]["max_rel"] <= 1e-5
    assert "accuracy" not in m.results  # proofs about the parent do not carry over
    assert (child.path / "labels.txt").read_text().startswith("a\n")
    json.dumps(m.to_dict())


def test_non_fp32_artifact_is_refused(tmp_path):
    parent = _artifact(tmp_path, precision="int8")
    res = CliRunner().invoke(cli, ["optimize", str(parent.path)])
    assert res.exit_code == 1 and "precision is int8" in res.output
    assert not (tmp_path / "art-opt").exists()


def test_list_passes():
    res = CliRunner().invoke(cli, ["optimize", "--list-passes"])
    assert res.exit_code == 0
    assert "fuse_parallel_conv" in res.output and "* fold_batchnorm" in res.output


def test_custom_op_model_needs_no_verify(tmp_path):
    text = """
    <ir_version: 8, opset_import: ["" : 17, "acme" : 1]>
    g (float[1,4] x) => (float[1,4] y) { i = Identity(x)  y = acme.Magic(i) }
    """
    path = tmp_path / "custom.onnx"
    onnx.save(onnx.parser.parse_model(text), path)
    runner = CliRunner()
    res = runner.invoke(cli, ["optimize", str(path)])
    assert res.exit_code == 1 and "uses op Magic from unknown domain 'acme'" in res.output
    assert not (tmp_path / "custom-opt.onnx").exists()
    res = runner.invoke(cli, ["optimize", str(path), "--no-verify"])
    assert res.exit_code == 0 and "parity NOT checked" in res.output
    nodes = onnx.load(tmp_path / "custom-opt.onnx").graph.node
    assert [(n.domain, n.op_type) for n in nodes] == [("acme", "Magic")]
