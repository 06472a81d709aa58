"""Calibration recipes: per-family defaults (method, image count, layers kept, gate) in TOML."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError

RECIPE_DIR = Path(__file__).resolve().parents[2] / "calibration" / "recipes"
FAMILY_RECIPES = {"resnet": "resnet", "resnext": "resnext", "densenet": "densenet",
                  "googlenet": "googlenet", "inception": "inception", "inception_v3": "inception"}


@dataclass(frozen=True)
class Recipe:
    """Everything a quantisation run needs besides the data."""

    name: str = "default"
    method: str = "entropy"
    percentile: float = 99.99
    num_images: int = 512
    batch: int = 32
    min_images: int = 32
    per_channel: bool = True
    keep_fp32: tuple[str, ...] = field(default_factory=tuple)
    gate: float = 0.995
    max_fallbacks: int = 10

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keep_fp32"] = list(self.keep_fp32)
        return d


def _check(r: Recipe, where: str) -> Recipe:
    from deploykit.quantize.calibrators import METHODS

    if r.method not in METHODS + ("auto",):
        raise DeployKitError(f"{where}: method '{r.method}' is not one of {', '.join(METHODS + ('auto',))}")
    if r.num_images < 1 or r.batch < 1 or r.min_images < 1:
        raise DeployKitError(f"{where}: num_images, batch and min_images must be positive")
    if not 0 < r.gate <= 1:
        raise DeployKitError(f"{where}: gate accuracy {r.gate} must be in (0, 1]")
    if r.max_fallbacks < 0:
        raise DeployKitError(f"{where}: max_fallbacks must not be negative")
    return r


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe by family name (``resnet``) or from a TOML file; unknown keys are errors."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = RECIPE_DIR / f"{FAMILY_RECIPES.get(str(name_or_path), str(name_or_path))}.toml"
    if not p.is_file():
        known = ", ".join(sorted(x.stem for x in RECIPE_DIR.glob("*.toml"))) or "none installed"
        raise DeployKitError(f"recipe '{name_or_path}' not found (a .toml file or one of: {known})")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DeployKitError(f"{p}: not valid TOML ({e})") from None
    flat: dict[str, Any] = {}
    sections = {"calibration": None, "quantization": None, "gate": {"accuracy": "gate"}}
    for sec, body in raw.items():
        if sec not in sections or not isinstance(body, dict):
            raise DeployKitError(f"{p}: unknown section [{sec}] (expected calibration, quantization, gate)")
        for k, v in body.items():
            flat[(sections[sec] or {}).get(k, k)] = v
    fields = set(Recipe.__dataclass_fields__) - {"name"}
    unknown = set(flat) - fields
    if unknown:
        raise DeployKitError(f"{p}: unknown keys {', '.join(sorted(unknown))}")
    for key, value in flat.items():
        want = _TYPES[key]
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
        if key == "keep_fp32":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not ok:
            kind = "a list of strings" if key == "keep_fp32" else _TYPE_NAMES[want]
            raise DeployKitError(f"{p}: '{key}' must be {kind}, got {value!r:.60}")
    if "keep_fp32" in flat:
        flat["keep_fp32"] = tuple(flat["keep_fp32"])
    for key in ("percentile", "gate"):
        if key in flat:
            flat[key] = float(flat[key])
    rec = Recipe(name=p.stem, **flat)
    if not 0 < rec.percentile <= 100:
        raise DeployKitError(f"{p}: percentile {rec.percentile} must be in (0, 100]")
    return _check(rec, str(p))


_TYPES: dict[str, Any] = {"method": str, "percentile": (int, float), "num_images": int, "batch": int,
                          "min_images": int, "per_channel": bool, "keep_fp32": list, "gate": (int, float),
                          "max_fallbacks": int}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", (int, float): "a number"}


def recipe_for(model: str, family: str) -> Recipe:
    """The recipe shipped for this model (googlenet) or its family (resnet...), else the defaults."""
    for key in (model, model.rstrip("0123456789_x"), family):
        name = FAMILY_RECIPES.get(key)
        if name and (RECIPE_DIR / f"{name}.toml").is_file():
            return load_recipe(name)
    return Recipe()
