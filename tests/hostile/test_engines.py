"""TensorRT engines built elsewhere: refused from the manifest's engine record, in one line naming
the file and the mismatch, before TensorRT is imported or asked to deserialise anything.

The engines are written by the real ``build_engine_artifact`` with a placeholder plan (see
fake_trt.py), and the machine they are loaded on is injected: ``running=`` for the library entry
points, ``guard.running_env`` replaced for the CLI. Every check here runs without TensorRT or a GPU.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from tiny_models import tiny_artifact

import deploykit.backends.tensorrt.guard as guard
from deploykit.backends import make_runner
from deploykit.backends.tensorrt.guard import RunningEnv
from deploykit.backends.tensorrt.runner import TensorRTRunner
from deploykit.errors import DeployKitError, MissingExtraError
from deploykit.runtime import Predictor

from .fake_trt import BUILT_ON, fake_engine
from .helpers import invoke, refused

HAS_TRT = importlib.util.find_spec("tensorrt") is not None

# case -> (build flags, the machine it is loaded on, the mismatch the one-liner names)
MISMATCHES = {
    "another TensorRT version": (
        {},
        RunningEnv("10.4.0", "NVIDIA L4", "8.9"),
        "it was built with TensorRT 10.3.0 and TensorRT 10.4.0 is running",
    ),
    "another GPU": (
        {},
        RunningEnv("10.3.0", "NVIDIA A100-SXM4-40GB", "8.0"),
        "it was built for NVIDIA L4 (sm 8.9) and this GPU is NVIDIA A100-SXM4-40GB (sm 8.0)",
    ),
    "another GPU of the same compute capability": (
        {},
        RunningEnv("10.3.0", "NVIDIA L40S", "8.9"),
        "it was built for NVIDIA L4 (sm 8.9) and this GPU is NVIDIA L40S (sm 8.9)",
    ),
    "version-compatible on an older TensorRT": (
        {"version_compatible": True},
        RunningEnv("10.2.1", "NVIDIA L4", "8.9"),
        "it is version-compatible from TensorRT 10.3.0 to later 10.x releases and 11.x, and TensorRT 10.2.1 is running",
    ),
    "version-compatible on a major NVIDIA does not support": (
        {"version_compatible": True},
        RunningEnv("12.0.0", "NVIDIA L4", "8.9"),
        "it is version-compatible from TensorRT 10.3.0 to later 10.x releases and 11.x, and TensorRT 12.0.0 is running",
    ),
    "ampere+ on a pre-Ampere GPU": (
        {"hardware_compat": "ampere+"},
        RunningEnv("10.3.0", "Tesla T4", "7.5"),
        "it is hardware-compatible with Ampere and newer GPUs (sm 8.0+), and this Tesla T4 is sm 7.5",
    ),
    "ampere+ on an integrated GPU": (
        {"hardware_compat": "ampere+"},
        RunningEnv("10.3.0", "Orin", "8.7", integrated=True),
        "it is hardware-compatible (ampere+), which TensorRT does not support on integrated GPUs (Jetson, DRIVE), "
        "and this Orin is one",
    ),
    "same-cc on another compute capability": (
        {"hardware_compat": "same-cc"},
        RunningEnv("10.3.0", "NVIDIA A10G", "8.6"),
        "it is hardware-compatible with GPUs of sm 8.9 (same-cc), and this NVIDIA A10G is sm 8.6",
    ),
}


class _Loaded(Exception):
    """TensorRT's loader was reached (raised instead of deserialising)."""


class _NoTensorRT(importlib.abc.MetaPathFinder):
    """Records, and refuses, any attempt to import or even look up the tensorrt package."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorrt":
            self.asked.append(name)
            raise ImportError(f"the test forbids importing {name} here")
        return None


@pytest.fixture
def trt(monkeypatch):
    """Watches TensorRT: ``imports`` (lookups of the tensorrt package) and ``loads`` (runner construction)."""
    finder = _NoTensorRT()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorrt"]:
        monkeypatch.delitem(sys.modules, name)
    loads: list[Path] = []

    def load(self, engine_path, *args, **kwargs):
        loads.append(Path(engine_path))
        raise _Loaded(str(engine_path))

    monkeypatch.setattr(TensorRTRunner, "__init__", load)
    watch = SimpleNamespace(imports=finder.asked, loads=loads)
    yield watch


def _engine(tmp_path: Path, **flags):
    return fake_engine(tiny_artifact(tmp_path / "onnx").path, tmp_path / "engine", **flags)


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


def _untouched(trt) -> None:
    assert trt.imports == [], f"tensorrt was looked up before the guard: {trt.imports}"
    assert trt.loads == [], f"the engine reached TensorRT's loader: {trt.loads}"


@pytest.mark.parametrize("case", list(MISMATCHES))
@pytest.mark.parametrize("entry", ["make_runner", "Predictor.from_artifact"])
def test_library_refuses_an_engine_from_elsewhere(tmp_path, trt, case, entry):
    flags, running, why = MISMATCHES[case]
    engine = _engine(tmp_path, **flags)
    with pytest.raises(DeployKitError) as e:
        if entry == "make_runner":
            make_runner(engine.path, backend="tensorrt", device="cuda", running=running)
        else:
            Predictor.from_artifact(engine.path, backend="tensorrt", running=running)
    msg = str(e.value)
    assert msg.startswith(f"{engine.path}: engine cannot run here: "), msg
    assert why in msg and "\n" not in msg
    assert f"rebuild it here with: deploykit build {(tmp_path / 'onnx').resolve()}" in msg
    _untouched(trt)


@pytest.mark.parametrize("case", list(MISMATCHES))
@pytest.mark.parametrize("command", ["predict", "validate", "bench"])
def test_cli_refuses_an_engine_from_elsewhere(tmp_path, trt, monkeypatch, case, command):
    flags, running, why = MISMATCHES[case]
    engine = _engine(tmp_path, **flags)
    monkeypatch.setattr(guard, "running_env", lambda *a, **k: running)
    args = {
        "predict": ["predict", engine.path, _image(tmp_path)],
        "validate": ["validate", engine.path, "--data", "fashion-mnist:test[:8]", "-q", "--no-record"],
        "bench": ["bench", engine.path, "--backend", "tensorrt", "--iters", "1", "--warmup", "0"],
    }[command]
    refused(invoke(*args), f"{engine.path}: engine cannot run here: {why}", "rebuild it here with: deploykit build")
    _untouched(trt)


def test_a_compatible_engine_passes_the_guard_and_only_then_meets_tensorrt(tmp_path, trt):
    """The control: the same watch sees the loader reached once the guard lets an engine through."""
    engine = _engine(tmp_path, version_compatible=True)
    later = RunningEnv("10.7.0", "NVIDIA L4", "8.9")
    with pytest.raises(_Loaded):
        make_runner(engine.path, backend="tensorrt", device="cuda", running=later)
    with pytest.raises(_Loaded):
        Predictor.from_artifact(engine.path, running=later)
    assert trt.loads == [engine.main_path, engine.main_path]


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_a_compatible_engine_without_tensorrt_names_the_extra(tmp_path):
    engine = _engine(tmp_path)
    with pytest.raises(MissingExtraError, match=r"pip install 'deploykit\[tensorrt\]'"):
        make_runner(engine.path, backend="tensorrt", device="cuda", running=BUILT_ON)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_no_tensorrt_here_names_the_engine_and_what_it_was_built_with(tmp_path):
    """Nothing injected on a machine without TensorRT: one line with the file, its build and the extra."""
    engine = _engine(tmp_path, hardware_compat="ampere+")
    line = refused(invoke("predict", engine.path, _image(tmp_path)), str(engine.path))
    assert "built with TensorRT 10.3.0 for NVIDIA L4 (sm 8.9), hardware-compatible ampere+" in line
    assert "pip install 'deploykit[tensorrt]'" in line


def _edit_engine_record(engine, **changes) -> None:
    m = json.loads(engine.manifest_path.read_text())
    stage = m["stages"][-1]
    if changes:
        stage["engine"].update(changes)
    else:
        del stage["engine"]
    engine.manifest_path.write_text(json.dumps(m))


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({}, "manifest.json has no build stage with an engine record"),
        ({"compute_capability": "eight.nine"}, "engine record is malformed: compute capability 'eight.nine'"),
        ({"flags": "version_compatible"}, "engine record is malformed: 'flags' is a str"),
        ({"tensorrt": 10}, "engine record is malformed: 'tensorrt' is a int"),
        ({"parent": {"path": ["/elsewhere"]}}, "engine record is malformed: 'parent.path' is not a string"),
    ],
)
def test_engine_record_missing_or_malformed(tmp_path, trt, monkeypatch, changes, needle):
    engine = _engine(tmp_path)
    _edit_engine_record(engine, **changes)
    monkeypatch.setattr(guard, "running_env", lambda *a, **k: BUILT_ON)
    refused(invoke("predict", engine.path, _image(tmp_path)), str(engine.path), needle)
    _untouched(trt)


def test_tampered_plan_is_refused_by_its_hash_before_the_guard(tmp_path, trt, monkeypatch):
    engine = _engine(tmp_path)
    engine.main_path.write_bytes(b"placeholder plan bytez")  # same size, other bytes
    monkeypatch.setattr(guard, "running_env", lambda *a, **k: BUILT_ON)
    refused(invoke("bench", engine.path, "--backend", "tensorrt"), str(engine.main_path), "sha256 does not match")
    _untouched(trt)


def test_serve_refuses_an_engine_before_loading_it(tmp_path, trt, monkeypatch):
    pytest.importorskip("pytriton.triton", reason="PyTriton is in the serve extra: pip install 'deploykit[serve]'")
    engine = _engine(tmp_path)
    monkeypatch.setattr(guard, "running_env", lambda *a, **k: BUILT_ON)
    refused(invoke("serve", engine.path), str(engine.path), "deploykit serve runs ONNX artifacts")
    _untouched(trt)
