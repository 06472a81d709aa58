"""The TensorRT runner against NVIDIA's real bindings (strict stand-ins) and the fake CUDA runtime.

Every TensorRT call the runner makes is checked against this version's pybind signatures; the
numbers that come back went through pinned buffers, device buffers and the engine's bound
addresses, so a wrong binding shows. One test runs the runtime's engine path in a subprocess
where torch, onnx and click cannot be imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fake_cudart import FakeCudart, cudaDeviceProp, install

from deploykit.backends.tensorrt.runner import TRT_DTYPES, TensorRTRunner, numpy_dtype
from deploykit.errors import DeployKitError

from .fake_engine import Tensor, serve_engine

HERE = Path(__file__).parent
BATCH_PROFILE = ((1, 4), (2, 4), (8, 4))


def test_dtype_table_covers_every_trt_datatype(real_trt):
    members = set(real_trt.DataType.__members__)
    assert members == set(TRT_DTYPES), f"unmapped: {members - set(TRT_DTYPES)}, unknown: {set(TRT_DTYPES) - members}"
    for name, member in real_trt.DataType.__members__.items():
        if TRT_DTYPES[name] is None:
            with pytest.raises(DeployKitError, match=rf"tensor 'x' is {name} at the engine's boundary") as info:
                numpy_dtype(member, "x", "m.plan")
            assert "\n" not in str(info.value)
        else:
            assert numpy_dtype(member, "x", "m.plan") == TRT_DTYPES[name]
    # the names this deploykit maps to numpy are exactly the ones TensorRT's own nptype knows
    numpy_ok = {"FLOAT", "HALF", "INT8", "INT32", "INT64", "BOOL", "UINT8"}
    assert {n for n, d in TRT_DTYPES.items() if d is not None} == numpy_ok


def _doubling_engine(world, fake, in_dtype="FLOAT", out_dtype="FLOAT"):
    tensors = [
        Tensor("x", in_dtype, (-1, 4), True, BATCH_PROFILE),
        Tensor("y", out_dtype, (-1, 4), False),
    ]
    return serve_engine(world, fake, tensors, lambda a: {"y": 2 * a["x"] + 1}, lambda shapes, name: shapes["x"])


@pytest.fixture
def plan(tmp_path):
    p = tmp_path / "m.plan"
    p.write_bytes(b"serialized engine bytes")
    return p


@pytest.mark.parametrize("graph", [False, True])
def test_runner_binds_by_name_and_returns_the_engine_output(world, monkeypatch, plan, graph):
    fake = install(monkeypatch, FakeCudart([cudaDeviceProp(), cudaDeviceProp(b"Second GPU")]))
    log = _doubling_engine(world, fake)
    rng = np.random.default_rng(0)
    runner = TensorRTRunner(plan, device="cuda:1", cuda_graph=graph)
    assert runner.device == "cuda:1"
    with runner:
        # the engine and its context were made with cuda:1 current, and so was every buffer
        assert (log.device_at_deserialize, log.device_at_context) == (1, 1)
        assert runner.input_metadata() == {"x": (np.dtype(np.float32), ("batch", 4))}
        for batch in (3, 5, 3, 3):
            x = rng.standard_normal((batch, 4)).astype(np.float32)
            np.testing.assert_array_equal(runner.infer({"x": x})["y"], 2 * x + 1)
            assert log.shapes["x"] == (batch, 4)
        assert {c[2] for c in fake.calls if c[0] == "cudaMalloc"} == {1}
        # buffers per shape: two shapes -> input and output device buffers for each
        assert sum(1 for c in fake.calls if c[0] == "cudaMalloc") == 4
        if graph:
            # per shape: one warm-up enqueue and one captured; the later calls replay the graph
            assert log.enqueues == 4
            assert sum(1 for c in fake.calls if c[0] == "cudaGraphLaunch") == 4
        else:
            assert log.enqueues == 4
        with pytest.raises(DeployKitError, match=r"shape \(9, 4\) is outside the engine's profile"):
            runner.infer({"x": np.zeros((9, 4), np.float32)})
        stream_handles = {c.args[0] for c in log.context.execute_async_v3.call_args_list}
        assert stream_handles == {runner._stream.handle} and runner._stream.handle != 0
    assert fake.live() == {"device": 0, "pinned": 0, "streams": 0, "graphs": 0, "execs": 0, "events": 0}


def test_device_time_from_events(world, monkeypatch, plan):
    fake = install(monkeypatch)
    log = _doubling_engine(world, fake)
    with TensorRTRunner(plan, cuda_graph=True) as runner:
        assert runner.device_time_ms({"x": np.ones((2, 4), np.float32)}, iters=3) == 6.0 / 3
        assert sum(1 for c in fake.calls if c[0] == "cudaGraphLaunch") == 1 + 3  # one warm, three timed
        assert log.enqueues == 2  # warm-up enqueue and the captured one
        assert fake.live()["events"] == 0


def test_runner_refuses_types_numpy_cannot_hold(world, monkeypatch, plan):
    fake = install(monkeypatch)
    _doubling_engine(world, fake, out_dtype="BF16")
    with pytest.raises(DeployKitError, match=r"m.plan: tensor 'y' is BF16 at the engine's boundary"):
        TensorRTRunner(plan).activate()


def test_undeserializable_engine_is_one_line(world, monkeypatch, plan):
    install(monkeypatch)
    make_runtime = world.module.Runtime

    def runtime(*args, **kwargs):
        rt = make_runtime(*args, **kwargs)
        rt.deserialize_cuda_engine.return_value = None
        return rt

    runtime._dk_spec = make_runtime._dk_spec
    world.module.Runtime = runtime
    with pytest.raises(DeployKitError, match=r"m.plan: TensorRT \S+ could not deserialize this engine"):
        TensorRTRunner(plan).activate()


def test_absent_device_is_refused_before_tensorrt(world, monkeypatch, plan):
    install(monkeypatch)
    with pytest.raises(DeployKitError, match=r"'cuda:2' does not exist: this machine has 1 CUDA device"):
        TensorRTRunner(plan, device="cuda:2").activate()
    assert "Runtime" not in world.created
    with pytest.raises(DeployKitError, match="CUDA devices only, not 'cpu'"):
        TensorRTRunner(plan, device="cpu")


def test_version_compatible_engine_allows_host_code(world, monkeypatch, plan):
    fake = install(monkeypatch)
    log = _doubling_engine(world, fake)
    with TensorRTRunner(plan, host_code_allowed=True):
        assert log.runtime.engine_host_code_allowed is True


# -- the runtime's engine path, with torch, onnx and click unimportable --------------------------

TORCH_FREE = textwrap.dedent("""
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx", "click"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    sys.path[:0] = [sys.argv[1]]
    import numpy as np
    import tensorrt_bindings
    from fake_cudart import FakeCudart, cudaDeviceProp, install_plain
    from tensorrt_contract.world import World
    from tensorrt_contract.fake_engine import Tensor, serve_engine

    world = World(tensorrt_bindings)
    sys.modules["tensorrt"] = world.module
    fake = install_plain(FakeCudart([cudaDeviceProp(), cudaDeviceProp()]))
    tensors = [Tensor("input", "FLOAT", (-1, 3, 4, 4), True, ((1, 3, 4, 4), (4, 3, 4, 4), (8, 3, 4, 4))),
               Tensor("logits", "FLOAT", (-1, 5), False)]
    weights = np.arange(5, dtype=np.float32) - 2.0
    serve_engine(world, fake, tensors, lambda a: {"logits": a["input"].mean(axis=(1, 2, 3))[:, None] * weights},
                 lambda shapes, name: (shapes["input"][0], 5))

    from deploykit.runtime import Predictor

    pred = Predictor.from_artifact(sys.argv[2], device=sys.argv[3])
    x = np.linspace(-1, 1, 10 * 48, dtype=np.float32).reshape(10, 3, 4, 4)
    out = pred.predict(x, topk=2)
    heavy = sorted(m for m in ("torch", "onnx", "click") if m in sys.modules)
    print(json.dumps({"top": [list(p.indices) for p in out], "heavy": heavy, "device": fake.current}))
""")


def _engine_artifact(out: Path, trt_version: str) -> Path:
    from deploykit.artifact import ArtifactWriter, BatchProfile, Manifest, TensorSpec
    from deploykit.data.config import DataConfig

    with ArtifactWriter(out) as w:
        (w.dir / "model.plan").write_bytes(b"serialized engine bytes")
        m = Manifest(
            model="tiny",
            family="test",
            format="tensorrt-engine",
            precision="fp32",
            main_file="model.plan",
            data_config=DataConfig(input_size=(3, 4, 4), num_classes=5),
            inputs=[TensorSpec("input", "float32", ["batch", 3, 4, 4])],
            outputs=[TensorSpec("logits", "float32", ["batch", 5])],
            batch=BatchProfile(1, 4, 8, True),
        )
        record = {"tensorrt": trt_version, "gpu": "Fake GPU", "compute_capability": "8.6", "precision": "fp32"}
        m.add_stage("build", engine=record)
        return w.commit(m).path


@pytest.mark.parametrize(("device", "index"), [("cuda", 0), ("cuda:1", 1)])
def test_runtime_engine_path_imports_no_torch(real_trt, tmp_path, device, index):
    art = _engine_artifact(tmp_path / "engine", real_trt.__version__)
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(HERE.parent), str(art), device],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    # logits = mean(image) * (k - 2): the top class is 4 for a positive mean and 0 for a negative one
    x = np.linspace(-1, 1, 10 * 48, dtype=np.float32).reshape(10, 3, 4, 4)
    means = x.mean(axis=(1, 2, 3))
    assert result["top"] == [[4, 3] if m > 0 else [0, 1] for m in means]
    assert result["device"] == index  # the GPU the Predictor was given (two fake GPUs)


def test_running_env_reads_the_gpu_through_cuda_bindings(world, monkeypatch):
    from fake_cudart import cudaError_t

    from deploykit.backends.tensorrt.guard import RunningEnv, running_env

    fake = install(monkeypatch, FakeCudart([cudaDeviceProp(), cudaDeviceProp(b"Orin", 8, 7, 1)]))
    assert running_env(1) == RunningEnv(world.trt.__version__, "Orin", "8.7", integrated=True)
    assert running_env(0) == RunningEnv(world.trt.__version__, "Fake GPU", "8.6", integrated=False)
    fake.count_error = cudaError_t.cudaErrorInsufficientDriver
    with pytest.raises(
        DeployKitError, match=r"^m: needs an NVIDIA GPU, and CUDA sees none here: CUDA cudaGetDeviceCount"
    ):
        running_env(0, purpose="m:")
