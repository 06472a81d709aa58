"""Fixtures for the optimiser tests; the helpers themselves live in graphs.py."""

from __future__ import annotations

import pytest

from .graphs import Checker


@pytest.fixture
def check() -> Checker:
    return Checker()
