"""Stand-ins for TensorRT's builder and for the machine, so the engine stage runs without a GPU.

The engine artifacts these make are written by the real ``build_engine_artifact`` (manifest,
engine record, hashes); only the serialized plan is a few placeholder bytes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deploykit.backends.tensorrt.builder import BuiltEngine, EngineOptions
from deploykit.backends.tensorrt.guard import RunningEnv
from deploykit.build import Serializer, build_engine_artifact

BUILT_ON = RunningEnv("10.3.0", "NVIDIA L4", "8.9")
BUILDING = "[I] fake builder: building"  # logged to build.log before the (fake) build starts


def fake_serializer(
    plan: bytes = b"placeholder plan bytes", delay: float = 0.0, fail: Exception | None = None
) -> Serializer:
    """A serializer that logs like TensorRT's, optionally waits or fails midway, and returns ``plan``."""

    def serialize(onnx_path: Any, options: EngineOptions, *, timing_cache=None, log_file=None, progress=None):
        if log_file is not None:
            with open(log_file, "a", encoding="utf-8") as fh:
                fh.write(BUILDING + "\n")
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:  # short sleeps, so a signal is handled promptly
            time.sleep(0.05)
        if fail is not None:
            raise fail
        shapes = [[b, 3, 8, 8] for b in (options.min_batch, options.opt_batch, options.max_batch)]
        return BuiltEngine(plan=plan, timing_cache=None, seconds=0.01, inputs={"input": shapes})

    return serialize


def fake_engine(
    parent: Path, out: Path, env: RunningEnv = BUILT_ON, plan: bytes = b"placeholder plan bytes", **options: Any
):
    """An engine artifact as ``deploykit build`` commits it on ``env`` (placeholder plan bytes)."""
    result = build_engine_artifact(
        parent, precision="fp16", batch="1:4:8", out=out, running=env, serialize=fake_serializer(plan), **options
    )
    return result.artifact


def main() -> None:
    """``deploykit`` with the fake builder (which waits 120 s) on BUILT_ON: a build to interrupt."""
    import deploykit.backends.tensorrt.guard as guard
    import deploykit.build as build
    from deploykit.cli import main as cli_main

    build.tensorrt_serializer = lambda: fake_serializer(b"slow plan", delay=120)
    guard.running_env = lambda *a, **k: BUILT_ON
    cli_main()
