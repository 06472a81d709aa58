"""The package reads as the pipeline: every stage imports only stages at or below its own level.

Function-level imports count too, so a cycle cannot hide behind one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import deploykit

# Ground first; runtime/serve and the CLI on top (see the package map in the README).
LEVELS = {
    "errors": 0, "_io": 0, "machine": 0, "progress": 0,
    "data": 1, "models": 1, "artifact": 1, "parity": 1,
    "onnx_io": 2,
    "backends": 3,
    "export": 4, "optimize": 4, "quantize": 4, "build": 4, "reference": 4,
    "harness": 5,
    "runtime": 6, "serve": 6,
    "cli": 7,
    "__init__": 8, "__main__": 8,
}
ROOT = Path(deploykit.__file__).parent


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deploykit."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("deploykit."))
    return out


def test_every_top_level_module_has_a_level():
    names = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert names <= set(LEVELS), f"give these a level: {sorted(names - set(LEVELS))}"


def test_no_stage_imports_a_higher_one():
    upward = []
    for path in ROOT.rglob("*.py"):
        stage = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for target in _imports(path):
            if target != stage and LEVELS.get(target, 99) > LEVELS.get(stage, -1):
                upward.append(f"{path.relative_to(ROOT)} imports deploykit.{target}")
    assert not upward, "; ".join(sorted(upward))
