"""The Python-backend model ``deploykit serve`` runs in Triton's stub, driven here without Triton.

A stand-in ``triton_python_backend_utils`` module holds requests and responses as plain objects,
so the batching logic (one ONNX Runtime call per Triton batch, split back per request) and the
error path are checked against the runtime's own answers.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import pytest
from tiny_models import tiny_artifact

from deploykit.runtime import Predictor
from deploykit.serve.python_model import TritonPythonModel


@dataclass
class _Tensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class _Response:
    output_tensors: list
    error: object = None


@dataclass
class _Error:
    message: str


@dataclass
class _Request:
    inputs: dict = field(default_factory=dict)


@pytest.fixture
def pb_utils(monkeypatch):
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = _Tensor
    mod.InferenceResponse = _Response
    mod.TritonError = _Error
    mod.get_input_tensor_by_name = lambda r, name: _Tensor(name, r.inputs[name]) if name in r.inputs else None
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", mod)
    return mod


def _model(artifact_path) -> TritonPythonModel:
    m = TritonPythonModel()
    params = {"artifact": {"string_value": str(artifact_path)}, "threads": {"string_value": "1"}}
    m.initialize({"model_config": json.dumps({"parameters": params})})
    return m


def test_a_triton_batch_is_one_call_split_back_per_request(pb_utils, tmp_path):
    art = tiny_artifact(tmp_path / "a")
    model, pred = _model(art.path), Predictor.from_artifact(art.path)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((n, *pred.input_shape)).astype(np.float32) for n in (1, 3, 2)]
    responses = model.execute([_Request({pred.input_name: x}) for x in xs])
    assert len(responses) == 3
    for x, r in zip(xs, responses):
        assert r.error is None and [t.name for t in r.output_tensors] == [pred.output_name]
        np.testing.assert_allclose(r.output_tensors[0].as_numpy(), pred.infer(x), rtol=1e-5, atol=1e-5)
    model.finalize()


def test_a_failed_batch_answers_every_request_with_the_error(pb_utils, tmp_path):
    art = tiny_artifact(tmp_path / "a")
    model, pred = _model(art.path), Predictor.from_artifact(art.path)
    bad = np.zeros((1, 1, 2, 2), np.float32)  # Triton checks shapes first; the model must still not crash
    responses = model.execute([_Request({pred.input_name: bad}), _Request({pred.input_name: bad})])
    assert len(responses) == 2
    assert all(r.error is not None and "DeployKitError" in r.error.message for r in responses)
