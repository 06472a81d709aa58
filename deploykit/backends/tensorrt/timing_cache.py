"""A TensorRT timing cache bound to the TensorRT version and GPU that wrote it.

TensorRT's serialized timing cache carries no version we can read without TensorRT, and a cache
from another release is at best useless. deploykit writes a small sidecar (``CACHE.meta.json``)
next to the cache holding the TensorRT version, GPU, compute capability and the cache's sha256,
so a cache from elsewhere is refused in one line before the builder ever sees it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from deploykit._io import atomic_write_bytes, atomic_write_json, sha256_file
from deploykit.errors import DeployKitError

FORMAT = "deploykit.timing-cache/1"


def sidecar_path(cache: str | os.PathLike) -> Path:
    """Where the sidecar of ``cache`` lives."""
    p = Path(cache)
    return p.with_name(p.name + ".meta.json")


@dataclass(frozen=True)
class TimingCacheMeta:
    """Who wrote a timing cache: TensorRT version, GPU name and compute capability."""

    tensorrt: str
    gpu: str
    compute_capability: str


def read_timing_cache(cache: str | os.PathLike, expect: TimingCacheMeta) -> bytes | None:
    """The cache's bytes when it exists and was written for ``expect``; None when absent (created later)."""
    path = Path(cache)
    if not path.exists():
        return None
    if not path.is_file():
        raise DeployKitError(f"{path}: timing cache is not a file")
    side = sidecar_path(path)
    fix = f"delete it (and {side.name}) or pass another --timing-cache path"
    if not side.is_file():
        raise DeployKitError(f"{path}: timing cache has no {side.name} saying which TensorRT wrote it; {fix}")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("not a deploykit timing-cache sidecar")
    except (ValueError, UnicodeDecodeError) as e:
        raise DeployKitError(f"{side}: unreadable timing-cache sidecar ({e}); {fix}") from None
    if str(meta.get("tensorrt")) != expect.tensorrt:
        raise DeployKitError(
            f"{path}: timing cache was made by TensorRT {meta.get('tensorrt')} and TensorRT "
            f"{expect.tensorrt} is running; {fix}"
        )
    if str(meta.get("compute_capability")) != expect.compute_capability:
        raise DeployKitError(
            f"{path}: timing cache was made on {meta.get('gpu')} (sm {meta.get('compute_capability')}) "
            f"and this GPU is {expect.gpu} (sm {expect.compute_capability}); {fix}"
        )
    if sha256_file(path) != meta.get("sha256"):
        raise DeployKitError(
            f"{path}: timing cache does not match the sha256 in {side.name} (changed or truncated); {fix}"
        )
    return path.read_bytes()


def write_timing_cache(cache: str | os.PathLike, data: bytes, meta: TimingCacheMeta) -> Path:
    """Write the cache and its sidecar atomically (the sidecar last, so it never vouches for old bytes)."""
    path = Path(cache)
    side = sidecar_path(path)
    if side.exists():
        side.unlink()  # a crash between the two writes leaves a cache that is refused, never a wrong one
    atomic_write_bytes(path, bytes(data))
    atomic_write_json(
        side,
        {
            "format": FORMAT,
            "tensorrt": meta.tensorrt,
            "gpu": meta.gpu,
            "compute_capability": meta.compute_capability,
            "sha256": sha256_file(path),
        },
    )
    return path


__all__ = ["TimingCacheMeta", "read_timing_cache", "sidecar_path", "write_timing_cache"]
