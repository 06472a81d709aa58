"""TensorRT calibration cache (text format) bound to the ONNX it was made for.

For TensorRT 10's implicit INT8 calibration only: the cache is what an ``IInt8Calibrator`` hands
back, an API TensorRT 10 deprecated and TensorRT 11 removed. deploykit's TensorRT path is explicit
quantisation (the Q/DQ ``model.onnx`` carries every scale) and never reads it; it is kept for
pipelines that still build a plain FP32 ONNX with ``--int8`` and a calibrator on TensorRT 10.

The cache is what TensorRT's ``IInt8Calibrator.read_calibration_cache`` accepts: a header line
``TRT-<version>-EntropyCalibration2`` then one ``tensor_name: <hex>`` line per tensor, where hex
is the big-endian IEEE-754 float32 bit pattern of the tensor's scale (amax / 127). A sidecar JSON
(``<cache>.json``) records the sha256 of the ONNX file, so a cache is never applied to another
model: tensor names of different models often coincide and TensorRT would accept it silently.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from deploykit._io import atomic_write_json, atomic_write_text, sha256_file
from deploykit.errors import DeployKitError

DEFAULT_TRT_VERSION = 100300  # TensorRT 10.3 (getVersion(): major*10000 + minor*100 + patch)
ALGORITHMS = {
    "entropy": "EntropyCalibration2",
    "max": "MinMaxCalibration",
    "percentile": "EntropyCalibration2",
    "mse": "EntropyCalibration2",
}
SIDECAR_SUFFIX = ".json"


def float_to_hex(x: float) -> str:
    """Big-endian float32 bits as 8 hex digits, as TensorRT writes them."""
    return struct.pack(">f", float(x)).hex()


def hex_to_float(h: str) -> float:
    """Inverse of :func:`float_to_hex`."""
    return struct.unpack(">f", bytes.fromhex(h.strip().rjust(8, "0")))[0]


def sidecar_path(cache_path: str | os.PathLike) -> Path:
    return Path(str(cache_path) + SIDECAR_SUFFIX)


def format_cache(scales: dict[str, float], method: str = "entropy", trt_version: int = DEFAULT_TRT_VERSION) -> str:
    """The cache text for per-tensor scales."""
    algo = ALGORITHMS.get(method, "EntropyCalibration2")
    lines = [f"TRT-{trt_version}-{algo}"]
    lines += [f"{name}: {float_to_hex(s)}" for name, s in scales.items()]
    return "\n".join(lines) + "\n"


def parse_cache(text: str, where: str = "calibration cache") -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}) from cache text; malformed lines are a one-line error."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise DeployKitError(f"{where}: not a TensorRT calibration cache (no 'TRT-...' header line)")
    scales = {}
    for no, ln in enumerate(lines[1:], start=2):
        name, sep, val = ln.rpartition(":")
        try:
            if not sep or not name.strip() or len(val.strip()) != 8:
                raise ValueError
            scales[name.strip()] = hex_to_float(val)
        except (ValueError, struct.error):
            raise DeployKitError(f"{where}: line {no} is not 'tensor: hex-scale' ({ln[:60]!r})") from None
    return lines[0], scales


def write_cache(
    path: str | os.PathLike,
    scales: dict[str, float],
    onnx_path: str | os.PathLike,
    method: str = "entropy",
    trt_version: int = DEFAULT_TRT_VERSION,
    extra: dict | None = None,
) -> Path:
    """Write the cache and its sidecar binding it to ``onnx_path``'s sha256."""
    path = Path(path)
    atomic_write_text(path, format_cache(scales, method, trt_version))
    atomic_write_json(
        sidecar_path(path),
        {
            "format": "tensorrt-calibration-cache",
            "onnx_file": Path(onnx_path).name,
            "onnx_sha256": sha256_file(onnx_path),
            "method": method,
            "tensors": len(scales),
            **(extra or {}),
        },
    )
    return path


def read_cache(path: str | os.PathLike, onnx_path: str | os.PathLike) -> dict[str, float]:
    """Scales from a cache, refused unless its sidecar names ``onnx_path``'s exact sha256."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise DeployKitError(f"{path}: calibration cache not found")
    if not side.is_file():
        raise DeployKitError(
            f"{path}: no sidecar {side.name} binding it to a model; refusing a cache of unknown origin"
        )
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        bound = meta["onnx_sha256"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError):
        raise DeployKitError(f"{side}: malformed sidecar (expected JSON with 'onnx_sha256')") from None
    if not isinstance(meta, dict) or not isinstance(bound, str):
        raise DeployKitError(f"{side}: malformed sidecar (expected JSON with 'onnx_sha256')")
    actual = sha256_file(onnx_path)
    if bound != actual:
        raise DeployKitError(
            f"{path}: calibration cache was made for another model "
            f"({meta.get('onnx_file', '?')} sha256 {str(bound)[:12]}…, not {Path(onnx_path).name} {actual[:12]}…)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DeployKitError(f"{path}: not a TensorRT calibration cache (not UTF-8 text)") from None
    _, scales = parse_cache(text, where=str(path))
    return scales
