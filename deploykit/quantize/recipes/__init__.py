"""Calibration recipes: per-family defaults (method, image count, layers kept, gate) in TOML.

The shipped recipes are package data beside this module (read with ``importlib.resources``), so
a wheel install behaves like a checkout. A recipe *name* (``resnet``) only ever means a shipped
recipe; a recipe *file* is a path ending in ``.toml``: the two are never confused with each other
or with an artifact folder of the same name.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError

FAMILY_RECIPES = {
    "resnet": "resnet",
    "resnext": "resnext",
    "densenet": "densenet",
    "googlenet": "googlenet",
    "inception": "inception",
    "inception_v3": "inception",
}


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


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped inside the package."""
    return sorted(f.name[:-5] for f in resources.files(__name__).iterdir() if f.name.endswith(".toml"))


def _shipped_text(name: str) -> str:
    res = resources.files(__name__) / f"{name}.toml"
    if not res.is_file():
        raise DeployKitError(
            f"recipe '{name}' is not shipped with deploykit (one of: "
            f"{', '.join(shipped_recipes()) or 'none: the package is incomplete, reinstall it'}); "
            "a recipe file must be a path ending in .toml"
        )
    return res.read_text(encoding="utf-8")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name (``resnet``, or a family/model that maps to one) or a ``.toml`` file."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        p = Path(name_or_path)
        if p.suffix != ".toml":
            raise DeployKitError(f"{p}: a recipe file must end in .toml")
        if not p.is_file():
            raise DeployKitError(f"{p}: recipe file not found")
        try:
            body = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DeployKitError(f"{p}: cannot read the recipe ({e})") from None
        return parse_recipe(body, where=str(p), name=p.stem)
    name = FAMILY_RECIPES.get(text, text)
    return parse_recipe(_shipped_text(name), where=f"recipe '{name}'", name=name)


def parse_recipe(body: str, where: str, name: str = "custom") -> Recipe:
    """A Recipe from TOML text; unknown sections or keys and out-of-range values are errors."""
    try:
        raw = tomllib.loads(body)
    except tomllib.TOMLDecodeError as e:
        raise DeployKitError(f"{where}: not valid TOML ({e})") from None
    flat: dict[str, Any] = {}
    sections = {"calibration": None, "quantization": None, "gate": {"accuracy": "gate"}}
    for sec, sec_body in raw.items():
        if sec not in sections or not isinstance(sec_body, dict):
            raise DeployKitError(f"{where}: unknown section [{sec}] (expected calibration, quantization, gate)")
        for k, v in sec_body.items():
            flat[(sections[sec] or {}).get(k, k)] = v
    fields = set(Recipe.__dataclass_fields__) - {"name"}
    unknown = set(flat) - fields
    if unknown:
        raise DeployKitError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    for key, value in flat.items():
        want = _TYPES[key]
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
        if key == "keep_fp32":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not ok:
            kind = "a list of strings" if key == "keep_fp32" else _TYPE_NAMES[want]
            raise DeployKitError(f"{where}: '{key}' must be {kind}, got {value!r:.60}")
    if "keep_fp32" in flat:
        flat["keep_fp32"] = tuple(flat["keep_fp32"])
    for key in ("percentile", "gate"):
        if key in flat:
            flat[key] = float(flat[key])
    rec = Recipe(name=name, **flat)
    if not 0 < rec.percentile <= 100:
        raise DeployKitError(f"{where}: percentile {rec.percentile} must be in (0, 100]")
    return _check(rec, where)


_TYPES: dict[str, Any] = {
    "method": str,
    "percentile": (int, float),
    "num_images": int,
    "batch": int,
    "min_images": int,
    "per_channel": bool,
    "keep_fp32": list,
    "gate": (int, float),
    "max_fallbacks": int,
}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", (int, float): "a number"}


def recipe_for(model: str, family: str) -> Recipe:
    """The recipe shipped for this model (googlenet) or its family (resnet...).

    A family that maps to a recipe must find it: a missing one means a broken install, and
    silently falling back to the defaults would lose the method chosen for that family.
    """
    model, family = model.lower(), family.lower()  # a user-given family ("ResNet") finds its recipe
    for key in (model, model.rstrip("0123456789_x"), family):
        if key in FAMILY_RECIPES:
            return load_recipe(FAMILY_RECIPES[key])
    return Recipe()
