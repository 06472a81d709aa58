"""Dataset specs such as ``fashion-mnist:test[:500]`` or a folder path, the same in every command."""

from __future__ import annotations

import re
from pathlib import Path

from deploykit.data.datasets import Dataset, ImageFolderDataset, Subset, fashion_mnist
from deploykit.errors import DeployKitError

ACCEPTED_FORMS = (
    "fashion-mnist:train, fashion-mnist:test, either with a slice such as [:500], [1000:2000] "
    "or [::10], or a path to an image folder (one subfolder per class, optionally sliced too)"
)
_SLICE = re.compile(r"^(?P<base>.*?)\[(?P<body>[^\[\]]*)\]$")
_BUILTIN = re.compile(r"^(?P<name>[a-z0-9_-]+):(?P<split>[a-z0-9_-]+)$")


def parse_slice(text: str, spec: str) -> slice:
    """'a:b:c' (each part optional, step positive) → slice; anything else names the spec."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise DeployKitError(f"dataset spec '{spec}': slice [{text}] must look like [start:stop] or [start:stop:step]")
    try:
        values = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise DeployKitError(f"dataset spec '{spec}': slice [{text}] must hold integers") from None
    step = values[2] if len(values) == 3 else None
    if step is not None and step < 1:
        raise DeployKitError(f"dataset spec '{spec}': slice step {step} must be a positive integer")
    return slice(values[0], values[1], step)


def open_dataset(spec: str) -> Dataset:
    """Open a dataset from its spec; the returned dataset's ``name`` is the spec itself."""
    if not isinstance(spec, str) or not spec.strip():
        raise DeployKitError(f"empty dataset spec; expected {ACCEPTED_FORMS}")
    spec = spec.strip()
    base_text, sl = spec, None
    if not Path(spec).is_dir():
        m = _SLICE.match(spec)
        if m:
            base_text, sl = m.group("base"), parse_slice(m.group("body"), spec)
    base = _open_base(base_text, spec)
    if sl is None:
        base.name = spec
        return base
    sub = Subset(base, sl, name=spec)
    if len(sub) == 0:
        raise DeployKitError(f"dataset spec '{spec}' selects no items (the dataset has {len(base)})")
    return sub


def _open_base(text: str, spec: str) -> Dataset:
    m = _BUILTIN.match(text.lower())
    if m and m.group("name") in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        split = {"t10k": "test", "val": "test"}.get(m.group("split"), m.group("split"))
        if split not in ("train", "test"):
            raise DeployKitError(
                f"dataset spec '{spec}': Fashion-MNIST has splits 'train' and 'test', not '{m.group('split')}'"
            )
        return fashion_mnist(split)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderDataset(path, name=text)
    if path.exists():
        raise DeployKitError(f"dataset spec '{spec}': {path} is a file, not an image folder")
    raise DeployKitError(f"unknown dataset '{spec}': expected {ACCEPTED_FORMS}")
