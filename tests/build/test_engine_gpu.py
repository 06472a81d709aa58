"""On a GPU with TensorRT: each precision's strongly typed engine builds, runs, and matches its own ONNX.

Skipped without TensorRT and a CUDA GPU (never run on the CPU machine this was written on). The
reference is ONNX Runtime on CPU running the very graph the engine was built from, so a mismatch
is TensorRT's arithmetic, not the conversion or the quantisation.
"""

from __future__ import annotations

import numpy as np
import pytest
from precision_models import SIZE, precision_artifact

from deploykit.artifact import Artifact
from deploykit.backends import make_runner
from deploykit.backends.tensorrt.guard import engine_record
from deploykit.build import build_engine_artifact

# max |engine - onnxruntime| as a fraction of the reference logit range (TF32 is off for fp32)
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2, "best": 5e-2}


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "best"])
def test_each_precision_builds_and_matches_its_onnx(tmp_path, precision):
    art = precision_artifact(tmp_path / precision, precision)
    result = build_engine_artifact(art.path, precision=precision, batch="1:4:8")
    rec = engine_record(Artifact.load(result.path).manifest)
    assert rec["precision"] == precision and rec["network"]["precision"] == precision and rec["tf32"] is False
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    with make_runner(art.path) as ref, make_runner(result.path, backend="tensorrt", device="cuda") as trt:
        want = ref.infer({"input": x})["logits"].astype(np.float32)
        got = trt.infer({"input": x})["logits"].astype(np.float32)
    span = float(want.max() - want.min()) or 1.0
    assert np.abs(got - want).max() <= TOLERANCE[precision] * span


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_fp16_from_an_fp32_artifact_is_built_from_the_converted_graph(tmp_path):
    art = precision_artifact(tmp_path / "fp32", "fp32")
    result = build_engine_artifact(art.path, precision="fp16", batch="1:4:8")
    rec = engine_record(Artifact.load(result.path).manifest)
    assert rec["onnx"] == "model-fp16.onnx" and rec["network"]["compute_layers"] == {"float16": 2}
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    with make_runner(art.path) as ref, make_runner(result.path, backend="tensorrt", device="cuda") as trt:
        want = ref.infer({"input": x})["logits"]
        got = trt.infer({"input": x})["logits"].astype(np.float32)
    assert np.abs(got - want).max() <= 1e-2 * float(want.max() - want.min())
