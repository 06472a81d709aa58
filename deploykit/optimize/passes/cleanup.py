"""Clean-up: Identity/Dropout removal, dead nodes, unused initialisers and duplicate constants."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import onnx_ir as ir
import onnx_ir.passes.common as common

from deploykit.optimize.passes._base import GraphPass, const_array, is_op, node_label, replace_value


class CleanupPass(GraphPass):
    """Remove what inference never needs, so later passes see the real structure."""

    name = "cleanup"
    description = "Identity/Dropout removal, dead nodes, unused initialisers/inputs, duplicate constants"

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        for node in list(graph):
            if is_op(node, "Dropout") and self._inference_dropout(node):
                out, x = node.outputs[0], node.inputs[0]
                if out.is_graph_output() and (x.producer() is None or x.is_graph_output()):
                    continue  # removing it would merge two interface names; leave it
                replace_value(out, x)
                graph.remove(node, safe=True)
                self.log(f"removed Dropout {node_label(node)}")

        identities = sum(1 for n in graph if is_op(n, "Identity"))
        common.IdentityEliminationPass()(model)
        removed = identities - sum(1 for n in graph if is_op(n, "Identity"))
        if removed:
            self.log(f"removed {removed} Identity node(s)")

        n_const = sum(1 for n in graph if is_op(n, "Constant"))
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        lifted = n_const - sum(1 for n in graph if is_op(n, "Constant"))
        if lifted:
            self.log(f"lifted {lifted} Constant node(s) to initialisers")

        inits = len(graph.initializers)
        with _quiet("onnx_ir.passes.common.initializer_deduplication"):  # weights still listed as
            common.DeduplicateInitializersPass(size_limit=1 << 24)(model)  # inputs: initializer_inputs' job
        if len(graph.initializers) < inits:
            self.log(f"merged {inits - len(graph.initializers)} duplicate constant(s)")

        before = len(graph)
        inits = len(graph.initializers)
        common.RemoveUnusedNodesPass()(model)
        if len(graph) < before:
            self.log(f"removed {before - len(graph)} dead node(s)")
        removed_inputs = self._drop_initializer_inputs(graph)
        if removed_inputs:
            self.log(f"removed {removed_inputs} unused initialiser input(s)")
        if len(graph.initializers) < inits:
            self.log(f"removed {inits - len(graph.initializers)} unused initialiser(s)")

    @staticmethod
    def _inference_dropout(node: ir.Node) -> bool:
        """A Dropout is the identity when its mask is unused and training_mode is absent/false."""
        if len(node.outputs) > 1 and node.outputs[1].uses():
            return False
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            mode = const_array(node.inputs[2])
            return mode is not None and not bool(mode)
        return True

    @staticmethod
    def _drop_initializer_inputs(graph: ir.Graph) -> int:
        """Graph inputs that are backed by an initialiser and read by no node are dropped."""
        removed = 0
        for value in list(graph.inputs):
            if value.name in graph.initializers and not value.uses() and not value.is_graph_output():
                graph.inputs.remove(value)
                graph.initializers.pop(value.name)
                removed += 1
        return removed


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Hold a library logger's warnings back for one call (the pass reports what it did itself)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
