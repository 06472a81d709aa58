"""The package reads as the pipeline: every stage imports only stages at or below its own level.

Function-level imports count too, so a cycle cannot hide behind one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import deploykit

# Ground first; runtime/serve and the CLI on top (see the package map in the README).
LEVELS = {
    "errors": 0,
    "_io": 0,
    "machine": 0,
    "progress": 0,
    "onnx_io": 1,  # needs only errors (and onnx / onnxruntime, imported lazily)
    "openvino_io": 1,  # errors and machine (openvino imported lazily); beside onnx_io, same role
    "data": 2,
    "models": 2,
    "artifact": 2,
    "parity": 2,
    "backends": 3,
    # The harness's measuring primitives sit just above the backends they time, so a stage may
    # measure (quantize's INT8 speed check) without reaching up into the harness's orchestration.
    "harness.bench": 3.5,
    "harness.significance": 3.5,
    "export": 4,
    "optimize": 4,
    "quantize": 4,
    "build": 4,
    "reference": 4,
    "harness": 5,
    "runtime": 6,
    "serve": 6,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}
ROOT = Path(deploykit.__file__).parent


def _unit(dotted: str) -> str:
    """The level-bearing unit of a module path below deploykit: "harness.bench" or "harness"."""
    parts = dotted.split(".")
    two = ".".join(parts[:2])
    return two if two in LEVELS else parts[0]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deploykit."):
            out.add(_unit(node.module.removeprefix("deploykit.")))
        elif isinstance(node, ast.Import):
            out.update(_unit(a.name.removeprefix("deploykit.")) for a in node.names if a.name.startswith("deploykit."))
    return out


def test_every_top_level_module_has_a_level():
    names = {
        p.stem if p.is_file() else p.name
        for p in ROOT.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    }
    assert names <= set(LEVELS), f"give these a level: {sorted(names - set(LEVELS))}"


def test_no_stage_imports_a_higher_one():
    upward = []
    for path in ROOT.rglob("*.py"):
        stage = _unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for target in _imports(path):
            if target != stage and LEVELS.get(target, 99) > LEVELS.get(stage, -1):
                upward.append(f"{path.relative_to(ROOT)} imports deploykit.{target}")
    assert not upward, "; ".join(sorted(upward))
