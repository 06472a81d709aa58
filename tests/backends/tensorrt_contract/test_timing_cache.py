"""The timing cache through the build stage against NVIDIA's real bindings: created, attached, serialized, reused."""

from __future__ import annotations

import pytest
from precision_models import precision_artifact

from deploykit.backends.tensorrt.guard import RunningEnv
from deploykit.backends.tensorrt.timing_cache import TimingCacheMeta, sidecar_path, write_timing_cache
from deploykit.build import build_engine_artifact
from deploykit.errors import DeployKitError


def network(world, cache_out=b"cache after the build"):
    tensor = world.set(world.strict("ITensor"), name="input", shape=(-1, 3, 8, 8))
    world.preset("INetworkDefinition", num_inputs=1, get_input=tensor)
    world.preset("Builder", build_serialized_network=world.host_memory(b"plan"))
    world.preset("ITimingCache", serialize=world.host_memory(cache_out))


def here(real_trt):
    return RunningEnv(real_trt.__version__, "NVIDIA L4", "8.9")


def test_cache_is_created_then_reused(world, real_trt, tmp_path):
    art = precision_artifact(tmp_path / "fp32", "fp32")
    cache = tmp_path / "timing.cache"
    network(world, b"cache v1")
    first = build_engine_artifact(art.path, "fp32", timing_cache=cache, running=here(real_trt))
    config = world.created["IBuilderConfig"][0]
    config.create_timing_cache.assert_called_once_with(b"")  # absent: TensorRT starts an empty one
    config.set_timing_cache.assert_called_once_with(world.created["ITimingCache"][0], ignore_mismatch=False)
    assert first.timing_cache == cache and cache.read_bytes() == b"cache v1"
    assert first.artifact.main_path.read_bytes() == b"plan"

    world.presets["ITimingCache"]["serialize"] = world.host_memory(b"cache v2")
    build_engine_artifact(art.path, "fp32", timing_cache=cache, running=here(real_trt), force=True)
    second = world.created["IBuilderConfig"][1]
    second.create_timing_cache.assert_called_once_with(b"cache v1")  # the bytes the first build left
    assert cache.read_bytes() == b"cache v2" and sidecar_path(cache).is_file()


def test_cache_from_another_tensorrt_is_refused_before_tensorrt_is_touched(world, real_trt, tmp_path):
    art = precision_artifact(tmp_path / "fp32", "fp32")
    cache = write_timing_cache(tmp_path / "t.cache", b"old", TimingCacheMeta("9.9.9", "NVIDIA L4", "8.9"))
    network(world)
    with pytest.raises(DeployKitError, match="made by TensorRT 9.9.9"):
        build_engine_artifact(art.path, "fp32", timing_cache=cache, running=here(real_trt))
    assert "Builder" not in world.constructed and not (tmp_path / "fp32-trt-fp32").exists()
