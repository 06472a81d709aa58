"""Timing caches are bound to the TensorRT version and GPU that wrote them by a sidecar."""

from __future__ import annotations

import json

import pytest

from deploykit.backends.tensorrt.timing_cache import (
    TimingCacheMeta,
    read_timing_cache,
    sidecar_path,
    write_timing_cache,
)
from deploykit.errors import DeployKitError

HERE = TimingCacheMeta("10.3.0", "NVIDIA L4", "8.9")


def test_absent_cache_is_created_later(tmp_path):
    assert read_timing_cache(tmp_path / "t.cache", HERE) is None


def test_round_trip(tmp_path):
    path = write_timing_cache(tmp_path / "t.cache", b"\x01\x02cache", HERE)
    side = json.loads(sidecar_path(path).read_text())
    assert side["tensorrt"] == "10.3.0" and side["compute_capability"] == "8.9"
    assert read_timing_cache(path, HERE) == b"\x01\x02cache"


def test_cache_from_another_tensorrt_is_refused(tmp_path):
    path = write_timing_cache(tmp_path / "t.cache", b"abc", TimingCacheMeta("10.1.0", "NVIDIA L4", "8.9"))
    with pytest.raises(DeployKitError) as e:
        read_timing_cache(path, HERE)
    msg = str(e.value)
    assert msg.startswith(f"{path}: timing cache was made by TensorRT 10.1.0 and TensorRT 10.3.0 is running")
    assert "pass another --timing-cache path" in msg and "\n" not in msg


def test_cache_from_another_gpu_is_refused(tmp_path):
    path = write_timing_cache(tmp_path / "t.cache", b"abc", TimingCacheMeta("10.3.0", "NVIDIA A100", "8.0"))
    with pytest.raises(DeployKitError, match=r"made on NVIDIA A100 \(sm 8.0\) and this GPU is NVIDIA L4 \(sm 8.9\)"):
        read_timing_cache(path, HERE)


def test_cache_without_sidecar_or_tampered(tmp_path):
    bare = tmp_path / "bare.cache"
    bare.write_bytes(b"abc")
    with pytest.raises(DeployKitError, match="has no bare.cache.meta.json saying which TensorRT wrote it"):
        read_timing_cache(bare, HERE)
    path = write_timing_cache(tmp_path / "t.cache", b"abc", HERE)
    path.write_bytes(b"abd")
    with pytest.raises(DeployKitError, match="does not match the sha256"):
        read_timing_cache(path, HERE)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(DeployKitError, match="unreadable timing-cache sidecar"):
        read_timing_cache(path, HERE)
    (tmp_path / "dir.cache").mkdir()
    with pytest.raises(DeployKitError, match="timing cache is not a file"):
        read_timing_cache(tmp_path / "dir.cache", HERE)
