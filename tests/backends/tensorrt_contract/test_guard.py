"""The guard's rules name only what each TensorRT version has, and an engine the stage records passes them."""

from __future__ import annotations

from precision_models import precision_artifact

from deploykit.artifact import Artifact
from deploykit.backends.tensorrt.guard import (
    HARDWARE_COMPAT_LEVELS,
    RunningEnv,
    check_engine_artifact,
    engine_record,
    incompatibility,
)
from deploykit.build import build_engine_artifact


def test_every_hardware_compat_level_is_a_member_in_this_version(real_trt):
    members = real_trt.HardwareCompatibilityLevel.__members__
    for level, member in HARDWARE_COMPAT_LEVELS.items():
        assert member is None or member in members, (level, member)
    assert "NONE" in members  # what "none" leaves in place


def test_version_compatible_engines_need_host_code_allowed_on_the_runtime(real_trt):
    # a version-compatible plan embeds the lean runtime, which the runner must allow to run
    prop = real_trt.Runtime.engine_host_code_allowed
    assert isinstance(prop, property) and prop.fset is not None
    assert "VERSION_COMPATIBLE" in real_trt.BuilderFlag.__members__
    assert "EXCLUDE_LEAN_RUNTIME" in real_trt.BuilderFlag.__members__  # never set: the plan stays self-contained


def _built(world, real_trt, tmp_path, **options):
    tensor = world.set(world.strict("ITensor"), name="input", shape=(-1, 3, 8, 8))
    world.preset("INetworkDefinition", num_inputs=1, get_input=tensor)
    world.preset("Builder", build_serialized_network=world.host_memory(b"plan"))
    art = precision_artifact(tmp_path / "fp16", "fp16")
    env = RunningEnv(real_trt.__version__, "NVIDIA L4", "8.9")
    return build_engine_artifact(art.path, "fp16", running=env, **options), env


def test_a_recorded_engine_passes_the_guard_here_and_follows_the_rules_elsewhere(world, real_trt, tmp_path):
    trt = world.module
    result, env = _built(world, real_trt, tmp_path, version_compatible=True, hardware_compat="same-cc")
    config = world.created["IBuilderConfig"][0]
    assert config.hardware_compatibility_level == trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    assert [c.args[0] for c in config.set_flag.call_args_list] == [trt.BuilderFlag.VERSION_COMPATIBLE]
    art = Artifact.load(result.path)
    check_engine_artifact(art, env)
    record = engine_record(art.manifest)
    assert record["tensorrt"] == real_trt.__version__ and record["flags"]["hardware_compat"] == "same-cc"
    major = int(real_trt.__version__.split(".")[0])
    next_major = RunningEnv(f"{major + 1}.0.0", "NVIDIA H100 PCIe", "8.9")
    why = incompatibility(record, next_major)
    assert (why is None) == (major == 10)  # 10.x version-compatible engines run on 11.x; 11.x ones have no 12.x
    assert incompatibility(record, RunningEnv(real_trt.__version__, "NVIDIA A10G", "8.6")) is not None
