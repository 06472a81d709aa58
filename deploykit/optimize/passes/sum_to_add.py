"""A two-input ``Sum`` is an ``Add``: the op every fusion (and ORT's Conv+Add+Relu) looks for."""

from __future__ import annotations

import onnx_ir as ir

from deploykit.optimize.passes._base import GraphPass, is_op, node_label


class SumToAddPass(GraphPass):
    """Old converters write residuals as ``Sum(a, b)``; the same broadcast sum as ``Add(a, b)``."""

    name = "sum_to_add"
    description = "two-input Sum -> Add (one-input Sum -> its input)"

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        for node in list(graph):
            if not is_op(node, "Sum") or any(v is None for v in node.inputs):
                continue
            if len(node.inputs) == 2:
                add = ir.node("Add", list(node.inputs), name=node.name or None)
                add.outputs[0].type, add.outputs[0].shape = node.outputs[0].type, node.outputs[0].shape
                graph.insert_before(node, add)
                _swap_output(node.outputs[0], add.outputs[0])
                graph.remove(node, safe=True)
                self.log(f"{node_label(node)}: Sum of 2 -> Add")


def _swap_output(old: ir.Value, new: ir.Value) -> None:
    """``new`` takes over ``old``'s name and readers (graph outputs included)."""
    name = old.name
    ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
    old.name = None
    new.name = name
