"""``deploykit import`` on files that are not importable image classifiers: each is refused in one
line naming the file and the problem, exits non-zero, and leaves nothing at the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from .helpers import assert_untouched, invoke, refused, snapshot


def _classifier(
    op: onnx.NodeProto | None = None,
    inputs: int = 1,
    out_shape: tuple = ("N", 5),
    opset: int = 9,
    domains: tuple[tuple[str, int], ...] = (),
) -> onnx.ModelProto:
    """Conv -> (op) -> GAP -> Flatten -> Gemm on a 3x8x8 image, with knobs for each hostile case."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fw"),
        numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fb"),
    ]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1])]
    last = "c"
    if op is not None:
        nodes.append(op)
        last = op.output[0]
    if inputs == 2:
        nodes.append(helper.make_node("Add", [last, "image2_feat"], ["both"]))
        nodes.insert(0, helper.make_node("Conv", ["image2", "w"], ["image2_feat"], pads=[1, 1, 1, 1]))
        last = "both"
    if len(out_shape) == 2:
        nodes += [
            helper.make_node("GlobalAveragePool", [last], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
        ]
    else:  # a segmentation-style output: the feature map itself
        nodes.append(helper.make_node("Relu", [last], ["logits"]))
    graph_inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])]
    if inputs == 2:
        graph_inputs.append(helper.make_tensor_value_info("image2", TensorProto.FLOAT, ["N", 3, 8, 8]))
    graph = helper.make_graph(
        nodes,
        "g",
        graph_inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(out_shape))],
        inits,
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="hostile-test")
    model.ir_version = 7
    return model


def case_custom_domain(d: Path) -> tuple[Path, tuple[str, ...]]:
    op = helper.make_node("FancyNorm", ["c"], ["n"], domain="com.example.vision")
    p = d / "custom.onnx"
    onnx.save(_classifier(op, domains=(("com.example.vision", 1),)), p)
    return p, ("custom.onnx", "FancyNorm", "com.example.vision")


def case_two_image_inputs(d: Path) -> tuple[Path, tuple[str, ...]]:
    p = d / "two.onnx"
    onnx.save(_classifier(inputs=2), p)
    return p, ("two.onnx", "2 inputs", "image, image2")


def case_output_not_n_by_classes(d: Path) -> tuple[Path, tuple[str, ...]]:
    p = d / "segment.onnx"
    onnx.save(_classifier(out_shape=("N", 4, 8, 8)), p)
    return p, ("segment.onnx", "output 'logits'", "[N, classes]")


def case_unreachable_opset(d: Path) -> tuple[Path, tuple[str, ...]]:
    p = d / "future.onnx"
    model = _classifier(opset=30)
    model.ir_version = 11
    onnx.save(model, p)
    return p, ("future.onnx", "opset 30 cannot be converted to opset 18")


def case_not_onnx(d: Path) -> tuple[Path, tuple[str, ...]]:
    p = d / "weights.onnx"
    p.write_bytes(b"PK\x03\x04 this is a zip archive, not a protobuf" * 10)
    return p, ("weights.onnx", "not an ONNX file")


def case_symbolic_size_without_input_size(d: Path) -> tuple[Path, tuple[str, ...]]:
    model = _classifier()
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.Clear()
        dim.dim_param = "side"
    p = d / "anysize.onnx"
    onnx.save(model, p)
    return p, ("anysize.onnx", "symbolic height/width", "--input-size")


def case_labels_count_mismatch(d: Path) -> tuple[Path, tuple[str, ...]]:
    p = d / "labelled.onnx"
    onnx.save(_classifier(), p)
    (d / "labels.txt").write_text("a\nb\nc\n")
    return p, ("labelled.onnx", "3 labels", "5 classes")


CASES = [
    case_custom_domain,
    case_two_image_inputs,
    case_output_not_n_by_classes,
    case_unreachable_opset,
    case_not_onnx,
    case_symbolic_size_without_input_size,
    case_labels_count_mismatch,
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_import_refuses_in_one_line(tmp_path, case):
    src, needles = case(tmp_path)
    out = tmp_path / "artifact"
    extra = ["--labels", str(tmp_path / "labels.txt")] if (tmp_path / "labels.txt").exists() else []
    result = invoke("import", src, "-o", out, "-q", *extra)
    refused(result, *needles)
    assert_untouched(out, {})


def test_refusal_removes_the_folders_it_made_for_the_output(tmp_path):
    src, needles = case_output_not_n_by_classes(tmp_path)
    refused(invoke("import", src, "-o", tmp_path / "new" / "deeper" / "artifact", "-q"), *needles)
    assert not (tmp_path / "new").exists()


def test_refusal_keeps_a_previous_artifact(tmp_path):
    good = tmp_path / "good.onnx"
    onnx.save(_classifier(), good)
    out = tmp_path / "artifact"
    assert invoke("import", good, "-o", out, "-q").exit_code == 0
    before = snapshot(out)
    src, needles = case_two_image_inputs(tmp_path)
    refused(invoke("import", src, "-o", out, "-q", "--force"), *needles)
    assert_untouched(out, before)


def test_external_data_outside_the_folder_is_refused(tmp_path):
    model = _classifier()
    t = next(t for t in model.graph.initializer if t.name == "fw")
    raw = numpy_helper.to_array(t).tobytes()
    (tmp_path / "secret.bin").write_bytes(raw)
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(len(raw)))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "m").mkdir()
    src = tmp_path / "m" / "model.onnx"
    onnx.save(model, src)
    out = tmp_path / "artifact"
    refused(invoke("import", src, "-o", out, "-q"), "model.onnx", "outside its directory")
    assert_untouched(out, {})
