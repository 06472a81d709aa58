"""ONNX Runtime runner: runs named arrays, checks feeds, refuses missing providers with the extra's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tiny_models import CLASSES, SIZE, tiny_onnx

from deploykit.backends.base import RunnerError
from deploykit.backends.onnxruntime import OnnxRuntimeRunner, providers_for_device
from deploykit.errors import DeployKitError, MissingExtraError


@pytest.fixture()
def onnx_path(tmp_path):
    return tiny_onnx(tmp_path / "tiny.onnx")


def test_infer_matches_numpy_reference(onnx_path):
    x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    with OnnxRuntimeRunner(onnx_path, threads=1) as r:
        assert r.input_names == ["input"] and r.output_names == ["logits"]
        dtype, shape = r.input_metadata()["input"]
        assert dtype == np.float32 and shape == ("batch", 3, SIZE, SIZE)
        out = r.infer({"input": x})["logits"]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(out, sess.run(None, {"input": x})[0], rtol=1e-6, atol=1e-6)
    assert out.shape == (3, CLASSES)
    assert not r.is_active


def test_float64_feed_is_cast_and_int_feed_refused(onnx_path):
    with OnnxRuntimeRunner(onnx_path) as r:
        out = r.infer({"input": np.zeros((1, 3, SIZE, SIZE), np.float64)})
        assert out["logits"].dtype == np.float32
        with pytest.raises(RunnerError, match="int64, expected float32"):
            r.infer({"input": np.zeros((1, 3, SIZE, SIZE), np.int64)})


def test_bad_feeds_name_the_problem(onnx_path):
    r = OnnxRuntimeRunner(onnx_path)
    with pytest.raises(RunnerError, match="activate"):
        r.infer({"input": np.zeros((1, 3, SIZE, SIZE), np.float32)})
    with r:
        with pytest.raises(RunnerError, match="missing input\\(s\\) input.*unknown input\\(s\\) x"):
            r.infer({"x": np.zeros((1, 3, SIZE, SIZE), np.float32)})
        with pytest.raises(RunnerError, match="dim 2 must be 8"):
            r.infer({"input": np.zeros((1, 3, 9, SIZE), np.float32)})


def test_describe_records_threads_and_providers(onnx_path):
    with OnnxRuntimeRunner(onnx_path, threads=2, graph_optimization_level="basic") as r:
        d = r.describe()
    assert d["backend"] == "onnxruntime" and d["device"] == "cpu"
    assert d["threads"] == 2 and d["graph_optimization_level"] == "basic"
    assert d["active_providers"] == ["CPUExecutionProvider"]
    assert d["spin"] is True


def test_spinning_can_be_turned_off_for_interleaved_sessions(onnx_path):
    with OnnxRuntimeRunner(onnx_path, threads=2, spin=False) as r:
        assert r.describe()["spin"] is False
        assert r.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_missing_file_and_garbage_file(tmp_path):
    with pytest.raises(DeployKitError, match="nope.onnx: ONNX file not found"):
        OnnxRuntimeRunner(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf")
    r = OnnxRuntimeRunner(bad)
    with pytest.raises(DeployKitError, match="bad.onnx: ONNX Runtime cannot load it"):
        r.activate()
    assert not r.is_active


def test_bad_options(onnx_path):
    with pytest.raises(DeployKitError, match="graph optimisation level 'max'"):
        OnnxRuntimeRunner(onnx_path, graph_optimization_level="max")
    with pytest.raises(DeployKitError, match="threads must be at least 1"):
        OnnxRuntimeRunner(onnx_path, threads=0)
    with pytest.raises(DeployKitError, match="'FooExecutionProvider' is not available"):
        OnnxRuntimeRunner(onnx_path, providers=("FooExecutionProvider",))


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime-gpu is installed")
def test_cuda_provider_without_onnxruntime_gpu_names_the_extra(onnx_path):
    with pytest.raises(MissingExtraError, match=r"onnxruntime-gpu.*pip install 'deploykit\[gpu\]'"):
        OnnxRuntimeRunner(onnx_path, providers=providers_for_device("cuda"))


def test_device_names():
    assert providers_for_device("cpu") == ("CPUExecutionProvider",)
    assert providers_for_device("cuda:0")[0] == "CUDAExecutionProvider"
    with pytest.raises(DeployKitError, match="device 'tpu'"):
        providers_for_device("tpu")


@pytest.mark.gpu
def test_cuda_provider_runs_when_available(onnx_path):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    x = np.ones((2, 3, SIZE, SIZE), np.float32)
    with (
        OnnxRuntimeRunner(onnx_path) as cpu,
        OnnxRuntimeRunner(onnx_path, providers=providers_for_device("cuda")) as gpu,
    ):
        np.testing.assert_allclose(gpu.infer({"input": x})["logits"], cpu.infer({"input": x})["logits"], atol=1e-4)


# -- GPU providers configured like a deployment (checked on CPU: the options ORT is handed) --------


class _RecordingSession:
    """Stands in for ort.InferenceSession: records what deploykit hands ONNX Runtime."""

    made: list[dict] = []

    def __init__(self, src, sess_options=None, providers=None, provider_options=None):
        self.providers = list(providers)
        type(self).made.append({"providers": self.providers, "provider_options": provider_options})

    def get_providers(self):
        return self.providers

    def get_session_options(self):
        return ort.SessionOptions()


@pytest.fixture()
def gpu_ort(monkeypatch):
    """onnxruntime as if it were onnxruntime-gpu with CUDA and TensorRT EPs; sessions are recorded."""
    _RecordingSession.made = []
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: everything)
    monkeypatch.setattr(ort, "InferenceSession", _RecordingSession)
    return _RecordingSession.made


def test_gpu_providers_get_device_id_caches_and_profile(gpu_ort, tmp_path):
    from tiny_models import tiny_artifact

    from deploykit.backends import make_runner

    art = tiny_artifact(tmp_path / "tiny")  # batch profile 1..8, opt 1
    with make_runner(art.path, backend="onnxruntime-trt", device="cuda:1") as r:
        assert r.device == "cuda:1"
    made = gpu_ort[-1]
    assert made["providers"] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_opts, cuda_opts, cpu_opts = made["provider_options"]
    cache = str(tmp_path / "tiny.ort-trt-cache" / f"ort-{ort.__version__}")
    assert trt_opts == {
        "device_id": 1,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
        "trt_profile_min_shapes": f"input:1x3x{SIZE}x{SIZE}",
        "trt_profile_opt_shapes": f"input:1x3x{SIZE}x{SIZE}",
        "trt_profile_max_shapes": f"input:8x3x{SIZE}x{SIZE}",
    }
    assert cuda_opts == {"device_id": 1} and cpu_opts == {}
    assert Path(cache).is_dir()
    assert not any("fp16" in k or "int8" in k for k in trt_opts)  # precision is the artifact's
    art.verify()  # the cache lives beside the artifact, never inside it

    with make_runner(art.path, backend="onnxruntime-cuda", device="cuda:2"):
        pass
    assert gpu_ort[-1]["provider_options"] == [{"device_id": 2}, {}]


def test_bare_onnx_file_gets_a_cache_beside_it_and_no_profile(gpu_ort, onnx_path):
    with OnnxRuntimeRunner(onnx_path, providers=providers_for_device("tensorrt")) as r:
        assert r.device == "cuda:0"
    trt_opts = gpu_ort[-1]["provider_options"][0]
    want = onnx_path.with_name("tiny.onnx.ort-trt-cache") / f"ort-{ort.__version__}"
    assert trt_opts["trt_engine_cache_path"] == str(want)
    assert trt_opts["device_id"] == 0
    assert not any(k.startswith("trt_profile") for k in trt_opts)


def test_trt_ep_that_cannot_start_names_tensorrt_10(gpu_ort, monkeypatch, onnx_path):
    # what onnxruntime-gpu does without libnvinfer.so.10: the session silently drops the TensorRT EP
    monkeypatch.setattr(
        _RecordingSession, "get_providers", lambda self: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    runner = OnnxRuntimeRunner(onnx_path, providers=providers_for_device("tensorrt"))
    want = r"TensorrtExecutionProvider could not start .*needs TensorRT 10: pip install 'tensorrt-cu13>=10.13.2,<11'$"
    with pytest.raises(DeployKitError, match=want):
        runner.activate()


def test_explicit_provider_options_are_kept(gpu_ort, onnx_path):
    mine = [{"device_id": 3, "trt_max_workspace_size": 1 << 30}, {"device_id": 3}, {}]
    with OnnxRuntimeRunner(onnx_path, providers=providers_for_device("tensorrt"), provider_options=mine):
        pass
    assert gpu_ort[-1]["provider_options"] == mine


def test_cpu_sessions_get_no_provider_options(gpu_ort, onnx_path):
    with OnnxRuntimeRunner(onnx_path):
        pass
    assert gpu_ort[-1]["provider_options"] is None


def test_no_onnxruntime_names_both_extras(monkeypatch, onnx_path):
    import builtins

    from deploykit.onnx_io import ort_session

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(MissingExtraError) as info:
        ort_session(onnx_path)
    assert str(info.value) == (
        "Running an ONNX model needs ONNX Runtime, which is not installed; install it with: "
        "pip install 'deploykit[cpu]' (or 'deploykit[gpu]' for onnxruntime-gpu on an NVIDIA GPU, never both)"
    )
    assert info.value.extra == "cpu"


def _fp16_scale_concat():
    """DQ -> Concat -> Q with float16 scales: ORT fuses it into a QLinearConcat, which takes float32 scales only."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16)], []

    def qdq(x: str) -> str:
        inits.extend(
            [
                numpy_helper.from_array(np.array(0.05, np.float16), f"{x}_s"),
                numpy_helper.from_array(np.array(0, np.int8), f"{x}_z"),
            ]
        )
        nodes.append(helper.make_node("QuantizeLinear", [x, f"{x}_s", f"{x}_z"], [f"{x}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{x}_q", f"{x}_s", f"{x}_z"], [f"{x}_dq"]))
        return f"{x}_dq"

    nodes += [helper.make_node("Relu", ["xh"], ["a"]), helper.make_node("Neg", ["xh"], ["n"])]
    nodes.append(helper.make_node("Relu", ["n"], ["b"]))
    nodes.append(helper.make_node("Concat", [qdq("a"), qdq("b")], ["c"], axis=1))
    nodes.append(helper.make_node("Cast", [qdq("c")], ["y"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "fp16_scales",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def test_fp16_scale_qdq_graph_runs_unfused():
    """The TensorRT `best` artifact (FP16 outside the Q/DQ pairs) loads in every deploykit session."""
    import onnxruntime as ort

    from deploykit.onnx_io import ort_session

    model = _fp16_scale_concat()
    with pytest.raises(Exception, match="QLinearConcat"):  # what ORT does with its default fusions
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    session = ort_session(model)
    assert session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(1, 2, 4, 4)
    want = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=1)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, atol=0.05)
