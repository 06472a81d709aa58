"""Which layer is to blame: per-layer SQNR of INT8 vs FP32 intermediate outputs.

Both models are run on the same calibration batches with every quantised layer's input and
output exposed. A layer's SQNR is ``10 log10(sum fp32^2 / sum (fp32 - int8)^2)`` of its output;
its *sensitivity* is the SQNR it loses compared with its input (the noise this layer adds, from
quantising its input and its weights), which ranks layers for the FP32 fallback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from deploykit.quantize.placement import QuantPlan
from deploykit.quantize.stats import add_graph_outputs, make_session


@dataclass
class LayerSQNR:
    """SQNR (dB) at a layer's input and output, and the drop between them."""

    layer: str
    op: str
    input_sqnr: float
    output_sqnr: float

    @property
    def drop(self) -> float:
        return self.input_sqnr - self.output_sqnr

    def to_dict(self) -> dict:
        d = asdict(self)
        d["drop"] = self.drop
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _sqnr(signal: float, noise: float) -> float:
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def layer_sqnr(
    fp32_model, int8_model, plan: QuantPlan, batches: Iterable[np.ndarray], threads: int | None = None
) -> list[LayerSQNR]:
    """SQNR of every quantised layer's input and output over ``batches``, in graph order."""
    tensors = sorted({t for lay in plan.layers for t in (lay.input, lay.output)})
    s_ref = make_session(add_graph_outputs(fp32_model, tensors), threads)
    s_q = make_session(add_graph_outputs(int8_model, tensors), threads)
    in_name = s_ref.get_inputs()[0].name
    sig = dict.fromkeys(tensors, 0.0)
    noise = dict.fromkeys(tensors, 0.0)
    for x in batches:
        feed = {in_name: np.ascontiguousarray(x, dtype=np.float32)}
        ref = s_ref.run(tensors, feed)
        out = s_q.run(tensors, feed)
        for t, a, b in zip(tensors, ref, out):
            a64 = a.astype(np.float64)
            sig[t] += float(np.sum(a64 * a64))
            noise[t] += float(np.sum((a64 - b) ** 2))
    return [
        LayerSQNR(lay.name, lay.op, _sqnr(sig[lay.input], noise[lay.input]), _sqnr(sig[lay.output], noise[lay.output]))
        for lay in plan.layers
    ]


def rank(results: list[LayerSQNR]) -> list[LayerSQNR]:
    """Most damaging layer first: the largest SQNR drop (an infinite input SQNR counts as 60 dB)."""

    def key(r: LayerSQNR) -> float:
        i = r.input_sqnr if math.isfinite(r.input_sqnr) else 60.0
        o = r.output_sqnr if math.isfinite(r.output_sqnr) else 60.0
        return i - o

    return sorted(results, key=key, reverse=True)
