"""What every graph pass shares: an onnx-ir in-place pass that logs each rewrite it makes."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx_ir as ir


class GraphPass(ir.passes.InPlacePass):
    """One job on an ``ir.Model``; returns ``(model, modified)`` and lists what it rewrote."""

    name: str = "pass"
    description: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.rewrites: list[str] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.rewrites = []
        self.run(model)
        return ir.passes.PassResult(model, bool(self.rewrites))

    def run(self, model: ir.Model) -> None:
        """Rewrite ``model`` in place, calling ``self.log`` once per rewrite."""
        raise NotImplementedError

    def log(self, what: str) -> None:
        self.rewrites.append(what)


# --- small helpers over onnx-ir used by several passes -------------------------------------------

DEFAULT_DOMAINS = ("", "ai.onnx")


def per_channel(arr: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """``arr`` as one value per output channel when it broadcasts over an [N, C, ...] tensor only along C."""
    if arr.ndim > rank or arr.dtype.kind != "f":
        return None
    shape = (1,) * (rank - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(arr.reshape(-1) if arr.size > 1 else arr.reshape(()), (channels,)).astype(np.float64)


def is_op(node: ir.Node | None, op_type: str) -> bool:
    """True for a default-domain node of ``op_type`` (custom domains are never matched)."""
    return node is not None and node.op_type == op_type and node.domain in DEFAULT_DOMAINS


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of a constant input (an initializer that is not a graph input), else None."""
    if value is None or value.is_graph_input():
        return None
    tensor = value.const_value
    if tensor is None:
        return None
    return tensor.numpy()


def consumers(value: ir.Value) -> list[ir.Node]:
    """Distinct nodes reading ``value``, in use order."""
    out: list[ir.Node] = []
    for node, _ in value.uses():
        if node not in out:
            out.append(node)
    return out


def single_consumer(value: ir.Value) -> ir.Node | None:
    """The only node reading ``value`` (read once, not a graph output), else None."""
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    return uses[0][0]


def ints_attr(node: ir.Node, name: str, default: Iterable[int]) -> tuple[int, ...]:
    attr = node.attributes.get(name)
    return tuple(default) if attr is None else tuple(attr.as_ints())


def int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else attr.as_int()


def str_attr(node: ir.Node, name: str, default: str) -> str:
    attr = node.attributes.get(name)
    return default if attr is None else attr.as_string()


def node_label(node: ir.Node) -> str:
    return node.name or f"{node.op_type}@{id(node):x}"


def fresh_name(graph: ir.Graph, base: str) -> str:
    """A value/initializer name not yet used in ``graph``."""
    taken = _names(graph)
    name, k = base, 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def _names(graph: ir.Graph) -> set[str]:
    names = {v.name for v in graph.inputs if v.name}
    names.update(graph.initializers)
    for node in graph:
        names.update(v.name for v in node.outputs if v.name)
        if node.name:
            names.add(node.name)
    return names


def add_initializer(graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
    """Register a new constant in ``graph`` under a fresh name."""
    name = fresh_name(graph, base)
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value


def replace_value(old: ir.Value, new: ir.Value) -> None:
    """Point every reader of ``old`` (graph outputs included, keeping their name) at ``new``."""
    was_output = old.is_graph_output()
    ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
    if was_output:
        name = old.name
        old.name = None
        new.name = name


def channel_dtype(value: ir.Value) -> np.dtype | None:
    return None if value.dtype is None else np.dtype(value.dtype.numpy())
