"""Build a serialized TensorRT engine from ONNX (minimal; the TensorRT issue extends it)."""

from __future__ import annotations

import os
from pathlib import Path

from deploykit._io import atomic_write_bytes
from deploykit.backends.tensorrt import import_tensorrt
from deploykit.errors import DeployKitError

PRECISIONS = ("fp32", "fp16", "int8")


def build_engine(
    onnx_path: str | os.PathLike,
    precision: str = "fp16",
    min_batch: int = 1,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    workspace_mb: int | None = None,
) -> bytes:
    """Parse ONNX, set precision flags and one batch profile, and return the serialized engine."""
    trt = import_tensorrt("Building a TensorRT engine")
    if precision not in PRECISIONS:
        raise DeployKitError(f"engine precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    max_batch = max_batch or max(min_batch, opt_batch or min_batch)
    opt_batch = opt_batch or max_batch
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise DeployKitError(f"batch profile needs 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}")
    path = Path(onnx_path)
    if not path.is_file():
        raise DeployKitError(f"{path}: ONNX file not found")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeployKitError(f"{path}: TensorRT's ONNX parser failed ({errors[:300]})")

    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ graphs carry their own scales

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        if any(d < 0 for d in dims[1:]):
            raise DeployKitError(f"{path}: input '{tensor.name}' has dynamic non-batch dims {dims}")
        rest = dims[1:]
        if dims[0] < 0:
            profile.set_shape(tensor.name, [min_batch, *rest], [opt_batch, *rest], [max_batch, *rest])
        else:
            profile.set_shape(tensor.name, dims, dims, dims)
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DeployKitError(f"{path}: TensorRT could not build an engine (see the TensorRT log above)")
    return bytes(serialized)


def write_engine(onnx_path: str | os.PathLike, out_path: str | os.PathLike, **kwargs) -> Path:
    """Build an engine and write it atomically."""
    return atomic_write_bytes(out_path, build_engine(onnx_path, **kwargs))
