"""onnxruntime profile: a Relu whose output a zero-point-0 uint8 Q already clips leaves the file, bit-exactly."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

import deploykit.quantize.placement as placement
from deploykit.quantize.placement import count_ops

from .graphs import residual_block
from .test_placement import quantise


def _run(model, x):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # ORT must not drop Relus itself
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_redundant_relus_are_dropped_without_changing_a_bit(monkeypatch):
    x = np.random.default_rng(0).standard_normal((8, 4, 8, 8)).astype(np.float32)
    _, plan, q = quantise(residual_block(), "onnxruntime", x)
    assert count_ops(q).get("Relu", 0) == 0  # all three read only through their Q/DQ
    monkeypatch.setattr(placement, "_ort_redundant_relus", lambda g, plan, params: {})
    _, _, kept = quantise(residual_block(), "onnxruntime", x)
    assert count_ops(kept)["Relu"] == 3
    np.testing.assert_array_equal(_run(q, x), _run(kept, x))


def test_tensorrt_profile_keeps_its_relus():
    x = np.random.default_rng(0).standard_normal((8, 4, 8, 8)).astype(np.float32)
    _, _, q = quantise(residual_block(), "tensorrt", x)
    assert count_ops(q)["Relu"] == 3
