"""Average-pool before a pointwise Conv instead of after it: both are linear, the Conv sees fewer pixels."""

from __future__ import annotations

import onnx_ir as ir

from deploykit.optimize.passes._base import (
    GraphPass,
    const_array,
    int_attr,
    ints_attr,
    is_op,
    node_label,
    replace_value,
    single_consumer,
    str_attr,
)


def _window_weights_sum_to_one(pool: ir.Node) -> bool:
    """True when every output of the AveragePool is a mean over its window (a constant stays put)."""
    pads = ints_attr(pool, "pads", ())
    if str_attr(pool, "auto_pad", "NOTSET") != "NOTSET":
        return False
    return not any(pads) or int_attr(pool, "count_include_pad", 0) == 0


def _shrinks(pool: ir.Node) -> bool:
    return any(s > 1 for s in ints_attr(pool, "strides", ()))


class PoolBeforeConvPass(GraphPass):
    """DenseNet transitions run Conv1x1 then AvgPool 2x2; swapped, the Conv does a quarter of the work."""

    name = "pool_before_conv"
    description = "Conv1x1 -> AveragePool(stride>1) becomes AveragePool -> Conv1x1 (exact: both are linear)"

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        for conv in list(graph):
            if conv.graph is None or not is_op(conv, "Conv") or len(conv.outputs) != 1:
                continue
            pool = single_consumer(conv.outputs[0])
            if not is_op(pool, "AveragePool") or len(pool.outputs) != 1 or not _shrinks(pool):
                continue
            if int_attr(pool, "ceil_mode", 0) != 0:
                continue  # partial windows at the border; not worth the case analysis
            w = const_array(conv.inputs[1]) if len(conv.inputs) > 1 else None
            if w is None or w.ndim < 3 or any(k != 1 for k in w.shape[2:]):
                continue
            if any(s != 1 for s in ints_attr(conv, "strides", ())) or any(ints_attr(conv, "pads", ())):
                continue
            if str_attr(conv, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                continue
            has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
            if has_bias and not _window_weights_sum_to_one(pool):
                continue  # zero padding would scale the bias at the border
            x = conv.inputs[0]
            new_pool = ir.node("AveragePool", [x], attributes=dict(pool.attributes), name=pool.name)
            new_pool.outputs[0].type = x.type
            new_conv = ir.node(
                "Conv", [new_pool.outputs[0], *conv.inputs[1:]], attributes=dict(conv.attributes), name=conv.name
            )
            out = pool.outputs[0]
            graph.insert_before(conv, [new_pool, new_conv])
            new_conv.outputs[0].type, new_conv.outputs[0].shape = out.type, out.shape
            replace_value(out, new_conv.outputs[0])
            graph.remove([pool, conv], safe=True)
            self.log(f"{node_label(pool)} moved before {node_label(conv)}")
