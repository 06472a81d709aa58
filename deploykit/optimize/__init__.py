"""The graph optimiser: BatchNorm folding, fused 1x1 branch heads and concatenations, proven exact.

``optimize_model`` runs the passes of :mod:`deploykit.optimize.passes` through the
:class:`~deploykit.optimize.manager.PassManager` to a fixed point; ``optimize_file`` adds the
file handling (bad files become one-line errors, the output is written atomically).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx
import onnx_ir as ir

from deploykit.errors import DeployKitError, GateError
from deploykit.onnx_io import load_onnx, save_onnx
from deploykit.optimize.manager import PassManager, PassReport
from deploykit.optimize.passes import PASSES

# The default pipeline is what measurably pays off on ONNX Runtime CPU (benchmarks/optimize/).
# fuse_parallel_conv is exact but opt-in ("all" or --passes): on x86 ORT lays convolutions out in
# its blocked NCHWc format and has no blocked Split, so the Split the fusion needs costs layout
# reorders that outweigh the wider GEMM (see benchmarks/optimize/results-amd-epyc-zen4-avx512vnni-2cpu.md).
DEFAULT_PASSES: tuple[str, ...] = (
    "cleanup",
    "initializer_inputs",
    "constant_fold",
    "sum_to_add",
    "fold_batchnorm",
    "fold_affine",
    "affine_to_batchnorm",
    "classifier_head",
    "fuse_concat",
    "pool_before_conv",
)
# "all": every structural pass; batchnorm_to_affine stays opt-in by name (it slows ORT CPU down).
ALL_PASSES: tuple[str, ...] = (
    "cleanup",
    "initializer_inputs",
    "constant_fold",
    "sum_to_add",
    "fold_batchnorm",
    "fold_affine",
    "affine_to_batchnorm",
    "classifier_head",
    "fuse_parallel_conv",
    "fuse_concat",
    "pool_before_conv",
)


@dataclass
class OptimizeResult:
    """The optimised model, one report per pass, and whether anything changed."""

    model: onnx.ModelProto
    reports: list[PassReport] = field(default_factory=list)
    modified: bool = False
    nodes_before: int = 0
    nodes_after: int = 0
    iterations: int = 0
    parity: Any = None  # a verify.ParityCheck once the result was compared with its input

    @property
    def passes(self) -> list[str]:
        return [r.name for r in self.reports]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for manifests and ``--report``."""
        return {
            "passes": self.passes,
            "modified": self.modified,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "iterations": self.iterations,
            "reports": [r.to_dict() for r in self.reports],
            **({"parity": self.parity.to_dict()} if self.parity is not None else {}),
        }


def list_passes() -> list[str]:
    """Every pass name, in the order ``"all"`` runs them."""
    return list(ALL_PASSES) + [n for n in PASSES if n not in ALL_PASSES]


def resolve_passes(passes: Sequence[str] | str | None) -> list[str]:
    """Validate pass names (a list or comma-separated string; "default" and "all" expand); None = default."""
    if passes is None:
        return list(DEFAULT_PASSES)
    if isinstance(passes, str):
        passes = [p.strip() for p in passes.split(",") if p.strip()]
    names: list[str] = []
    for n in passes:
        names.extend(DEFAULT_PASSES if n == "default" else ALL_PASSES if n == "all" else [n])
    if not names:
        raise DeployKitError("no optimisation passes given; choose from " + ", ".join(list_passes()))
    for n in names:
        if n not in PASSES:
            raise DeployKitError(f"unknown optimisation pass '{n}'; choose from {', '.join(list_passes())}")
    if len(set(names)) != len(names):
        raise DeployKitError(f"optimisation pass listed twice in {','.join(names)}")
    return names


def optimize_model(
    model: onnx.ModelProto,
    passes: Sequence[str] | str | None = None,
    max_iterations: int = 10,
    keep_inputs: Sequence[str] = (),
) -> OptimizeResult:
    """Rewrite ``model`` with the named passes until none changes anything; the input is not mutated.

    ``keep_inputs`` names graph inputs a caller feeds even though an initializer backs them (the
    ``initializer_inputs`` pass turns every other such input into a constant).
    """
    names = resolve_passes(passes)
    ir_model = ir.serde.deserialize_model(_with_shapes(model))
    nodes_before = len(ir_model.graph)
    manager = PassManager([_make_pass(n, keep_inputs) for n in names], max_iterations=max_iterations)
    ir_model, reports, modified = manager.run(ir_model)
    ir.passes.common.NameFixPass()(ir_model)
    out = ir.serde.serialize_model(ir_model)
    return OptimizeResult(
        model=out,
        reports=reports,
        modified=modified,
        nodes_before=nodes_before,
        nodes_after=len(ir_model.graph),
        iterations=manager.iterations,
    )


def _make_pass(name: str, keep_inputs: Sequence[str]):
    if name == "initializer_inputs":
        return PASSES[name](keep=tuple(keep_inputs))
    return PASSES[name]()


def _with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Annotate intermediate shapes (passes need ranks and channel counts); unknown ops are skipped."""
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is best effort; passes then simply match less
        return model


def optimize_file(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    passes: Sequence[str] | str | None = None,
    max_iterations: int = 10,
    verify: bool = True,
    batch: int = 2,
) -> OptimizeResult:
    """Optimise an ONNX file into ``out_path``, written whole and only once parity held."""
    names = resolve_passes(passes)
    model = load_onnx(in_path, custom_ops=not verify)  # unverified: custom ops are never run here
    result = optimize_model(model, names, max_iterations=max_iterations)
    if verify:
        result.parity = verify_or_raise(model, result.model, where=str(in_path), batch=batch)
    save_onnx(result.model, out_path)
    return result


def verify_or_raise(original: onnx.ModelProto, optimized: onnx.ModelProto, where: str, batch: int = 2):
    """Parity of the optimised graph with its input (ORT, graph optimisations off); refuse on drift."""
    from deploykit.optimize.verify import MAX_REL_ERR, check_parity

    try:
        parity = check_parity(original, optimized, batch=batch)
    except Exception as e:  # noqa: BLE001 - ORT refuses the model: say so on one line
        raise DeployKitError(f"{where}: could not run the model to check parity ({type(e).__name__}: {e})") from None
    if not parity.passed:
        raise GateError(
            f"{where}: optimised graph failed the parity gate (max rel err {parity.max_rel:.3g} > "
            f"{MAX_REL_ERR:g} or top-1 agreement {parity.top1_agreement:.1%} < 100%); nothing written"
        )
    return parity


from deploykit.optimize.stage import default_output, optimize_artifact  # noqa: E402

__all__ = [
    "ALL_PASSES",
    "DEFAULT_PASSES",
    "default_output",
    "optimize_artifact",
    "OptimizeResult",
    "PassReport",
    "list_passes",
    "load_onnx",
    "optimize_file",
    "optimize_model",
    "resolve_passes",
    "save_onnx",
]
