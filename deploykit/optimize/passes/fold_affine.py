"""Fold a per-channel ``Mul`` / ``Add`` by constants after a Conv into the Conv's weights and bias.

This is BatchNorm as older converters spell it (``Unsqueeze`` + ``Mul`` + ``Add`` over constants):
``conv(x) * s + t`` is a conv with weights ``W * s`` and bias ``b * s + t``, one output channel at
a time, so it folds the same way BatchNormalization does.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from deploykit.optimize.passes._base import (
    GraphPass,
    add_initializer,
    const_array,
    is_op,
    node_label,
    per_channel,
    replace_value,
    single_consumer,
)


class FoldAffinePass(GraphPass):
    """``Conv -> Mul(const)`` and ``Conv -> Add(const)`` become one Conv (one rewrite each)."""

    name = "fold_affine"
    description = "per-channel Mul/Add by constants after a Conv (BatchNorm's Mul+Add spelling) into the Conv"

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        for conv in list(graph):
            if conv.graph is None or not is_op(conv, "Conv"):
                continue
            self._fold_after(graph, conv)

    def _fold_after(self, graph: ir.Graph, conv: ir.Node) -> None:
        while True:
            out = conv.outputs[0]
            nxt = single_consumer(out)
            if nxt is None or not (is_op(nxt, "Mul") or is_op(nxt, "Add")) or len(nxt.inputs) != 2:
                return
            other = nxt.inputs[1] if nxt.inputs[0] is out else nxt.inputs[0]
            if other is out:
                return
            w = const_array(conv.inputs[1])
            bias_in = conv.inputs[2] if len(conv.inputs) > 2 else None
            b = const_array(bias_in) if bias_in is not None else None
            value = const_array(other)
            rank = out.shape.rank() if out.shape is not None else None
            if w is None or value is None or (bias_in is not None and b is None) or rank is None or rank < 3:
                return
            channels = w.shape[0]
            per = per_channel(value, rank, channels)
            if per is None or value.dtype != w.dtype:
                return
            b64 = np.zeros(channels) if b is None else b.astype(np.float64)
            if nxt.op_type == "Mul":
                new_w = (w.astype(np.float64) * per.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
                new_b = b64 * per
                conv.replace_input_with(1, add_initializer(graph, f"{conv.name or 'conv'}_w", new_w))
            else:
                new_b = b64 + per
            base = conv.name or "conv"
            new_bias = add_initializer(graph, f"{base}_b", new_b.astype(w.dtype))
            if len(conv.inputs) < 3:
                conv.resize_inputs(3)
            conv.replace_input_with(2, new_bias)
            replace_value(nxt.outputs[0], out)
            out.type, out.shape = nxt.outputs[0].type or out.type, nxt.outputs[0].shape or out.shape
            graph.remove(nxt, safe=True)
            self.log(f"{node_label(nxt)} ({nxt.op_type} by a per-channel constant) folded into {node_label(conv)}")
