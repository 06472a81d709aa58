"""Predictor on OpenVINO, and backend="auto" from a hand-written runtime_choice record."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import CLASSES, SIZE, tiny_artifact

from deploykit.errors import DeployKitError
from deploykit.machine import bf16_refusal, machine_slug
from deploykit.onnx_io import ort_session
from deploykit.parity import check_gate, compare_outputs
from deploykit.runtime import Predictor
from deploykit.runtime import predictor as predictor_mod

HAS_OV = predictor_mod._ov_usable("openvino") is None
needs_ov = pytest.mark.skipif(not HAS_OV, reason="openvino is not installed")


def _x(n: int = 5) -> np.ndarray:
    return np.random.default_rng(2).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def _record(art, **over):
    rec = {
        "machine": machine_slug(),
        "best": "openvino",
        "by_batch": {"1": "openvino", "8": "onnxruntime"},
        "p50_ms": {"1": {"onnxruntime": 0.5, "openvino": 0.4}, "8": {"onnxruntime": 2.0, "openvino": 2.1}},
        "config": {"threads": 2},
    }
    rec.update(over)
    art.record_result("runtime_choice", rec)
    return art


@needs_ov
def test_openvino_predictor_matches_onnxruntime_in_f32(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    x = _x(11)  # > max batch 8: split into two calls
    with Predictor.from_artifact(art.path, backend="openvino") as p:
        got = p.logits(x)
        assert p.backend == "openvino" and p.backend_reason == "named by the caller"
        assert p.runtime_config["precision"] == "f32"  # explicit, read back from OpenVINO
        preds = p.predict(x, topk=2)
    want = ort_session(art.main_path).run(None, {"input": x})[0]
    assert got.shape == (11, CLASSES)
    assert check_gate(compare_outputs(want, got), "fp32") == []
    assert [pr.indices[0] for pr in preds] == list(np.argmax(want, axis=1))


@needs_ov
def test_openvino_predictor_needs_no_onnx_package(tmp_path, monkeypatch):
    """``deploykit[runtime,openvino]`` has no ``onnx``: static compiles read the inputs through OpenVINO."""
    art = tiny_artifact(tmp_path / "art")
    want = ort_session(art.main_path).run(None, {"input": _x(3)})[0]
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with Predictor.from_artifact(art.path, backend="openvino") as p:
        got = p.logits(_x(3))  # a second batch size: a second static compile
    assert check_gate(compare_outputs(want, got), "fp32") == []


@needs_ov
@pytest.mark.skipif(bf16_refusal() is not None, reason="no native bfloat16 on this CPU")
def test_openvino_bf16_predictor_reads_back_bf16(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    with Predictor.from_artifact(art.path, backend="openvino-bf16") as p:
        assert p.runtime_config["precision"] == "bf16"
        got = p.logits(_x(16))
    want = ort_session(art.main_path).run(None, {"input": _x(16)})[0]
    assert check_gate(compare_outputs(want, got), "bf16") == []


@needs_ov
def test_auto_picks_the_recorded_best_on_this_machine(tmp_path):
    art = _record(tiny_artifact(tmp_path / "art"))
    p = Predictor.from_artifact(art.path, backend="auto")
    assert p.backend == "openvino"
    assert "fastest on this machine" in p.backend_reason and "batch 8: onnxruntime" in p.backend_reason
    assert p.logits(_x(2)).shape == (2, CLASSES)


@needs_ov
def test_auto_takes_the_choice_at_the_batch_the_deployment_runs(tmp_path):
    art = _record(tiny_artifact(tmp_path / "art"))  # batch 1: openvino, batch 8: onnxruntime
    for expected, want, at in ((8, "onnxruntime", 8), (6, "onnxruntime", 8), (2, "openvino", 1), (1, "openvino", 1)):
        p = Predictor.from_artifact(art.path, backend="auto", expected_batch=expected)
        assert p.backend == want, (expected, p.backend_reason)
        assert f"fastest at batch {at} (nearest measured to {expected})" in p.backend_reason
    with pytest.raises(DeployKitError, match="expected_batch must be a positive integer, got 0"):
        Predictor.from_artifact(art.path, backend="auto", expected_batch=0)


def test_auto_falls_back_to_onnxruntime_and_says_why(tmp_path, monkeypatch):
    art = tiny_artifact(tmp_path / "none")
    p = Predictor.from_artifact(art.path, backend="auto")
    assert (p.backend, "no runtime_choice record" in p.backend_reason) == ("onnxruntime", True)

    other = _record(tiny_artifact(tmp_path / "other"), machine="intel-xeon-sapphire-rapids-amx-64cpu")
    p = Predictor.from_artifact(other.path, backend="auto")
    assert p.backend == "onnxruntime"
    assert "measured on intel-xeon-sapphire-rapids-amx-64cpu, not this machine" in p.backend_reason

    # the recorded best is not installed here
    here = _record(tiny_artifact(tmp_path / "here"))
    monkeypatch.setattr(predictor_mod, "_ov_usable", lambda name, raise_error=False: "openvino is not installed")
    p = Predictor.from_artifact(here.path, backend="auto")
    assert p.backend == "onnxruntime" and "openvino is not installed" in p.backend_reason

    odd = _record(tiny_artifact(tmp_path / "odd"), best="tvm")
    assert Predictor.from_artifact(odd.path, backend="auto").backend == "onnxruntime"


def test_named_backends_are_checked(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    with pytest.raises(DeployKitError, match="not one of"):
        Predictor.from_artifact(art.path, backend="tvm")
    with pytest.raises(DeployKitError, match="runs on onnxruntime or openvino"):
        Predictor.from_artifact(art.path, backend="tensorrt")


@needs_ov
def test_predict_cli_backend(tmp_path, fmnist_artifact, fmnist_images):
    from deploykit.cli import cli

    res = CliRunner().invoke(
        cli, ["predict", str(fmnist_artifact.path), *map(str, fmnist_images[:2]), "--backend", "openvino", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert "backend: openvino (named by the caller)" in res.output


@needs_ov
def test_predict_cli_auto_picks_the_runtime_for_the_batch_its_images_make(tmp_path, fmnist_artifact, fmnist_images):
    import shutil

    from deploykit.artifact import Artifact
    from deploykit.cli import cli

    shutil.copytree(fmnist_artifact.path, tmp_path / "art")
    art = _record(Artifact.load(tmp_path / "art"))  # batch 1: openvino, batch 8: onnxruntime
    for images, want in ((fmnist_images[:1], "openvino"), (fmnist_images[:8], "onnxruntime")):
        res = CliRunner().invoke(cli, ["predict", str(art.path), *map(str, images), "--backend", "auto", "--json"])
        assert res.exit_code == 0, res.output
        assert f"backend: {want} (auto: fastest at batch {1 if want == 'openvino' else 8} " in res.output


@needs_ov
def test_openvino_predictor_runs_a_static_compile_per_batch(tmp_path, monkeypatch):
    import deploykit.openvino_io as ovio

    compiled_for: list = []
    real = ovio.ov_compile
    monkeypatch.setattr(ovio, "ov_compile", lambda *a, **k: compiled_for.append(k.get("batch")) or real(*a, **k))
    art = tiny_artifact(tmp_path / "art")  # dynamic batch 1..8, opt 1
    x = _x(4)
    with Predictor.from_artifact(art.path, backend="openvino") as p:
        assert compiled_for == [1]  # the opt batch, at construction
        one = p.infer(x[:1])
        three = p.infer(x[1:])
        assert compiled_for == [1, 3]
        assert p.runtime_config["static_batch"] is True
        assert p.runtime_config["input_shape"] == [3, 3, SIZE, SIZE]
        assert p.runtime_config["compiled_input_shapes"] == {"1": [1, 3, SIZE, SIZE], "3": [3, 3, SIZE, SIZE]}
        p.infer(x[:1])
        assert compiled_for == [1, 3]  # cached
    want = ort_session(art.main_path).run(None, {"input": x})[0]
    assert check_gate(compare_outputs(want, np.concatenate([one, three])), "fp32") == []


@needs_ov
def test_a_fixed_batch_artifact_compiles_once(tmp_path, monkeypatch):
    import deploykit.openvino_io as ovio

    compiled_for: list = []
    real = ovio.ov_compile
    monkeypatch.setattr(ovio, "ov_compile", lambda *a, **k: compiled_for.append(k.get("batch")) or real(*a, **k))
    art = tiny_artifact(tmp_path / "art", dynamic=False, batch=2)
    with Predictor.from_artifact(art.path, backend="openvino") as p:
        got = p.logits(_x(5))  # 2 + 2 + 1 padded to 2
        assert p.runtime_config["input_shape"] == [2, 3, SIZE, SIZE]
    assert compiled_for == [2]
    session = ort_session(art.main_path)
    want = np.concatenate([session.run(None, {"input": _x(5)[i : i + 2]})[0] for i in (0, 2)])
    assert check_gate(compare_outputs(want, got[:4]), "fp32") == []


def test_a_gpu_device_is_refused_for_an_onnx_artifact(tmp_path):
    art = tiny_artifact(tmp_path / "art")
    with pytest.raises(DeployKitError, match=r"art: device 'cuda:1' is for engine artifacts; onnxruntime runs on"):
        Predictor.from_artifact(art.path, device="cuda:1")
    with Predictor.from_artifact(art.path, device="cpu") as p:
        assert p.backend == "onnxruntime"
