"""TensorRT backend: importing deploykit never needs it; without it every entry point names the extra."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from deploykit.errors import MissingExtraError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_package_imports_without_tensorrt():
    import deploykit.backends.tensorrt as trt_pkg

    assert trt_pkg.tensorrt_available() == HAS_TRT


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_missing_tensorrt_names_the_extra(tmp_path):
    from deploykit.backends import make_runner
    from deploykit.backends.tensorrt import build_engine, import_tensorrt
    from deploykit.backends.tensorrt.runner import TensorRTRunner

    expected = (
        r"needs the 'tensorrt' package, which is not installed; install it with: pip install 'deploykit\[tensorrt\]'"
    )
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    for call in (
        import_tensorrt,
        lambda: TensorRTRunner(engine),
        lambda: build_engine(tmp_path / "m.onnx"),
        lambda: make_runner(engine, backend="tensorrt"),
    ):
        with pytest.raises(MissingExtraError, match=expected) as info:
            call()
        assert info.value.extra == "tensorrt"


@pytest.mark.tensorrt
def test_engine_round_trip(tmp_path):
    from tiny_models import SIZE, tiny_onnx

    from deploykit.backends.onnxruntime import OnnxRuntimeRunner
    from deploykit.backends.tensorrt.builder import write_engine
    from deploykit.backends.tensorrt.runner import TensorRTRunner

    onnx_path = tiny_onnx(tmp_path / "tiny.onnx")
    engine = write_engine(onnx_path, tmp_path / "tiny.engine", precision="fp32", min_batch=1, opt_batch=2, max_batch=4)
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    with OnnxRuntimeRunner(onnx_path) as ref, TensorRTRunner(engine) as trt:
        np.testing.assert_allclose(trt.infer({"input": x})["logits"], ref.infer({"input": x})["logits"], atol=1e-3)
