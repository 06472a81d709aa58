"""Horizontal fusion: parallel 1x1 Convs reading the same tensor become one Conv and a Split."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from deploykit.optimize.passes._base import (
    GraphPass,
    add_initializer,
    const_array,
    consumers,
    int_attr,
    ints_attr,
    is_op,
    node_label,
    replace_value,
    single_consumer,
    str_attr,
)


def _pointwise_key(conv: ir.Node, x: ir.Value) -> tuple | None:
    """Attributes that must match for two 1x1 convs to share one GEMM; None when not a candidate."""
    if not is_op(conv, "Conv") or conv.inputs[0] is not x or len(conv.outputs) != 1:
        return None
    w = const_array(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if w is None or w.ndim != 4 or w.shape[2:] != (1, 1):
        return None
    if len(conv.inputs) > 2 and conv.inputs[2] is not None and const_array(conv.inputs[2]) is None:
        return None
    if int_attr(conv, "group", 1) != 1 or str_attr(conv, "auto_pad", "NOTSET") != "NOTSET":
        return None
    return (
        ints_attr(conv, "strides", (1, 1)),
        ints_attr(conv, "pads", (0, 0, 0, 0)),
        ints_attr(conv, "dilations", (1, 1)),
        w.dtype.str,
        w.shape[1],
    )


def _relu_after(conv: ir.Node) -> ir.Node | None:
    nxt = single_consumer(conv.outputs[0])
    return nxt if is_op(nxt, "Relu") else None


class FuseParallelConvPass(GraphPass):
    """Several thin 1x1 GEMMs over one input run faster as one wide GEMM (Inception branch heads)."""

    name = "fuse_parallel_conv"
    description = "parallel 1x1 Convs on one input -> one Conv (+Relu) + Split"

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        opset = model.opset_imports.get("", 13)
        values = list(graph.inputs) + [o for n in graph for o in n.outputs]
        for x in values:
            groups: dict[tuple, list[ir.Node]] = {}
            for node in consumers(x):
                key = _pointwise_key(node, x)
                if key is not None:
                    # Branches that all end in ReLU fuse it too; the others fuse among themselves.
                    groups.setdefault(key + (_relu_after(node) is not None,), []).append(node)
            for key, convs in groups.items():
                if len(convs) >= 2:
                    self._fuse(graph, opset, x, convs, with_relu=key[-1])

    def _fuse(self, graph: ir.Graph, opset: int, x: ir.Value, convs: list[ir.Node], with_relu: bool) -> None:
        order = {node: i for i, node in enumerate(graph)}
        convs = sorted(convs, key=order.__getitem__)
        weights = [const_array(c.inputs[1]) for c in convs]
        biases = [
            const_array(c.inputs[2]) if len(c.inputs) > 2 and c.inputs[2] is not None else np.zeros(w.shape[0], w.dtype)
            for c, w in zip(convs, weights)
        ]
        sizes = [w.shape[0] for w in weights]
        base = convs[0].name or "conv"
        w_val = add_initializer(graph, f"{base}_hfused_W", np.concatenate(weights, axis=0))
        b_val = add_initializer(graph, f"{base}_hfused_B", np.concatenate(biases, axis=0))
        attrs = {k: v for k, v in convs[0].attributes.items() if k in ("strides", "pads", "dilations", "kernel_shape")}
        conv = ir.node("Conv", [x, w_val, b_val], attributes=attrs, name=f"{base}_hfused")
        new_nodes = [conv]
        out = conv.outputs[0]
        out.type = convs[0].outputs[0].type
        if with_relu:
            relu = ir.node("Relu", [out], name=f"{base}_hfused_relu")
            relu.outputs[0].type = out.type
            new_nodes.append(relu)
            out = relu.outputs[0]
        old_outputs = [(_relu_after(c).outputs[0] if with_relu else c.outputs[0]) for c in convs]
        split_sizes = np.array(sizes, dtype=np.int64)
        if opset >= 13:
            split_in = add_initializer(graph, f"{base}_hfused_split", split_sizes)
            split = ir.node(
                "Split", [out, split_in], attributes={"axis": 1}, num_outputs=len(convs), name=f"{base}_hfused_split"
            )
        else:
            split = ir.node(
                "Split",
                [out],
                attributes={"axis": 1, "split": split_sizes.tolist()},
                num_outputs=len(convs),
                name=f"{base}_hfused_split",
            )
        new_nodes.append(split)
        graph.insert_before(convs[0], new_nodes)
        for old, new in zip(old_outputs, split.outputs):
            new.type, new.shape = old.type, old.shape
            replace_value(old, new)
        for c in convs:
            if with_relu:
                graph.remove(_relu_after_removed(c), safe=True)
            graph.remove(c, safe=True)
        what = "Conv+Relu" if with_relu else "Conv"
        self.log(
            f"fused {len(convs)} parallel 1x1 {what} ({', '.join(node_label(c) for c in convs)}) "
            f"reading '{x.name}' into one {what}+Split {sizes}"
        )


def _relu_after_removed(conv: ir.Node) -> ir.Node:
    # After the rewiring the ReLU still reads the conv output but its own output has no readers.
    return consumers(conv.outputs[0])[0]
