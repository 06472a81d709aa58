"""Bad files give one-line errors naming the file; unknown ops are left exactly as they were."""

import numpy as np
import onnx
import pytest

from deploykit.errors import DeployKitError
from deploykit.optimize import optimize_file, optimize_model

from .graphs import ops, parse

GOOD = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,8,4,4] x) => (float[1,4,4,4] a, float[1,4,4,4] b) {
  a = Conv(x, wa)
  b = Conv(x, wb)
}
"""


def _good(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(parse(GOOD, wa=(4, 8, 1, 1), wb=(4, 8, 1, 1)), path)
    return path


def _one_line_error(in_path, out_path, *words):
    with pytest.raises(DeployKitError) as info:
        optimize_file(in_path, out_path)
    msg = str(info.value)
    assert "\n" not in msg and str(in_path) in msg
    for w in words:
        assert w in msg
    assert not out_path.exists()


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is a text file, not a protobuf\n" * 20)
    _one_line_error(bad, tmp_path / "out.onnx", "not an ONNX file")


def test_truncated_protobuf(tmp_path):
    data = _good(tmp_path).read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_error(cut, tmp_path / "out.onnx", "truncated")


def test_missing_and_empty_files(tmp_path):
    _one_line_error(tmp_path / "nope.onnx", tmp_path / "out.onnx", "not found")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    _one_line_error(empty, tmp_path / "out.onnx", "empty")


def test_external_data_outside_its_directory(tmp_path):
    model = onnx.load(_good(tmp_path))
    (tmp_path / "secret.bin").write_bytes(np.zeros(64, np.float32).tobytes())
    sub = tmp_path / "model"
    sub.mkdir()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "128")):
        entry = w.external_data.add()
        entry.key, entry.value = k, v
    path = sub / "m.onnx"
    path.write_bytes(model.SerializeToString())
    _one_line_error(path, tmp_path / "out.onnx", "outside its directory", "../secret.bin")


def test_external_data_inside_its_directory_is_read(tmp_path):
    model = onnx.load(_good(tmp_path))
    path = tmp_path / "ext" / "m.onnx"
    path.parent.mkdir()
    onnx.save(
        model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0
    )
    result = optimize_file(path, tmp_path / "out.onnx", passes="all")
    assert result.modified and (tmp_path / "out.onnx").is_file()
    assert ops(onnx.load(tmp_path / "out.onnx")) == {"Conv": 1, "Split": 1}


def test_unknown_op_is_left_untouched():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "acme" : 1]>
    g (float[1,8,4,4] x) => (float[1,4,4,4] y, float[1,4,4,4] z) {
      n = acme.MysteryNorm<eps = 0.5>(x, s)
      r = acme.MysteryAct(n)
      i = Identity(r)
      y = Conv(i, wa)
      z = acme.Conv(i, wb)
    }
    """
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    for name, shape in (("s", (8,)), ("wa", (4, 8, 1, 1)), ("wb", (4, 8, 1, 1))):
        model.graph.initializer.append(
            onnx.numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        )
    result = optimize_model(model)
    nodes = {(n.domain, n.op_type): n for n in result.model.graph.node}
    # The Identity goes; the custom-domain nodes (even one named Conv) keep inputs and attributes.
    assert set(nodes) == {("acme", "MysteryNorm"), ("acme", "MysteryAct"), ("", "Conv"), ("acme", "Conv")}
    norm = nodes[("acme", "MysteryNorm")]
    assert [a.name for a in norm.attribute] == ["eps"] and norm.attribute[0].f == 0.5
    assert list(norm.input) == ["x", "s"]
    assert nodes[("acme", "Conv")].input[1] == "wb"
    assert {i.name for i in result.model.graph.initializer} == {"s", "wa", "wb"}


def test_unknown_pass_name_is_refused():
    with pytest.raises(DeployKitError, match="unknown optimisation pass 'fuse_everything'"):
        optimize_model(parse(GOOD, wa=(4, 8, 1, 1), wb=(4, 8, 1, 1)), ["cleanup", "fuse_everything"])
