"""Contract with NVIDIA's real TensorRT bindings, newest 10.x and 11.x, one subprocess per version.

Each run imports that version's ``tensorrt-cu12-bindings`` over stub libraries (no TensorRT, no
GPU; see tensorrt_contract/bindings.py) and drives deploykit's builder, runner, guard and timing
cache against strict stand-ins specced from the real classes: every attribute, enum member and
call must exist, with arguments the signature takes, in that version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorrt_contract.bindings import VERSIONS, subprocess_env

HERE = Path(__file__).parent


@pytest.mark.parametrize("version", VERSIONS)
def test_contract(version):
    try:
        env = subprocess_env(version)
    except (subprocess.CalledProcessError, OSError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        if os.environ.get("CI"):
            pytest.fail(f"could not fetch tensorrt-cu12-bindings=={version}: {detail.strip()[-300:]}")
        pytest.skip(f"tensorrt-cu12-bindings=={version} could not be fetched here: {detail.strip()[-200:]}")
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
           str(HERE / "tensorrt_contract")]  # fmt: skip
    run = subprocess.run(cmd, env=env, cwd=HERE.parent.parent, capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"TensorRT {version} contract failed:\n{out[-6000:]}"
    assert " passed" in out and " skipped" not in out.splitlines()[-1], out[-2000:]
