"""The single source of which models exist: builders registered by name, with data configs."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: how to build it and how to feed it."""

    name: str
    family: str
    builder: Builder
    data_config: DataConfig
    aliases: tuple[str, ...] = ()
    # State-dict prefixes of heads that exist only in training (Inception aux classifiers):
    # a checkpoint may carry them even when the model is built without them.
    auxiliary_prefixes: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    family: str,
    data_config: DataConfig | None = None,
    aliases: tuple[str, ...] = (),
    auxiliary_prefixes: tuple[str, ...] = (),
) -> Callable[[Builder], Builder]:
    """Register a builder under its function name; a duplicate name or alias is refused."""

    def decorate(fn: Builder) -> Builder:
        name = fn.__name__
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"model name '{key}' is already registered")
        _REGISTRY[name] = ModelSpec(
            name=name,
            family=family,
            builder=fn,
            data_config=data_config or DataConfig(),
            aliases=tuple(aliases),
            auxiliary_prefixes=tuple(auxiliary_prefixes),
        )
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return decorate


def _ensure_loaded() -> None:
    # Importing the family modules runs their @register_model decorators.
    from deploykit.models import densenet, inception, resnet  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Registered model names (sorted), optionally for one family."""
    _ensure_loaded()
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def list_families() -> list[str]:
    """Registered family names."""
    _ensure_loaded()
    return sorted({s.family for s in _REGISTRY.values()})


def looks_like_model_name(target: object) -> bool:
    """A string that names a model rather than a file: no path separator, no suffix, nothing on disk.

    The one test every command uses; a misspelt name still counts, so the registry can answer
    with the closest names instead of "file not found".
    """
    import os
    from pathlib import Path

    if not isinstance(target, str) or not target:
        return False
    p = Path(target)
    return not p.exists() and not p.suffix and "/" not in target and os.sep not in target


def resolve_name(name: str) -> str:
    """Canonical name for a name or alias; an unknown name suggests the close ones."""
    _ensure_loaded()
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    candidates = sorted({*_REGISTRY, *_ALIASES})
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run 'deploykit list' to see them"
    raise DeployKitError(f"unknown model '{name}'{hint}")


def get_spec(name: str) -> ModelSpec:
    """The registered spec for a name or alias."""
    return _REGISTRY[resolve_name(name)]


def create_model(
    name: str,
    num_classes: int | None = None,
    data_config: DataConfig | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; it carries ``model.data_config`` and ``model.model_name``.

    ``num_classes`` overrides the data config's class count; ``data_config`` replaces the
    default one (for a fine-tuned checkpoint with its own input size or normalisation).
    """
    spec = get_spec(name)
    cfg = data_config or spec.data_config
    if num_classes is not None and num_classes != cfg.num_classes:
        cfg = cfg.replace(num_classes=num_classes)
    model = spec.builder(num_classes=cfg.num_classes, **kwargs)
    model.data_config = cfg
    model.model_name = spec.name
    return model
