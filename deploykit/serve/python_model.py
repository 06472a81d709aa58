"""The Triton Python-backend model ``deploykit serve`` runs: the runtime's Predictor inside the stub.

``deploykit serve`` copies this file as ``model.py`` into each model's version folder; Triton's
Python-backend stub process imports it (``triton_python_backend_utils`` exists only there) and
runs :class:`~deploykit.runtime.Predictor` in that process. Requests reach it through Triton's
shared memory alone: PyTriton's own ``bind`` would forward each batch once more, over ZeroMQ, to
the process that called ``bind``, which cost about 4 ms a request on the 2-core Zen 3 machine
(see benchmarks/serve/README.md).

Parameters (config.pbtxt): ``artifact`` (the artifact folder), ``threads`` (intra-op threads, empty
for the runtime's default), ``backend`` (the Predictor's: onnxruntime, openvino, openvino-bf16,
auto; empty for the artifact's default).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


class TritonPythonModel:
    """One model instance: a Predictor, and Triton's dynamic batches split back into responses."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the artifact (hashes checked) with the config's parameters."""
        from deploykit.runtime import Predictor

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        threads = int(params["threads"]) if params.get("threads") else None
        # ORT's spinning stays on, as in process: with it, two threads served one client at p50
        # 2.98 ms against 4.16 ms for one thread without it (deploykit.serve.server.serve_threads).
        backend = params.get("backend") or None
        self.predictor = Predictor.from_artifact(params["artifact"], backend=backend, threads=threads)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One ONNX Runtime call for all requests Triton batched; one response (or error) each."""
        import triton_python_backend_utils as pb_utils  # only inside Triton's stub

        p = self.predictor
        xs = [pb_utils.get_input_tensor_by_name(r, p.input_name).as_numpy() for r in requests]
        try:
            out = p.infer(xs[0] if len(xs) == 1 else np.concatenate(xs))
        except Exception as e:  # noqa: BLE001 - every request of the batch gets the error, the server lives on
            err = pb_utils.TritonError(f"{type(e).__name__}: {e}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        responses, start = [], 0
        for x in xs:
            n = x.shape[0]
            tensor = pb_utils.Tensor(p.output_name, np.ascontiguousarray(out[start : start + n]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += n
        return responses

    def finalize(self) -> None:
        """Release the backend."""
        self.predictor.close()
