"""The builder against NVIDIA's real bindings: a strongly typed network, no precision flag, every call real.

Each test runs ``build_serialized`` (or the whole build stage) with the strict stand-ins of one
TensorRT version installed as ``tensorrt``: a name the version lacks, an argument its signature
refuses or a read-only property assigned fails the test. What TensorRT then would do on a GPU is
not proven here.
"""

from __future__ import annotations

import pytest
from precision_models import precision_artifact

from deploykit.backends.tensorrt.builder import EngineOptions, build_serialized
from deploykit.errors import DeployKitError

# The weak-typing flags TensorRT 11 removed (and 10.12 deprecated): none may ever be set.
PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                   "PREFER_PRECISION_CONSTRAINTS")  # fmt: skip


def prepare(world, tmp_path, shape=(-1, 3, 8, 8), plan=b"serialized plan", cache=b"timing cache"):
    """An ONNX path, a network with one input of ``shape``, and what build and serialize return."""
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx bytes (the parser is a stand-in)")
    tensor = world.set(world.strict("ITensor"), name="input", shape=shape)
    world.preset("INetworkDefinition", num_inputs=1, get_input=tensor)
    world.preset("Builder", build_serialized_network=world.host_memory(plan))
    world.preset("ITimingCache", serialize=world.host_memory(cache))
    return onnx_path


def only(world, cls_name):
    made = world.created.get(cls_name, [])
    assert len(made) == 1, f"{cls_name}: {len(made)} made"
    return made[0]


def flag_calls(config, method):
    return [c.args[0] for c in getattr(config, method).call_args_list]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "best"])
def test_strongly_typed_network_and_no_precision_flag(world, tmp_path, precision):
    trt = world.module
    built = build_serialized(prepare(world, tmp_path), EngineOptions(precision=precision))
    assert built.plan == b"serialized plan"
    builder = only(world, "Builder")
    builder.create_network.assert_called_once_with(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    config = only(world, "IBuilderConfig")
    set_flags = flag_calls(config, "set_flag")
    for name in PRECISION_FLAGS:
        member = getattr(trt.BuilderFlag, name, None)
        assert member is None or member not in set_flags, f"{name} set"
    # TF32 is on by default in TensorRT: cleared, so FP32 layers compute in FP32
    assert flag_calls(config, "clear_flag") == [trt.BuilderFlag.TF32]
    builder.build_serialized_network.assert_called_once_with(only(world, "INetworkDefinition"), config)


def test_tf32_is_kept_when_asked(world, tmp_path):
    build_serialized(prepare(world, tmp_path), EngineOptions(precision="fp32", tf32=True))
    config = only(world, "IBuilderConfig")
    assert flag_calls(config, "clear_flag") == [] and flag_calls(config, "set_flag") == []


def test_profile_shapes_from_the_batch_options(world, tmp_path):
    built = build_serialized(
        prepare(world, tmp_path), EngineOptions(precision="fp32", min_batch=1, opt_batch=4, max_batch=16)
    )
    profile = only(world, "IOptimizationProfile")
    profile.set_shape.assert_called_once_with("input", [1, 3, 8, 8], [4, 3, 8, 8], [16, 3, 8, 8])
    only(world, "IBuilderConfig").add_optimization_profile.assert_called_once_with(profile)
    assert built.inputs == {"input": [[1, 3, 8, 8], [4, 3, 8, 8], [16, 3, 8, 8]]}


def test_fixed_batch_and_dynamic_inner_dims_are_refused(world, tmp_path):
    path = prepare(world, tmp_path, shape=(4, 3, 8, 8))
    with pytest.raises(DeployKitError, match="fixed batch of 4; use --batch 4:4:4"):
        build_serialized(path, EngineOptions(precision="fp32", min_batch=1, opt_batch=1, max_batch=8))
    built = build_serialized(path, EngineOptions(precision="fp32", min_batch=4, opt_batch=4, max_batch=4))
    assert built.inputs["input"] == [[4, 3, 8, 8]] * 3
    world.presets.clear()
    path = prepare(world, tmp_path, shape=(-1, 3, -1, 8))
    with pytest.raises(DeployKitError, match=r"dynamic non-batch dims \[-1, 3, -1, 8\]"):
        build_serialized(path, EngineOptions(precision="fp32"))


@pytest.mark.parametrize(
    "level, member", [("none", None), ("ampere+", "AMPERE_PLUS"), ("same-cc", "SAME_COMPUTE_CAPABILITY")]
)
def test_hardware_compat_levels(world, tmp_path, level, member):
    trt = world.module
    build_serialized(prepare(world, tmp_path), EngineOptions(precision="fp16", hardware_compat=level))
    config = only(world, "IBuilderConfig")
    if member is None:
        assert "hardware_compatibility_level" not in vars(config)  # never assigned: TensorRT's default
    else:
        assert config.hardware_compatibility_level == getattr(trt.HardwareCompatibilityLevel, member)


def test_version_compatible_workspace_and_opt_level(world, tmp_path):
    trt = world.module
    options = EngineOptions(precision="int8", version_compatible=True, workspace_mb=64, opt_level=5)
    build_serialized(prepare(world, tmp_path), options)
    config = only(world, "IBuilderConfig")
    assert flag_calls(config, "set_flag") == [trt.BuilderFlag.VERSION_COMPATIBLE]
    config.set_memory_pool_limit.assert_called_once_with(trt.MemoryPoolType.WORKSPACE, 64 << 20)
    assert config.builder_optimization_level == 5


def test_timing_cache_in_and_out(world, tmp_path):
    built = build_serialized(prepare(world, tmp_path), EngineOptions(precision="fp32"), timing_cache=b"old cache")
    config = only(world, "IBuilderConfig")
    config.create_timing_cache.assert_called_once_with(b"old cache")
    cache = only(world, "ITimingCache")
    config.set_timing_cache.assert_called_once_with(cache, ignore_mismatch=False)
    assert built.timing_cache == b"timing cache"


def test_timing_cache_refused_by_tensorrt(world, tmp_path):
    path = prepare(world, tmp_path)
    world.preset("IBuilderConfig", set_timing_cache=False)
    with pytest.raises(DeployKitError, match="TensorRT refused the timing cache"):
        build_serialized(path, EngineOptions(precision="fp32"), timing_cache=b"x")


def test_logger_is_a_real_ilogger(world, tmp_path):
    trt = world.module
    sev = trt.ILogger.Severity

    def tensorrt_logs(network, config):  # what TensorRT does with the logger it was given, while building
        logger = world.constructed["Builder"][0][0][0]
        logger.log(sev.ERROR, "bad\nthing")
        logger.log(sev.VERBOSE, "chatter")
        logger.log(sev.WARNING, "careful")

    world.on_call("Builder", "build_serialized_network", tensorrt_logs)
    log_file = tmp_path / "build.log"
    built = build_serialized(prepare(world, tmp_path), EngineOptions(precision="fp32"), log_file=log_file)
    (args, _), *rest = world.constructed["Builder"]
    logger = args[0]
    assert isinstance(logger, world.trt.ILogger) and not rest
    assert world.constructed["OnnxParser"][0][0][1] is logger  # the parser logs to the same place
    assert built.log == ["[E] bad thing", "[W] careful"]
    assert log_file.read_text() == "[E] bad thing\n[W] careful\n"
    logger.log(sev.ERROR, "after the build")  # TensorRT may log later (teardown): kept, never a closed-file error
    assert built.log[-1] == "[E] after the build"


def test_progress_monitor_is_a_real_iprogressmonitor(world, tmp_path):
    seen = []
    build_serialized(prepare(world, tmp_path), EngineOptions(precision="fp32"), progress=lambda *a: seen.append(a))
    monitor = only(world, "IBuilderConfig").progress_monitor
    assert isinstance(monitor, world.trt.IProgressMonitor)
    monitor.phase_start("Building", None, 3)
    assert monitor.step_complete("Building", 0) is True  # True: never cancels the build
    monitor.phase_finish("Building")
    assert seen == [("Building", 0, 3), ("Building", 1, 3)]


def test_no_progress_monitor_without_a_callback(world, tmp_path):
    build_serialized(prepare(world, tmp_path), EngineOptions(precision="fp32"))
    assert "progress_monitor" not in vars(only(world, "IBuilderConfig"))


def test_parser_errors_in_one_line(world, tmp_path):
    path = prepare(world, tmp_path)
    error = world.set(world.strict("ParserError"), desc="Unsupported ONNX op: Foo", node_name="/foo/Foo")
    world.preset("OnnxParser", parse_from_file=False, num_errors=2, get_error=error)
    with pytest.raises(DeployKitError) as e:
        build_serialized(path, EngineOptions(precision="fp32"))
    msg = str(e.value)
    assert msg.startswith(f"{path}: TensorRT's ONNX parser failed (/foo/Foo: Unsupported ONNX op: Foo;")
    assert "\n" not in msg
    only(world, "OnnxParser").parse_from_file.assert_called_once_with(str(path))


def test_failed_build_names_the_first_error(world, tmp_path):
    path = prepare(world, tmp_path)
    world.preset("Builder", build_serialized_network=None)
    with pytest.raises(DeployKitError, match="TensorRT could not build an engine .*see the build log"):
        build_serialized(path, EngineOptions(precision="fp32"), log_file=tmp_path / "build.log")


def test_export_fp16_builds_its_engine_through_the_same_path(world, real_trt, tmp_path, monkeypatch):
    """``deploykit export MODEL --fp16``'s engine step (cli/export.py -> harness.headline -> the build stage)."""
    import deploykit.backends.tensorrt.guard as guard
    import deploykit.harness.headline as headline
    from deploykit.cli.export import _engine

    trt = world.module
    art = precision_artifact(tmp_path / "tiny-fp16", "fp16")  # what export --fp16 writes: an FP16 ONNX artifact
    prepare(world, tmp_path)
    here = guard.RunningEnv(real_trt.__version__, "NVIDIA L4", "8.9")
    monkeypatch.setattr(guard, "running_env", lambda *a, **k: here)
    monkeypatch.setattr(headline, "environment_problem", lambda: None)
    monkeypatch.setattr(headline, "prove_parity", lambda *a, **k: {})  # needs a GPU: not what is checked here
    monkeypatch.setattr(headline, "measure_latency", lambda *a, **k: {})
    _engine(art, False, None, None, force=False, quiet=True)
    builder = only(world, "Builder")
    builder.create_network.assert_called_once_with(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    assert flag_calls(only(world, "IBuilderConfig"), "set_flag") == []
    engine = tmp_path / "tiny-fp16-trt-fp16"
    assert (engine / "model.plan").read_bytes() == b"serialized plan"


def test_tensorrt_older_than_10_8_is_refused_in_one_line(world, monkeypatch):
    from deploykit.build import tensorrt_serializer

    assert tensorrt_serializer() is build_serialized  # this version (10.13 or 11.4) is new enough
    monkeypatch.setattr(world.module, "__version__", "10.7.0.23")
    with pytest.raises(DeployKitError, match=r"^TensorRT 10.7.0.23 is older than 10.8, the oldest deploykit builds"):
        tensorrt_serializer()
