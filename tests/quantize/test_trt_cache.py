"""TensorRT calibration cache: TensorRT's text format, bound to one ONNX by a sidecar."""

from __future__ import annotations

import onnx
import pytest

from deploykit.errors import DeployKitError
from deploykit.quantize.trt_cache import (
    float_to_hex,
    format_cache,
    hex_to_float,
    parse_cache,
    read_cache,
    sidecar_path,
    write_cache,
)

from .graphs import concat_block, residual_block


def test_hex_is_big_endian_float32_bits():
    assert float_to_hex(1.0) == "3f800000"
    assert float_to_hex(1.0 / 127) == "3c010204"
    assert hex_to_float("3c010204") == pytest.approx(1.0 / 127, rel=1e-7)


def test_format_has_header_and_one_line_per_tensor():
    text = format_cache({"input": 0.0078125, "conv1_out": 0.05}, method="entropy", trt_version=100300)
    lines = text.splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert lines[1] == "input: 3c000000"
    header, scales = parse_cache(text)
    assert header == lines[0] and scales["conv1_out"] == pytest.approx(0.05)


def test_cache_round_trips_for_its_own_model(tmp_path):
    m = tmp_path / "model.onnx"
    onnx.save(residual_block(), m)
    cache = write_cache(tmp_path / "calib.cache", {"x": 0.01, "r0": 0.02}, m)
    assert sidecar_path(cache).is_file()
    assert read_cache(cache, m) == pytest.approx({"x": 0.01, "r0": 0.02})


def test_cache_for_another_model_is_refused(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(residual_block(), a)
    onnx.save(concat_block(), b)
    cache = write_cache(tmp_path / "calib.cache", {"x": 0.01}, a)
    with pytest.raises(DeployKitError, match="made for another model") as e:
        read_cache(cache, b)
    assert "\n" not in str(e.value)


def test_cache_without_sidecar_or_malformed_is_refused(tmp_path):
    m = tmp_path / "model.onnx"
    onnx.save(residual_block(), m)
    (tmp_path / "c.cache").write_text("TRT-100300-EntropyCalibration2\nx: 3c000000\n")
    with pytest.raises(DeployKitError, match="no sidecar"):
        read_cache(tmp_path / "c.cache", m)
    with pytest.raises(DeployKitError, match="not a TensorRT calibration cache"):
        parse_cache("hello\n")
    with pytest.raises(DeployKitError, match="line 2"):
        parse_cache("TRT-100300-EntropyCalibration2\nx: zz-not-hex\n")
