"""The engine stage on CPU: every check before TensorRT, the engine manifest, layout and guard."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from precision_models import precision_artifact
from tiny_models import SIZE, tiny_artifact

from deploykit.artifact import Artifact, ArtifactWriter
from deploykit.backends.tensorrt.builder import EngineOptions
from deploykit.backends.tensorrt.guard import RunningEnv, check_engine_artifact, engine_record
from deploykit.build import PLAN_NAME, build_engine_artifact, default_out, engine_manifest, parse_batch, plan_build
from deploykit.errors import DeployKitError, MissingExtraError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
BUILT_ON = RunningEnv("10.3.0", "NVIDIA L4", "8.9")


def int8_artifact(out, profile="tensorrt"):
    """An INT8 artifact as deploykit quantize records it: the TensorRT Q/DQ graph, ``profile`` in the stage."""
    return precision_artifact(out, "int8", profile=profile)


def recorded_engine(tmp_path, parent, env=BUILT_ON, **flags):
    """An engine artifact as deploykit build commits it, with recorded bytes standing in for the plan."""
    options = EngineOptions(precision="fp16", min_batch=1, opt_batch=4, max_batch=8, **flags)
    record = {
        "tensorrt": env.tensorrt,
        "gpu": env.gpu,
        "compute_capability": env.compute_capability,
        "precision": "fp16",
        "batch": {"min": 1, "opt": 4, "max": 8},
        "flags": options.flags,
        "build_seconds": 1.5,
        "engine_sha256": "0" * 64,
        "onnx_sha256": "1" * 64,
        "parent": parent.parent_ref(),
    }
    with ArtifactWriter(tmp_path / "engine") as writer:
        (writer.dir / PLAN_NAME).write_bytes(b"recorded plan bytes")
        (writer.dir / "build.log").write_text("[I] recorded\n")
        return writer.commit(engine_manifest(parent, options, record))


def test_parse_batch():
    assert parse_batch("1:8:32") == (1, 8, 32)
    assert parse_batch("4") == (4, 4, 4)
    assert parse_batch(None) is None
    for bad in ("1:8", "a:b:c", "8:4:16", "0:1:1"):
        with pytest.raises(DeployKitError):
            parse_batch(bad)


def test_options_are_validated_without_tensorrt():
    for kwargs, words in [
        ({"precision": "int4"}, "not one of fp32, fp16, int8, best"),
        ({"workspace_mb": 0}, "at least 1 MB"),
        ({"opt_level": 6}, "not in 0-5"),
        ({"hardware_compat": "hopper+"}, "not one of none, ampere+, same-cc"),
        ({"min_batch": 4, "opt_batch": 2, "max_batch": 8}, "1 <= min <= opt <= max"),
    ]:
        with pytest.raises(DeployKitError, match=words.replace("+", r"\+")):
            EngineOptions(**kwargs)


def test_plan_build_defaults_from_the_artifact(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    parent, options, out = plan_build(art.path)
    assert (options.min_batch, options.opt_batch, options.max_batch) == (1, 1, 8)
    assert out == default_out(art.path, "fp16") == tmp_path / "art-trt-fp16"
    _, options, _ = plan_build(
        art.path, batch="2:4:8", precision="fp32", opt_level=5, hardware_compat="ampere+", version_compatible=True
    )
    assert options.flags == {
        "strongly_typed": True,
        "tf32": False,
        "workspace_mb": None,
        "opt_level": 5,
        "hardware_compat": "ampere+",
        "version_compatible": True,
    }


def test_batch_outside_the_profile(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    with pytest.raises(DeployKitError, match=r"batch 16 is outside its profile \[1, 8\]"):
        plan_build(art.path, batch="1:8:16")
    fixed = tiny_artifact(tmp_path / "fixed", dynamic=False, batch=4)
    with pytest.raises(DeployKitError, match="batch 1 requested but it was built for batch 4 only"):
        plan_build(fixed.path, batch="1:4:4")
    assert plan_build(fixed.path)[1].max_batch == 4


def test_int8_needs_a_tensorrt_int8_artifact(tmp_path):
    fp32 = tiny_artifact(tmp_path / "fp32")
    with pytest.raises(DeployKitError) as e:
        plan_build(fp32.path, precision="int8")
    assert "is a fp32 artifact and --precision int8 needs an INT8 one" in str(e.value)
    assert "deploykit quantize" in str(e.value) and "--profile tensorrt" in str(e.value)
    with pytest.raises(DeployKitError, match="needs an INT8 one"):
        plan_build(fp32.path, precision="best")
    ort = int8_artifact(tmp_path / "ort", profile="onnxruntime")
    with pytest.raises(DeployKitError, match="quantised for the 'onnxruntime' Q/DQ profile"):
        plan_build(ort.path, precision="int8")
    trt = int8_artifact(tmp_path / "trt")
    assert plan_build(trt.path, precision="int8")[1].precision == "int8"
    with pytest.raises(DeployKitError, match="INT8 .Q/DQ. artifact; build it with --precision int8$"):
        plan_build(trt.path, precision="fp16")


def test_existing_output_and_wrong_inputs(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    (tmp_path / "art-trt-fp16").mkdir()
    with pytest.raises(DeployKitError, match="already exists; pass --force"):
        plan_build(art.path)
    with pytest.raises(DeployKitError, match="is the input artifact"):
        plan_build(art.path, out=art.path, force=True)
    with pytest.raises(DeployKitError, match="artifact directory not found"):
        plan_build(tmp_path / "missing")
    engine = recorded_engine(tmp_path, art)
    with pytest.raises(DeployKitError, match="is a tensorrt-engine artifact; deploykit build needs an ONNX artifact"):
        plan_build(engine.path)


def test_tampered_parent_is_refused(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    art.main_path.write_bytes(art.main_path.read_bytes()[:-3])
    with pytest.raises(DeployKitError, match="model.onnx: size does not match the manifest"):
        plan_build(art.path)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_no_tensorrt_names_the_extra_and_writes_nothing(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    with pytest.raises(MissingExtraError) as e:
        build_engine_artifact(art.path)
    assert str(e.value) == (
        "deploykit build needs the 'tensorrt' package, which is not installed; "
        "install it with: pip install 'deploykit[tensorrt]'"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_engine_artifact_layout_and_manifest(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    engine = recorded_engine(tmp_path, art, hardware_compat="ampere+")
    # Triton's tensorrt_plan backend loads <model>/<version>/model.plan: the engine keeps that name
    assert sorted(p.name for p in engine.path.iterdir()) == ["build.log", "manifest.json", "model.plan"]
    loaded = Artifact.load(engine.path)
    m = loaded.manifest
    assert (m.format, m.precision, m.main_file) == ("tensorrt-engine", "fp16", "model.plan")
    assert (m.batch.min, m.batch.opt, m.batch.max, m.batch.dynamic) == (1, 4, 8, True)
    assert m.parent["main_sha256"] == art.manifest.files["model.onnx"]["sha256"]
    rec = engine_record(m)
    assert rec["gpu"] == "NVIDIA L4" and rec["flags"]["hardware_compat"] == "ampere+"
    stage = m.stages[-1]
    assert stage["stage"] == "build" and stage["params"]["precision"] == "fp16" and stage["log"] == "build.log"
    raw = json.loads(loaded.manifest_path.read_text())
    assert b"manifest" not in loaded.main_path.read_bytes()  # nothing glued onto the engine
    assert raw["files"]["model.plan"]["bytes"] == len(b"recorded plan bytes")


def test_guard_on_a_recorded_engine_artifact(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    engine = Artifact.load(recorded_engine(tmp_path, art).path)
    check_engine_artifact(engine, BUILT_ON)
    with pytest.raises(DeployKitError) as e:
        check_engine_artifact(engine, RunningEnv("10.3.0", "NVIDIA A100-SXM4-40GB", "8.0"))
    msg = str(e.value)
    assert msg.startswith(f"{engine.path}: engine cannot run here: it was built for NVIDIA L4 (sm 8.9)")
    assert f"deploykit build {art.path.resolve()} --precision fp16 --batch 1:4:8 --out {engine.path} --force" in msg


def test_tampered_or_truncated_engine_is_refused(tmp_path):
    engine = recorded_engine(tmp_path, tiny_artifact(tmp_path / "art"))
    engine.main_path.write_bytes(b"recorded plan bytez")
    with pytest.raises(DeployKitError, match="model.plan: sha256 does not match the manifest"):
        Artifact.load(engine.path)
    engine.main_path.write_bytes(b"recorded")
    with pytest.raises(DeployKitError, match="model.plan: size does not match the manifest"):
        Artifact.load(engine.path)


def test_onnxruntime_refuses_an_engine_artifact(tmp_path):
    from deploykit.backends import make_runner

    engine = recorded_engine(tmp_path, tiny_artifact(tmp_path / "art"))
    with pytest.raises(DeployKitError, match="a tensorrt-engine artifact runs only with --backend tensorrt"):
        make_runner(engine.path)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_build_run_and_guard_on_the_gpu(tmp_path):
    from deploykit.backends import make_runner
    from deploykit.backends.tensorrt.guard import running_env

    art = tiny_artifact(tmp_path / "art")
    cache = tmp_path / "timing.cache"
    result = build_engine_artifact(art.path, precision="fp32", batch="1:4:8", timing_cache=cache)
    assert cache.is_file() and (result.path / "build.log").is_file()
    assert engine_record(result.artifact.manifest)["tensorrt"] == running_env().tensorrt
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    with make_runner(art.path) as ref, make_runner(result.path, backend="tensorrt", cuda_graph=True) as trt:
        for _ in range(2):  # the second call replays the captured graph
            np.testing.assert_allclose(trt.infer({"input": x})["logits"], ref.infer({"input": x})["logits"], atol=1e-3)
    build_engine_artifact(art.path, precision="fp32", batch="1:4:8", timing_cache=cache, force=True)
