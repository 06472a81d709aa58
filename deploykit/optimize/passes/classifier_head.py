"""Classifier heads as other exporters write them, in the form runtimes fuse: Flatten + Gemm.

- ``Reshape(x, [0, -1])``, ``Reshape(x, [-1, K])`` (K = C*H*W) and the opset-9 spelling of
  ``x.view(x.size(0), -1)`` (``Shape`` -> ``Gather(0)`` -> ``Unsqueeze`` -> ``Concat([-1])``)
  become ``Flatten(x, axis=1)``: the batch dim stays symbolic, so constant folding cannot do it.
- ``Add(MatMul(x, W), b)`` with a 2-D ``x``, a constant ``W`` and a bias of shape [K] or [1, K]
  becomes ``Gemm(x, W, b)``.
"""

from __future__ import annotations

import math

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
)


def _static_dims(value: ir.Value) -> list[int | None] | None:
    if value.shape is None:
        return None
    return [d if isinstance(d, int) else None for d in value.shape]


def _is_batch_of(shape_value: ir.Value, x: ir.Value) -> bool:
    """``shape_value`` is ``Unsqueeze(Gather(Shape(x), 0), axes=[0])``: x's batch size as a 1-D tensor."""
    unsq = shape_value.producer()
    if not is_op(unsq, "Unsqueeze"):
        return False
    if len(unsq.inputs) < 2:
        axes = ints_attr(unsq, "axes", ())
    else:
        arr = const_array(unsq.inputs[1])
        axes = () if arr is None else tuple(int(v) for v in arr.reshape(-1))
    gather = unsq.inputs[0].producer()
    if tuple(axes) != (0,) or not is_op(gather, "Gather") or int_attr(gather, "axis", 0):
        return False
    idx = const_array(gather.inputs[1])
    shape = gather.inputs[0].producer()
    if idx is None or idx.shape != () or int(idx) != 0 or not is_op(shape, "Shape"):
        return False
    return shape.inputs[0] is x and "start" not in shape.attributes and "end" not in shape.attributes


def _flattens(node: ir.Node) -> bool:
    """True when the Reshape ``node`` keeps dim 0 and merges the rest: Flatten(axis=1)."""
    x, target = node.inputs[0], node.inputs[1]
    dims = _static_dims(x)
    if dims is None or len(dims) < 2 or int_attr(node, "allowzero", 0):
        return False
    const = const_array(target)
    if const is not None:
        t = [int(v) for v in const.reshape(-1)]
        if len(t) != 2:
            return False
        rest = dims[1:]
        known = math.prod(rest) if None not in rest else None
        return (
            t in ([0, -1],)
            or (t[0] == -1 and known is not None and t[1] == known)
            or (t[1] == -1 and dims[0] is not None and t[0] == dims[0])
        )
    cat = target.producer()
    if not is_op(cat, "Concat") or len(cat.inputs) != 2 or int_attr(cat, "axis", 0) != 0:
        return False
    tail = const_array(cat.inputs[1])
    return tail is not None and tail.reshape(-1).tolist() == [-1] and _is_batch_of(cat.inputs[0], x)


class ClassifierHeadPass(GraphPass):
    """Rewrite Reshape-as-flatten to Flatten and MatMul + bias Add to Gemm (see the module docstring)."""

    name = "classifier_head"
    description = "Reshape that flattens -> Flatten; MatMul + bias Add -> Gemm"

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        for node in list(graph):
            if node.graph is None:
                continue
            if is_op(node, "Reshape") and len(node.inputs) == 2 and _flattens(node):
                flat = ir.node("Flatten", [node.inputs[0]], {"axis": 1}, name=node.name or None)
                flat.outputs[0].type, flat.outputs[0].shape = node.outputs[0].type, node.outputs[0].shape
                graph.insert_before(node, flat)
                replace_value(node.outputs[0], flat.outputs[0])
                graph.remove(node, safe=True)
                self.log(f"{node_label(node)}: Reshape -> Flatten(axis=1)")
            elif is_op(node, "MatMul"):
                self._gemm(graph, node)

    def _gemm(self, graph: ir.Graph, mm: ir.Node) -> None:
        a, w = mm.inputs
        add = single_consumer(mm.outputs[0])
        a_dims = _static_dims(a)
        w_arr = const_array(w)
        two_d = is_op(a.producer(), "Flatten") or (a_dims is not None and len(a_dims) == 2)
        if add is None or not is_op(add, "Add") or not two_d:
            return
        if w_arr is None or w_arr.ndim != 2:
            return
        bias = add.inputs[1] if add.inputs[0] is mm.outputs[0] else add.inputs[0]
        b = const_array(bias)
        if b is None or b.dtype != w_arr.dtype or b.shape not in ((w_arr.shape[1],), (1, w_arr.shape[1])):
            return
        gemm = ir.node("Gemm", [a, w, bias], name=mm.name or None)
        gemm.outputs[0].type, gemm.outputs[0].shape = add.outputs[0].type, add.outputs[0].shape
        graph.insert_before(mm, gemm)
        replace_value(add.outputs[0], gemm.outputs[0])
        graph.remove([add, mm], safe=True)
        self.log(f"{node_label(mm)} + {node_label(add)}: MatMul + Add -> Gemm")
