"""``deploykit serve`` end to end: a real Triton server on loopback, concurrent clients, bad requests."""

from __future__ import annotations

import signal
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serving import serving

from deploykit.runtime import Predictor

pytest.importorskip("pytriton.triton", reason="PyTriton is in the serve extra: pip install 'deploykit[serve]'")
httpclient = pytest.importorskip("tritonclient.http", reason="pip install 'deploykit[serve]'")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="pip install 'deploykit[serve]'")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture
def served(fmnist_artifact, tmp_path):
    with serving(fmnist_artifact.path, "resnet18", tmp_path) as s:
        yield s.proc, s.http, s.grpc, s.metrics, s.out


def _infer_http(port: int, x: np.ndarray, name: str = "input", dtype: str = "FP32") -> np.ndarray:
    c = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=30)
    inp = httpclient.InferInput(name, list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    return c.infer("resnet18", [inp]).as_numpy("logits")


def _infer_grpc(port: int, x: np.ndarray) -> np.ndarray:
    c = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return c.infer("resnet18", [inp], client_timeout=30).as_numpy("logits")


def test_serve_answers_like_the_runtime_and_survives_bad_requests(served, fmnist_artifact, fmnist_images):
    proc, http, grpc, metrics, out = served
    pred = Predictor.from_artifact(fmnist_artifact.path)
    x = pred.preprocess(fmnist_images)  # 12 real Fashion-MNIST images
    want = pred.logits(x)

    def one(i: int) -> np.ndarray:  # odd requests over HTTP, even over gRPC
        return _infer_http(http, x[i % 12 : i % 12 + 1]) if i % 2 else _infer_grpc(grpc, x[i % 12 : i % 12 + 1])

    with ThreadPoolExecutor(8) as pool:  # bounded: 24 concurrent requests, each with a 30 s timeout
        got = list(pool.map(one, range(24)))
    for i, g in enumerate(got):
        np.testing.assert_allclose(g, want[i % 12 : i % 12 + 1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_infer_http(http, x[:8]), want[:8], rtol=1e-4, atol=1e-4)

    bad = [
        lambda: _infer_http(http, x[:1], name="pixels"),  # unknown input name
        lambda: _infer_http(http, x[:1, :, :16]),  # wrong shape
        lambda: _infer_http(http, x[:1].astype(np.float64), dtype="FP64"),  # wrong dtype
        lambda: _infer_http(http, np.concatenate([x, x])[:9]),  # beyond max_batch_size 8
    ]
    for call in bad:
        with pytest.raises(InferenceServerException):
            call()
        np.testing.assert_allclose(_infer_http(http, x[:1]), want[:1], rtol=1e-4, atol=1e-4)  # still serving

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10).read().decode()
    assert 'nv_inference_request_success{model="resnet18"' in text
    assert urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=10).status == 200

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    out.seek(0)
    log = out.read()
    assert f"http://127.0.0.1:{http}" in log and f"127.0.0.1:{grpc}" in log and "stopped" in log
