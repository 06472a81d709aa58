"""The frozen data config every stage reads, so preprocessing is never guessed."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class DataConfig:
    """How to feed a model: input size (C, H, W), normalisation, resize/crop and labels."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    num_classes: int = 1000
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        c, h, w = self.input_size
        if c not in (1, 3) or h < 1 or w < 1:
            raise DeployKitError(f"input size {self.input_size} is invalid: expected (1|3, H, W)")
        if len(self.mean) != c or len(self.std) != c:
            raise DeployKitError(f"mean {self.mean} and std {self.std} need {c} values each (one per channel)")
        if any(s <= 0 for s in self.std):
            raise DeployKitError(f"std {self.std} must be positive")
        if self.interpolation not in INTERPOLATIONS:
            raise DeployKitError(f"interpolation '{self.interpolation}' is not one of {', '.join(INTERPOLATIONS)}")
        if not 0 < self.crop_pct <= 1:
            raise DeployKitError(f"crop fraction {self.crop_pct} must be in (0, 1]")
        if self.num_classes < 1:
            raise DeployKitError(f"number of classes {self.num_classes} must be at least 1")
        if self.labels is not None and len(self.labels) != self.num_classes:
            raise DeployKitError(f"{len(self.labels)} labels given for {self.num_classes} classes")

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the network input."""
        return self.input_size[1], self.input_size[2]

    def replace(self, **changes: Any) -> DataConfig:
        """A copy with some fields changed (labels reset when num_classes changes)."""
        if "num_classes" in changes and "labels" not in changes:
            if self.labels is not None and changes["num_classes"] != self.num_classes:
                changes["labels"] = None
        return dataclasses.replace(self, **_normalise(changes))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos never pass silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise DeployKitError(f"data config has unknown keys: {', '.join(sorted(unknown))}")
        return cls(**_normalise(dict(d)))


def _normalise(d: dict[str, Any]) -> dict[str, Any]:
    for key in ("input_size", "mean", "std", "labels"):
        if key in d and d[key] is not None:
            d[key] = tuple(d[key])
    if "input_size" in d:
        d["input_size"] = tuple(int(v) for v in d["input_size"])
    for key in ("mean", "std"):
        if key in d:
            d[key] = tuple(float(v) for v in d[key])
    return d


def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """Class names from a text file (one per line) or a JSON list."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeployKitError(f"{p}: labels file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DeployKitError(f"{p}: cannot read labels file ({e.__class__.__name__})") from None
    if p.suffix == ".json":
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as e:
            raise DeployKitError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DeployKitError(f"{p}: expected a JSON list of class-name strings")
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise DeployKitError(f"{p}: labels file is empty")
    return tuple(labels)
