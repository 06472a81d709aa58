"""Per-layer SQNR: a layer whose input range is wrecked is ranked first."""

from __future__ import annotations

import math

import numpy as np
from onnx import numpy_helper

from deploykit.quantize.calibrators import CalibConfig, calibrate
from deploykit.quantize.placement import apply_plan, plan_placement, prepare_model
from deploykit.quantize.sensitivity import layer_sqnr, rank
from deploykit.quantize.stats import collect_stats, iter_arrays

from .graphs import residual_block


def test_sqnr_is_high_for_a_benign_graph_and_ranks_a_planted_outlier_first(rng):
    model = prepare_model(residual_block())
    x = rng.normal(size=(16, 4, 8, 8)).astype(np.float32)
    plan = plan_placement(model, "tensorrt")
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x, 8))
    q = apply_plan(model, plan, stats, calibrate(stats, CalibConfig("max")))
    res = layer_sqnr(model, q, plan, [x])
    assert [r.layer for r in res] == [lay.name for lay in plan.layers]
    assert math.isinf(res[0].input_sqnr)  # the graph input is the reference itself
    assert all(r.output_sqnr > 25 for r in res)  # 8-bit: ~30-40 dB on a well-behaved graph

    # plant an outlier: one input channel of the second conv's weights x1000 shrinks every other
    # channel's share of the range of r1 (its output), which the third conv then reads
    w = {i.name: i for i in model.graph.initializer}
    w1 = numpy_helper.to_array(w["w1"]).copy()
    b1 = numpy_helper.to_array(w["b1"]).copy()
    w2 = numpy_helper.to_array(w["w2"]).copy()
    w1[0] *= 1000.0
    b1[0] *= 1000.0
    w2[:, 0] /= 1000.0  # FP32 output unchanged
    for name, arr in (("w1", w1), ("b1", b1), ("w2", w2)):
        w[name].CopyFrom(numpy_helper.from_array(arr, name))
    stats = collect_stats(model, plan.stat_tensors, iter_arrays(x, 8))
    q = apply_plan(model, plan, stats, calibrate(stats, CalibConfig("max")))
    ranking = rank(layer_sqnr(model, q, plan, [x]))
    third_conv = [n.name for n in model.graph.node if n.op_type == "Conv"][2]
    assert ranking[0].layer == third_conv
    assert ranking[0].drop > 10
