"""Interrupted work loses nothing: a signal or a failing write midway leaves the previous artifact
byte-for-byte intact and no partial one anywhere; --force swaps directories atomically. The engine
stage runs with fake_trt's stand-in for TensorRT's builder, so it is interrupted here without a GPU."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tiny_models import tiny_artifact

import deploykit.artifact as artifact_mod
from deploykit.artifact import Artifact

from .fake_trt import BUILDING, BUILT_ON, fake_engine, fake_serializer
from .helpers import assert_untouched, leftovers, snapshot

REPO = Path(__file__).resolve().parents[2]
EXPORT = ["export", "resnet18", "--num-classes", "10", "--input-size", "32", "-q", "--force"]


CLI_MAIN = "from deploykit.cli import main; main()"


def _interrupt(args: list[str], ready, sig: int, tmp_path: Path, entry: str = CLI_MAIN) -> int:
    """Run the CLI entry point in a subprocess; send ``sig`` once ``ready()``; return its exit status."""
    path = os.pathsep.join(p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}  # tests/ for the fake TensorRT
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", entry, *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
        deadline = time.monotonic() + 120
        while not ready(err) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, f"finished before it could be interrupted: {err.read_text()}"
        proc.send_signal(sig)
        rc = proc.wait(timeout=180)  # a signal unwinds after the ORT call in flight returns: slow on a busy machine
    assert "Traceback" not in err.read_text(), err.read_text()
    return rc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_export_interrupted_by_a_signal(tmp_path, previous, sig):
    out, before = previous

    def writing(_err: Path) -> bool:  # the stage's temporary directory holds the exported ONNX
        return any(any(d.iterdir()) for d in out.parent.glob(f".{out.name}.tmp-*"))

    rc = _interrupt([*EXPORT, "--out", str(out)], writing, sig, tmp_path)
    assert rc != 0
    assert_untouched(out, before)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_quantize_interrupted_by_a_signal(tmp_path, previous, sig):
    out, before = previous
    src = tiny_artifact(tmp_path / "fp32").path
    src_before = snapshot(src)
    args = [
        "quantize",
        str(src),
        "--calib",
        "fashion-mnist:train[:3000]",
        "--val",
        "fashion-mnist:test[:3000]",
        "--num-images",
        "3000",
        "--method",
        "auto",
        "--gate",
        "0.01",
        "--out",
        str(out),
        "--force",
    ]
    rc = _interrupt(args, lambda err: "calibrat" in err.read_text() or "statistics" in err.read_text(), sig, tmp_path)
    assert rc != 0
    assert_untouched(out, before)
    assert_untouched(src, src_before)


def _disk_full(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_export_failing_at_the_write(tmp_path, previous, monkeypatch):
    from deploykit.export.api import export_model

    out, before = previous
    monkeypatch.setattr(artifact_mod, "atomic_write_json", _disk_full)  # the manifest, written last
    with pytest.raises(OSError, match="No space left"):
        export_model(
            "resnet18",
            num_classes=10,
            overrides={"image_size": (32, 32)},
            out=out,
            force=True,
            optimize=False,
            progress=False,
        )
    assert_untouched(out, before)


def test_quantize_failing_at_the_swap(tmp_path, previous, monkeypatch):
    from deploykit.quantize import quantize_artifact

    out, before = previous
    src = tiny_artifact(tmp_path / "fp32").path
    monkeypatch.setattr(artifact_mod, "exchange_paths", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        quantize_artifact(
            src,
            "fashion-mnist:train[:64]",
            "fashion-mnist:test[:64]",
            method="max",
            gate=0.01,
            num_images=64,
            out=out,
            force=True,
            progress=False,
        )
    assert_untouched(out, before)


def test_force_never_leaves_the_path_empty(tmp_path):
    """A reader polling the artifact while it is replaced 30 times always finds a complete one."""
    out = tmp_path / "art"
    tiny_artifact(out)
    missing: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not (out / "manifest.json").is_file() or not (out / "model.onnx").is_file():
                missing.append(1)

    t = threading.Thread(target=watch)
    t.start()
    try:
        for i in range(30):
            with artifact_mod.ArtifactWriter(out, force=True) as w:
                (w.dir / "model.onnx").write_bytes((out / "model.onnx").read_bytes())
                m = Artifact.load(out).manifest
                m.results["round"] = i
                w.commit(m)
    finally:
        stop.set()
        t.join()
    assert Artifact.load(out).manifest.results["round"] == 29
    assert missing == [] or not _exchange_supported(tmp_path)
    assert leftovers(out) == []


def _exchange_supported(tmp: Path) -> bool:
    (tmp / "x1").mkdir()
    (tmp / "x2").mkdir()
    return artifact_mod.exchange_paths(tmp / "x1", tmp / "x2")


def test_exchange_swaps_two_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "who").write_text("a")
    (b / "who").write_text("b")
    if not artifact_mod.exchange_paths(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available on this system or filesystem")
    assert (a / "who").read_text() == "b" and (b / "who").read_text() == "a"


def test_fallback_without_exchange_restores_the_old_artifact(tmp_path, monkeypatch):
    """Without RENAME_EXCHANGE the old directory is moved aside; a failed move-in puts it back."""
    out = tmp_path / "art"
    tiny_artifact(out)
    before = snapshot(out)
    monkeypatch.setattr(artifact_mod, "exchange_paths", lambda a, b: False)
    real_rename = os.rename
    calls: list[tuple[str, str]] = []

    def flaky_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the move of the new directory into place
            raise OSError(errno.EIO, "I/O error")
        return real_rename(src, dst)

    monkeypatch.setattr(artifact_mod.os, "rename", flaky_rename)
    with pytest.raises(OSError, match="I/O error"):
        with artifact_mod.ArtifactWriter(out, force=True) as w:
            (w.dir / "model.onnx").write_bytes(b"new")
            w.commit(Artifact.load(out).manifest)
    monkeypatch.setattr(artifact_mod.os, "rename", real_rename)
    assert_untouched(out, before)
    # and without the failure, the fallback replaces the artifact completely
    with artifact_mod.ArtifactWriter(out, force=True) as w:
        (w.dir / "model.onnx").write_bytes((out / "model.onnx").read_bytes())
        m = Artifact.load(out).manifest
        m.results["replaced"] = True
        w.commit(m)
    assert Artifact.load(out).manifest.results["replaced"] is True
    assert leftovers(out) == []


# -- the engine stage (TensorRT's builder replaced by fake_trt's, which logs, waits or fails) -----


@pytest.fixture
def previous_engine(tmp_path):
    """(ONNX parent, engine artifact at the output, its snapshot): what a --force rebuild would replace."""
    src = tiny_artifact(tmp_path / "onnx").path
    out = fake_engine(src, tmp_path / "engine", plan=b"previous plan").path
    return src, out, snapshot(out)


@pytest.mark.parametrize("where", ["builder", "manifest write", "swap"])
def test_engine_build_failing_midway(tmp_path, previous_engine, monkeypatch, where):
    from deploykit.build import build_engine_artifact

    src, out, before = previous_engine
    serialize = fake_serializer(b"new plan", fail=RuntimeError("builder crashed") if where == "builder" else None)
    if where == "manifest write":
        monkeypatch.setattr(artifact_mod, "atomic_write_json", _disk_full)
    elif where == "swap":
        monkeypatch.setattr(artifact_mod, "exchange_paths", _disk_full)
    with pytest.raises((RuntimeError, OSError), match="builder crashed|No space left"):
        build_engine_artifact(src, batch="1:4:8", out=out, force=True, running=BUILT_ON, serialize=serialize)
    assert_untouched(out, before)
    assert Artifact.load(out).main_path.read_bytes() == b"previous plan"


def test_engine_force_rebuild_replaces_the_whole_artifact(tmp_path, previous_engine):
    src, out, before = previous_engine
    rebuilt = fake_engine(src, out, plan=b"new plan", force=True)
    assert rebuilt.path == out and Artifact.load(out).main_path.read_bytes() == b"new plan"
    after = snapshot(out)
    # fp16 of the FP32 tiny artifact: the engine keeps the FP16 ONNX it was converted to and built from
    assert sorted(after) == sorted(before) == ["build.log", "manifest.json", "model-fp16.onnx", "model.plan"]
    assert after["manifest.json"] != before["manifest.json"]  # the new build's record, not a mix
    assert leftovers(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_engine_build_interrupted_by_a_signal(tmp_path, previous_engine, sig):
    src, out, before = previous_engine

    def building(_err: Path) -> bool:  # the fake builder has logged into the stage's temporary directory
        return any(
            (d / "build.log").is_file() and BUILDING in (d / "build.log").read_text()
            for d in out.parent.glob(f".{out.name}.tmp-*")
        )

    args = ["build", str(src), "--batch", "1:4:8", "--out", str(out), "--force"]
    rc = _interrupt(args, building, sig, tmp_path, entry="from hostile.fake_trt import main; main()")
    assert rc == 128 + sig
    assert_untouched(out, before)


def test_no_commit_after_a_stop_that_library_code_swallowed(tmp_path, previous, monkeypatch):
    """A SIGINT/SIGTERM whose unwinding some library caught and turned into its own, handled error
    still stops the stage at its commit: the previous artifact stays and nothing is left beside it."""
    import deploykit._io as io_mod
    from deploykit.export.api import export_model

    out, before = previous
    monkeypatch.setattr(io_mod, "_stop_signal", None)
    io_mod.note_stop(signal.SIGTERM)  # the handler ran; the exception it raised was swallowed
    with pytest.raises(SystemExit) as e:
        export_model(
            "resnet18",
            num_classes=10,
            overrides={"image_size": (32, 32)},
            out=out,
            force=True,
            optimize=False,
            progress=False,
        )
    assert e.value.code == 128 + signal.SIGTERM
    assert_untouched(out, before)
