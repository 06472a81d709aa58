"""Our state dicts must equal torchvision's key for key (order and shape), so its checkpoints load.

The layouts come from ``data/torchvision_state_dicts.json.gz``, written by
``make_torchvision_fixture.py`` in a scratch environment with torchvision (not a dependency).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from deploykit.models import create_model, list_models

FIXTURE = Path(__file__).parent / "data" / "torchvision_state_dicts.json.gz"
LAYOUTS: dict = json.loads(gzip.decompress(FIXTURE.read_bytes()))["models"]


def _layout(name: str, **kwargs) -> list[list]:
    with torch.device("meta"):  # no allocation or init: shapes are all we compare
        model = create_model(name, **kwargs)
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def test_fixture_covers_every_registered_model() -> None:
    # torchvision has every architecture in the zoo, so none may be missing from the fixture.
    covered = {entry["model"] for entry in LAYOUTS.values()}
    assert set(list_models()) <= covered


@pytest.mark.parametrize("key", sorted(LAYOUTS))
def test_state_dict_matches_torchvision(key: str) -> None:
    entry = LAYOUTS[key]
    ours = _layout(entry["model"], **entry["kwargs"])
    theirs = entry["state_dict"]
    # Compare names first for a readable failure, then the full ordered (name, shape) list.
    assert [k for k, _ in ours] == [k for k, _ in theirs]
    assert ours == theirs
