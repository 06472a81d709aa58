"""Initializers also listed as graph inputs (IR < 4 exporters) become plain constants."""

from __future__ import annotations

import onnx_ir as ir

from deploykit.optimize.passes._base import GraphPass


class InitializerInputsPass(GraphPass):
    """Drop graph inputs that an initializer backs, so every pass may treat the weights as constants.

    Old exporters list every weight as a graph input too; ONNX then lets a caller override it at
    run time, which forbids folding anything that reads it. Inputs named in ``keep`` (the ones a
    user really feeds, such as the image) are left alone.
    """

    name = "initializer_inputs"
    description = "initialisers listed as graph inputs (IR < 4) become constants (dropped from the inputs)"

    def __init__(self, keep: tuple[str, ...] | frozenset[str] = ()) -> None:
        super().__init__()
        self.keep = frozenset(keep)

    def run(self, model: ir.Model) -> None:
        graph = model.graph
        dropped = [
            v
            for v in graph.inputs
            if v.name in graph.initializers and v.name not in self.keep and v.const_value is not None
        ]
        for value in dropped:
            graph.inputs.remove(value)
        if dropped:
            names = ", ".join(v.name for v in dropped[:3]) + (", ..." if len(dropped) > 3 else "")
            self.log(f"{len(dropped)} initialiser(s) no longer graph inputs ({names})")
        if model.ir_version < 4:
            model.ir_version = 4  # IR 3 requires every initializer to be an input; IR 4 does not
            self.log("IR version 3 -> 4 (initialisers need not be inputs)")
