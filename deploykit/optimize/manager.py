"""The pass manager: run a list of passes to a fixed point and report what each one changed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx_ir as ir

from deploykit.optimize.passes._base import GraphPass


@dataclass
class PassReport:
    """What one pass did over all iterations: node counts, rewrite count and descriptions."""

    name: str
    nodes_before: int = 0
    nodes_after: int = 0
    rewrites: int = 0
    runs: int = 0
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "rewrites": self.rewrites,
            "runs": self.runs,
            "seconds": round(self.seconds, 4),
            "details": list(self.details),
        }


class PassManager:
    """Apply passes in order, again and again, until a whole round changes nothing."""

    def __init__(self, passes: Sequence[GraphPass], max_iterations: int = 10) -> None:
        if max_iterations < 1:
            raise ValueError("max_iterations must be at least 1")
        self.passes = list(passes)
        self.max_iterations = max_iterations
        self.iterations = 0

    def run(self, model: ir.Model) -> tuple[ir.Model, list[PassReport], bool]:
        """Optimise ``model`` in place; returns it, one report per pass and whether anything changed."""
        reports = {p.name: PassReport(p.name) for p in self.passes}
        modified_any = False
        for iteration in range(self.max_iterations):
            self.iterations = iteration + 1
            changed = False
            for p in self.passes:
                rep = reports[p.name]
                before = len(model.graph)
                start = time.perf_counter()
                result = p(model)
                rep.seconds += time.perf_counter() - start
                model = result.model
                if rep.runs == 0:
                    rep.nodes_before = before
                rep.runs += 1
                rep.nodes_after = len(model.graph)
                if result.modified:
                    changed = True
                    rep.rewrites += len(p.rewrites)
                    rep.details.extend(p.rewrites)
            modified_any |= changed
            if not changed:
                break
        return model, list(reports.values()), modified_any
