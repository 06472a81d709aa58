"""The contract suite runs in a subprocess per bindings version (tests/backends/test_tensorrt_contract.py).

There ``DK_TRT_BINDINGS`` names the version and ``tensorrt`` is NVIDIA's real bindings module over
stub libraries; in the ordinary test run every test here is skipped, since one process can import
only one version.
"""

from __future__ import annotations

import os
import sys

import pytest

from .bindings import ENV_VERSION
from .world import World

VERSION = os.environ.get(ENV_VERSION)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if VERSION:
        return
    skip = pytest.mark.skip(reason="contract test: run per TensorRT bindings version by test_tensorrt_contract.py")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_trt():
    """NVIDIA's bindings module of the version under test (names, enums and docstrings only)."""
    import tensorrt_bindings

    assert tensorrt_bindings.__version__ == VERSION, (tensorrt_bindings.__version__, VERSION)
    return tensorrt_bindings


@pytest.fixture
def world(real_trt, monkeypatch) -> World:
    """Strict stand-ins installed as the ``tensorrt`` module that deploykit imports."""
    w = World(real_trt)
    monkeypatch.setitem(sys.modules, "tensorrt", w.module)
    return w


@pytest.fixture
def trt_major(real_trt) -> int:
    return int(real_trt.__version__.split(".")[0])
