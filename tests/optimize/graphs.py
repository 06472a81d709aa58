"""Helpers for the optimiser tests: build models from ONNX text, run them, compare outputs."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx.parser

from deploykit.optimize import optimize_model
from deploykit.optimize.verify import make_session, random_inputs


def parse(text: str, **weights: np.ndarray | tuple[int, ...]) -> onnx.ModelProto:
    """Model from ONNX text; ``weights`` adds initialisers (an array, or a shape for random values)."""
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(len(weights))
    for name, w in weights.items():
        arr = rng.standard_normal(w).astype(np.float32) if isinstance(w, tuple) else np.asarray(w)
        model.graph.initializer.append(onnx.numpy_helper.from_array(arr, name))
    onnx.checker.check_model(model, full_check=True)
    return model


def bn_params(c: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Non-trivial inference BatchNorm statistics (scale, bias, mean, var)."""
    rng = np.random.default_rng(seed)
    return {
        "s": (rng.random(c) + 0.5).astype(np.float32),
        "bb": (rng.standard_normal(c) * 0.1).astype(np.float32),
        "m": (rng.standard_normal(c) * 0.1).astype(np.float32),
        "v": (rng.random(c) + 0.5).astype(np.float32),
    }


def ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return make_session(model).run(None, feeds)


class Checker:
    """Optimise with one pass and assert outputs are unchanged on random inputs."""

    def __call__(self, text_or_model, passes, seed: int = 0, rtol: float = 1e-5, atol: float = 1e-5):
        model = parse(text_or_model) if isinstance(text_or_model, str) else text_or_model
        result = optimize_model(model, passes)
        onnx.checker.check_model(result.model, full_check=True)
        feeds = random_inputs(make_session(model), batch=1, seed=seed)
        for ref, out in zip(run(model, feeds), run(result.model, feeds)):
            np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)
        assert [o.name for o in result.model.graph.output] == [o.name for o in model.graph.output]
        return result


def rewrites(result, name: str) -> int:
    return next(r.rewrites for r in result.reports if r.name == name)
