"""Fixtures of the hostile-input suite: a previous artifact that a refused command must not touch."""

from __future__ import annotations

import pytest
from tiny_models import tiny_artifact

from .helpers import snapshot


@pytest.fixture
def previous(tmp_path):
    """(path, snapshot) of an existing artifact at the output location of the command under test."""
    out = tmp_path / "out"
    tiny_artifact(out)
    return out, snapshot(out)
