"""No engine label may differ from what the strongly typed network holds: checked on CPU, without TensorRT."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import numpy_helper
from precision_models import MAKERS, precision_artifact, save

from deploykit.artifact import Artifact
from deploykit.backends.tensorrt.builder import BuiltEngine
from deploykit.backends.tensorrt.guard import RunningEnv
from deploykit.build import FP16_ONNX_NAME, build_engine_artifact, plan_build
from deploykit.build.precision_check import check_precision, network_types
from deploykit.errors import DeployKitError

BUILT_ON = RunningEnv("11.4.0", "NVIDIA L4", "8.9")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "best"])
def test_each_tiny_model_is_what_its_label_says(tmp_path, precision):
    path = save(MAKERS[precision](tmp_path / "m.onnx"), tmp_path / "m.onnx")
    found = check_precision(path, precision)
    assert found.precision == precision
    counts = found.to_dict()["compute_layers"]
    assert sum(counts.values()) == 2  # the tiny graph's Conv and Gemm
    expected = {"fp32": {"float32": 2}, "fp16": {"float16": 2}, "int8": {"int8": 2}, "best": {"int8": 2}}
    assert counts == expected[precision]
    scales = found.to_dict()["qdq_scale_dtypes"]
    assert set(scales) == {"int8": {"float32"}, "best": {"float16"}}.get(precision, set())


@pytest.mark.parametrize(
    "graph, label, words",
    [
        ("fp16", "fp32", "--precision fp32 needs FP32 layers, and under TensorRT's strong typing this network "
         "computes as fp16 (2 Conv/Gemm/MatMul layers: 2 float16)"),
        ("fp32", "fp16", "computes as fp32 (2 Conv/Gemm/MatMul layers: 2 float32)"),
        ("fp32", "int8", "--precision int8 needs INT8 Q/DQ with float32 outside layers"),
        ("int8", "best", "computes as int8 (2 Conv/Gemm/MatMul layers: 2 INT8 Q/DQ; Q/DQ scales float32)"),
        ("best", "int8", "computes as best"),
        ("int8", "fp32", "computes as int8"),
    ],
)  # fmt: skip
def test_each_mismatch_is_refused_in_one_line(tmp_path, graph, label, words):
    path = save(MAKERS[graph](tmp_path / "m.onnx"), tmp_path / "m.onnx")
    with pytest.raises(DeployKitError) as e:
        check_precision(path, label, fix="do this")
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and msg.endswith("; do this")
    assert words in msg


def test_one_fp32_layer_makes_fp16_mixed(tmp_path):
    from deploykit.export.fp16 import convert_to_fp16

    half = convert_to_fp16(MAKERS["fp32"](tmp_path / "m.onnx"), op_block_list=["Gemm"])
    found = network_types(half)
    assert found.precision == "mixed" and dict(found.counts) == {"float16": 1, "float32": 1}


def test_int8_with_an_fp32_fallback_layer_stays_int8_and_is_not_best(tmp_path):
    model = MAKERS["int8"](tmp_path / "m.onnx")
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    gemm.input[1] = "fw"  # the FP32 weight itself: this layer runs outside any Q/DQ pair
    gemm.input[0] = "f"
    assert network_types(model).precision == "int8"
    assert dict(network_types(model).counts) == {"int8": 1, "float32": 1}


def test_best_allows_float32_only_where_the_quantiser_kept_it(tmp_path):
    model = MAKERS["best"](tmp_path / "m.onnx")
    g = model.graph
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    # this layer leaves float16: its activation is Cast to float32 and its weight and bias are float32
    for i, name in enumerate(gemm.input):
        init = next((t for t in g.initializer if t.name == name), None)
        if i == 0:
            g.node.insert(list(g.node).index(gemm), onnx.helper.make_node("Cast", [name], ["a32"], to=1))
            gemm.input[0] = "a32"
        elif init is not None:
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(init).astype("float32"), f"{name}32"))
            gemm.input[i] = f"{name}32"
        else:  # a weight quantised in the graph (Q -> DQ of the float weight): the float weight itself
            dq = next(n for n in g.node if name in n.output)
            q = next(n for n in g.node if dq.input[0] in n.output)
            w = next(t for t in g.initializer if t.name == q.input[0])
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(w).astype("float32"), "w32"))
            gemm.input[i] = "w32"
    gemm.output[0], out = "y32", gemm.output[0]
    g.node.insert(list(g.node).index(gemm) + 1, onnx.helper.make_node("Cast", ["y32"], [out], to=10))
    path = save(model, tmp_path / "m.onnx")
    found = network_types(model)
    assert found.fp32_layers == [gemm.name] and found.precision == "best"
    with pytest.raises(DeployKitError, match="take float32 that the quantiser did not keep for range"):
        check_precision(path, "best")
    assert check_precision(path, "best", allowed_fp32=[gemm.name]).precision == "best"
    with pytest.raises(DeployKitError, match="computes as best"):
        check_precision(path, "int8")


def test_unreadable_onnx_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(DeployKitError, match=r"bad.onnx: not a readable ONNX model"):
        check_precision(bad, "fp32")


# ------------------------------------------------------------------ the build stage's own checks


def test_fp32_label_on_an_fp16_artifact_is_refused(tmp_path):
    art = precision_artifact(tmp_path / "fp16", "fp16")
    with pytest.raises(DeployKitError, match="is a fp16 artifact and a strongly typed engine computes in the"):
        plan_build(art.path, precision="fp32")
    assert plan_build(art.path, precision="fp16")[1].precision == "fp16"


def test_an_fp16_manifest_over_an_fp32_graph_is_refused(tmp_path):
    art = precision_artifact(tmp_path / "liar", "fp32", manifest_precision="fp16")
    with pytest.raises(DeployKitError) as e:
        plan_build(art.path, precision="fp16")
    assert "model.onnx: --precision fp16 needs FP16 layers" in str(e.value)
    assert str(e.value).endswith("re-export the artifact with deploykit export")


def test_int8_manifest_without_qdq_is_refused(tmp_path):
    art = precision_artifact(tmp_path / "noqdq", "fp32", manifest_precision="int8", profile="tensorrt")
    with pytest.raises(DeployKitError, match="--precision int8 needs INT8 Q/DQ with float32 outside layers"):
        plan_build(art.path, precision="int8")


def test_best_needs_the_high_precision_fp16_artifact(tmp_path):
    art = precision_artifact(tmp_path / "int8", "int8")
    with pytest.raises(DeployKitError) as e:
        plan_build(art.path, precision="best")
    msg = str(e.value)
    assert "\n" not in msg and "fp32 there" in msg
    assert msg.endswith("deploykit quantize PARENT --profile tensorrt --high-precision fp16")
    fp32 = precision_artifact(tmp_path / "fp32", "fp32")
    with pytest.raises(DeployKitError, match="--high-precision fp16$"):
        plan_build(fp32.path, precision="best")
    best = precision_artifact(tmp_path / "best", "best")
    assert plan_build(best.path, precision="best")[1].precision == "best"
    with pytest.raises(DeployKitError, match="FP16 outside the Q/DQ pairs; build it with --precision best"):
        plan_build(best.path, precision="int8")
    with pytest.raises(DeployKitError, match="build it with --precision best$"):
        plan_build(best.path, precision="fp16")
    # a manifest that claims fp16 outside over a float32-scale graph: the graph decides
    liar = precision_artifact(tmp_path / "liar", "int8", high_precision_dtype="fp16")
    with pytest.raises(DeployKitError, match="--precision best needs INT8 Q/DQ with float16 outside"):
        plan_build(liar.path, precision="best")


class RecordingSerializer:
    """Stands in for TensorRT's builder: records what it was given, returns fixed bytes."""

    def __init__(self):
        self.calls = []

    def __call__(self, onnx_path, options, *, timing_cache=None, log_file=None, progress=None):
        self.calls.append((onnx_path, options))
        return BuiltEngine(plan=b"plan", timing_cache=None, seconds=0.5, inputs={"input": [[1, 3, 8, 8]] * 3})


def test_fp16_from_an_fp32_artifact_converts_first_and_records_it(tmp_path):
    art = precision_artifact(tmp_path / "fp32", "fp32")
    serialize = RecordingSerializer()
    result = build_engine_artifact(art.path, precision="fp16", running=BUILT_ON, serialize=serialize)
    ((source, options),) = serialize.calls
    assert source.name == FP16_ONNX_NAME and options.precision == "fp16"  # built from the converted graph...
    assert source.parent.name.startswith(".fp32-trt-fp16.tmp")  # ...inside the engine's work dir
    assert check_precision(result.path / FP16_ONNX_NAME, "fp16").precision == "fp16"
    loaded = Artifact.load(result.path)  # the converted ONNX is hashed with the rest
    assert sorted(p.name for p in result.path.iterdir()) == ["manifest.json", "model-fp16.onnx", "model.plan"]
    rec = json.loads(loaded.manifest_path.read_text())["stages"][-1]["engine"]
    assert rec["precision"] == "fp16" and rec["tf32"] is False and rec["onnx"] == FP16_ONNX_NAME
    assert rec["network"]["compute_layers"] == {"float16": 2}
    assert rec["fp16_conversion"]["from"] == "model.onnx"
    assert rec["fp16_conversion"]["from_sha256"] == art.manifest.files["model.onnx"]["sha256"]
    assert loaded.manifest.precision == "fp16"


@pytest.mark.parametrize("graph, label", [("fp32", "fp32"), ("int8", "int8"), ("best", "best"), ("fp16", "fp16")])
def test_engine_manifest_records_the_real_precision(tmp_path, graph, label):
    art = precision_artifact(tmp_path / graph, graph)
    serialize = RecordingSerializer()
    result = build_engine_artifact(art.path, precision=label, running=BUILT_ON, serialize=serialize, tf32=True)
    assert serialize.calls[0][0] == art.main_path
    rec = result.record
    assert rec["precision"] == label and rec["tf32"] is True and rec["network"]["precision"] == label
    assert rec["flags"]["strongly_typed"] is True and rec["fp16_conversion"] is None
    assert Artifact.load(result.path).manifest.precision == {"best": "int8"}.get(label, label)
    assert "model.onnx" not in {p.name for p in result.path.iterdir()}


def test_hardware_compat_this_gpu_cannot_build_is_refused_before_building(tmp_path):
    art = precision_artifact(tmp_path / "fp32", "fp32")
    serialize = RecordingSerializer()
    for env, level, words in [
        (RunningEnv("11.4.0", "Tesla T4", "7.5"), "ampere+", "needs a GPU of sm 8.0 or newer to build on"),
        (RunningEnv("11.4.0", "Tesla V100", "7.0"), "same-cc", "needs a GPU of sm 7.5 or newer to build on"),
        (RunningEnv("10.3.0", "Orin", "8.7", integrated=True), "ampere+", "not supported by TensorRT on integrated"),
    ]:
        with pytest.raises(DeployKitError, match=words):
            build_engine_artifact(art.path, "fp32", hardware_compat=level, running=env, serialize=serialize)
    assert serialize.calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["fp32"]


def test_a_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    import deploykit.export.fp16 as fp16

    art = precision_artifact(tmp_path / "fp32", "fp32")

    def broken(model, keep_io_types=True):
        raise DeployKitError("converter broke")

    monkeypatch.setattr(fp16, "convert_to_fp16", broken)
    with pytest.raises(DeployKitError, match="converter broke"):
        build_engine_artifact(art.path, "fp16", running=BUILT_ON, serialize=RecordingSerializer())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32"]
    assert onnx.load(str(art.main_path)).graph.initializer[0].data_type == onnx.TensorProto.FLOAT


def test_cli_refuses_a_mismatch_in_one_line_and_documents_the_new_options(tmp_path):
    from click.testing import CliRunner

    from deploykit.cli import cli

    art = precision_artifact(tmp_path / "fp16", "fp16")
    r = CliRunner().invoke(cli, ["build", str(art.path), "--precision", "fp32"])
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is a fp16 artifact and a strongly typed engine computes" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp16"]
    r = CliRunner().invoke(cli, ["build", "--help"])
    assert "--tf32" in r.output and "none|ampere+|same-cc" in r.output
