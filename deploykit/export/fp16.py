"""FP32 ONNX -> FP16 ONNX with onnxconverter-common's converter, keeping float32 I/O by default.

Callers feed the same float32 tensors to FP32 and FP16 artifacts (the converter puts Casts at
the graph boundaries); ``keep_io_types=False`` gives an all-float16 graph for runtimes that
want to feed half precision directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import onnx

from deploykit.errors import DeployKitError

# Weights and constants outside float16's comfortable range are clamped by the converter to
# these magnitudes (smallest normal ~6e-5, largest 65504; 1e-7 keeps subnormals, 1e4 headroom).
MIN_POSITIVE = 1e-7
MAX_FINITE = 1e4


def is_fp16(model: onnx.ModelProto) -> bool:
    """True when the graph already computes in float16 (any float16 initializer)."""
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def convert_to_fp16(
    model: onnx.ModelProto,
    keep_io_types: bool = True,
    op_block_list: Iterable[str] | None = None,
) -> onnx.ModelProto:
    """A float16 copy of ``model``; inputs/outputs stay float32 unless ``keep_io_types`` is False.

    ``op_block_list`` names op types left in float32 (the converter's default list covers ops
    such as Resize and TopK whose float16 kernels are missing or inexact).
    """
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise DeployKitError(
            "FP16 conversion needs onnxconverter-common, a dependency of deploykit that is "
            "missing here; reinstall deploykit"
        ) from None
    if is_fp16(model):
        raise DeployKitError("model is already float16; convert the FP32 model instead")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    blocked = list(op_block_list) if op_block_list is not None else None
    if blocked is not None:
        blocked = sorted(set(blocked) | set(float16.DEFAULT_OP_BLOCK_LIST))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per clamped weight: thousands, and harmless
        return float16.convert_float_to_float16(
            copy,
            min_positive_val=MIN_POSITIVE,
            max_finite_val=MAX_FINITE,
            keep_io_types=keep_io_types,
            op_block_list=blocked,
        )
