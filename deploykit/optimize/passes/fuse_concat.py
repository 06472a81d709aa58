"""Concatenation fusion: fewer, flatter Concats and no Split that is concatenated straight back."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from deploykit.optimize.passes._base import (
    GraphPass,
    add_initializer,
    const_array,
    int_attr,
    is_op,
    node_label,
    replace_value,
    single_consumer,
)


def _axis(node: ir.Node, value: ir.Value) -> int | None:
    """The node's ``axis`` attribute, made non-negative when the rank is known (else as given)."""
    axis = int_attr(node, "axis", 0)
    if axis >= 0:
        return axis
    rank = value.shape.rank() if value.shape is not None else None
    return None if rank is None else axis + rank


def _split_axis(split: ir.Node) -> int | None:
    return _axis(split, split.inputs[0])


class FuseConcatPass(GraphPass):
    """Every Concat copies all its inputs; flatten and drop the ones that copy for nothing."""

    name = "fuse_concat"
    description = (
        "flatten nested Concats, drop single-input Concats, undo Split->Concat round trips, "
        "push per-channel Mul/Add through Concat"
    )

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        for node in list(graph):
            if node.graph is None or not is_op(node, "Concat"):
                continue
            self._flatten(graph, node)
            self._undo_split(graph, node)
            if self._drop_single_input(graph, node):
                continue
            self._push_affine(graph, node)

    def _flatten(self, graph: ir.Graph, concat: ir.Node) -> None:
        axis = _axis(concat, concat.outputs[0])
        inputs: list[ir.Value | None] = []
        merged = []
        for value in concat.inputs:
            inner = value.producer() if value is not None else None
            if (
                is_op(inner, "Concat")
                and inner.graph is graph
                and single_consumer(value) is concat
                and axis is not None
                and _axis(inner, value) == axis
            ):
                inputs.extend(inner.inputs)
                merged.append(inner)
            else:
                inputs.append(value)
        if merged:
            self._set_inputs(concat, inputs)
            for inner in merged:
                graph.remove(inner, safe=True)
                self.log(f"flattened {node_label(inner)} into {node_label(concat)}")

    def _undo_split(self, graph: ir.Graph, concat: ir.Node) -> None:
        axis = _axis(concat, concat.outputs[0])
        inputs = list(concat.inputs)
        i = 0
        changed = []
        while i < len(inputs):
            split = inputs[i].producer() if inputs[i] is not None else None
            n = len(split.outputs) if split is not None else 0
            if (
                is_op(split, "Split")
                and axis is not None
                and _split_axis(split) == axis
                and split.outputs[0] is inputs[i]
                and tuple(inputs[i : i + n]) == tuple(split.outputs)
            ):
                inputs[i : i + n] = [split.inputs[0]]
                changed.append(split)
            i += 1
        if changed:
            self._set_inputs(concat, inputs)
            for split in changed:
                if not any(o.uses() or o.is_graph_output() for o in split.outputs):
                    graph.remove(split, safe=True)
                self.log(f"{node_label(concat)} reads the input of {node_label(split)} instead of its pieces")

    def _drop_single_input(self, graph: ir.Graph, concat: ir.Node) -> bool:
        if len(concat.inputs) != 1 or concat.inputs[0] is None:
            return False
        src, out = concat.inputs[0], concat.outputs[0]
        if out.is_graph_output() and (src.producer() is None or src.is_graph_output()):
            return False
        replace_value(out, src)
        graph.remove(concat, safe=True)
        self.log(f"removed single-input {node_label(concat)}")
        return True

    def _push_affine(self, graph: ir.Graph, concat: ir.Node) -> None:
        """Concat(x1*s1, x2*s2) -> Concat(x1, x2) * [s1; s2] when every s is per-channel on the axis."""
        out = concat.outputs[0]
        rank = out.shape.rank() if out.shape is not None else None
        axis = _axis(concat, out)
        if rank is None or axis is None or len(concat.inputs) < 2:
            return
        for op in ("Mul", "Add"):
            pieces = []
            for value in concat.inputs:
                node = value.producer() if value is not None else None
                if not is_op(node, op) or single_consumer(value) is not concat:
                    break
                piece = _per_axis_operand(node, axis, rank)
                if piece is None:
                    break
                pieces.append((node, *piece))
            if len(pieces) != len(concat.inputs):
                continue
            xs = [p[1] for p in pieces]
            consts = np.concatenate([p[2] for p in pieces], axis=axis)
            c_val = add_initializer(graph, f"{concat.name or 'concat'}_{op.lower()}", consts)
            new_concat = ir.node("Concat", xs, attributes={"axis": axis}, name=f"{concat.name or 'concat'}_pre")
            new_concat.outputs[0].type = out.type
            new_concat.outputs[0].shape = out.shape
            affine = ir.node(op, [new_concat.outputs[0], c_val], name=f"{concat.name or 'concat'}_{op.lower()}")
            affine.outputs[0].type, affine.outputs[0].shape = out.type, out.shape
            graph.insert_before(concat, [new_concat, affine])
            replace_value(out, affine.outputs[0])
            graph.remove(concat, safe=True)
            for node, _, _ in pieces:
                graph.remove(node, safe=True)
            self.log(f"pushed {len(pieces)} per-channel {op} through {node_label(concat)}")
            return

    @staticmethod
    def _set_inputs(concat: ir.Node, inputs: list[ir.Value | None]) -> None:
        concat.resize_inputs(len(inputs))
        for i, value in enumerate(inputs):
            concat.replace_input_with(i, value)


def _per_axis_operand(node: ir.Node, axis: int, rank: int) -> tuple[ir.Value, np.ndarray] | None:
    """(x, c) for x op c where c is a constant that varies only along ``axis`` (full length there)."""
    for i in (0, 1):
        c = const_array(node.inputs[1 - i])
        x = node.inputs[i]
        if c is None or x is None or x.shape is None or x.shape.rank() != rank:
            continue
        channels = x.shape[axis]
        if not isinstance(channels, int) or c.ndim > rank:
            continue
        c_full = c.reshape((1,) * (rank - c.ndim) + c.shape)
        if any(d != 1 for k, d in enumerate(c_full.shape) if k != axis):
            continue
        if c_full.shape[axis] not in (1, channels):
            continue
        if x.dtype is None or np.dtype(x.dtype.numpy()) != c.dtype:
            continue
        shape = [1] * rank
        shape[axis] = channels
        return x, np.broadcast_to(c_full, shape).copy()
    return None
