"""The strict stand-ins themselves: a name or call the version lacks must fail, or the contract proves nothing."""

from __future__ import annotations

import pytest


def test_unknown_attribute_fails(world):
    builder = world.module.Builder(world.module.Logger(world.module.Logger.WARNING))
    with pytest.raises(AttributeError):
        builder.no_such_method  # noqa: B018


def test_wrong_arguments_fail(world):
    trt = world.module
    config = trt.Builder(trt.Logger()).create_builder_config()
    config.set_flag(trt.BuilderFlag.TF32)
    with pytest.raises(TypeError):
        config.set_flag(trt.BuilderFlag.TF32, True)
    with pytest.raises(TypeError):
        config.set_flag(trt.MemoryPoolType.WORKSPACE)  # an enum member of another enum
    with pytest.raises(TypeError):
        config.set_memory_pool_limit(pool=trt.MemoryPoolType.WORKSPACE, size=1, extra=2)


def test_returns_follow_the_signature(world):
    trt = world.module
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert network._dk_spec is world.trt.INetworkDefinition
    parser = trt.OnnxParser(network, trt.Logger())
    assert parser._dk_spec is world.trt.OnnxParser
    with pytest.raises(TypeError):
        trt.OnnxParser(network)  # the logger is required


def test_removed_names_are_missing_in_11(real_trt, trt_major):
    # TensorRT 11 builds strongly typed networks only: the precision flags are gone.
    has = {name: hasattr(real_trt.BuilderFlag, name) for name in ("FP16", "INT8", "TF32")}
    if trt_major >= 11:
        assert has == {"FP16": False, "INT8": False, "TF32": True}
    else:
        assert has == {"FP16": True, "INT8": True, "TF32": True}
