"""Prove a rewrite preserved outputs: run both graphs on ONNX Runtime with its own optimiser off."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from deploykit.parity import ParityResult, compare_outputs, random_feeds

# The optimisation targets of issue 5: scale-relative error and top-1 agreement on every output.
MAX_REL_ERR = 1e-5
MIN_TOP1 = 1.0

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


@dataclass
class ParityCheck:
    """Result of comparing an optimised graph with its original on the same fixed-seed inputs."""

    outputs: dict[str, ParityResult] = field(default_factory=dict)  # one ParityResult per graph output
    batch: int = 1
    seed: int = 0

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs.values()), default=0.0)

    @property
    def top1_agreement(self) -> float:
        """Over the class-score outputs (N x K, K > 1); other outputs have no top-1."""
        return min((o.top1_agreement for o in self.outputs.values() if o.classes), default=1.0)

    @property
    def passed(self) -> bool:
        return self.max_rel <= MAX_REL_ERR and self.top1_agreement >= MIN_TOP1

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "max_rel": self.max_rel,
            "top1_agreement": self.top1_agreement,
            "threshold_max_rel": MAX_REL_ERR,
            "batch": self.batch,
            "seed": self.seed,
            "outputs": {name: r.to_dict() for name, r in self.outputs.items()},
        }


def make_session(model: onnx.ModelProto | bytes | str, optimize: bool = False, threads: int = 1):
    """An ORT CPU session; ``optimize=False`` disables ORT's graph rewrites so ours are what is tested."""
    from deploykit.onnx_io import ort_session

    return ort_session(model, threads=threads, inter_op_threads=1, optimization="all" if optimize else "disable")


def random_inputs(
    session, batch: int = 1, seed: int = 0, dims: Mapping[str, int] | None = None
) -> dict[str, np.ndarray]:
    """Fixed-seed feeds for every input of an ORT session; a symbolic dim is ``dims[name]`` or ``batch``."""
    inputs = {}
    for inp in session.get_inputs():
        if inp.type not in _ORT_TYPES:
            raise ValueError(f"input '{inp.name}' has type {inp.type}, which the parity check cannot generate")
        inputs[inp.name] = (np.dtype(_ORT_TYPES[inp.type]), tuple(inp.shape))
    return random_feeds(inputs, batch=batch, seed=seed, dims=dims)


def compare(ref: np.ndarray, out: np.ndarray) -> ParityResult:
    """The project's parity metric; a shape mismatch is as wrong as it gets (infinite error)."""
    from deploykit.errors import DeployKitError

    try:
        return compare_outputs(np.asarray(ref, np.float64), np.asarray(out, np.float64))
    except DeployKitError:
        return ParityResult(float("inf"), float("inf"), 0.0, 0.0, 0.0, int(np.shape(ref)[0]) if np.ndim(ref) else 1)


def check_parity(
    original: onnx.ModelProto | bytes,
    optimized: onnx.ModelProto | bytes,
    batch: int = 2,
    seed: int = 0,
    dims: Mapping[str, int] | None = None,
) -> ParityCheck:
    """Run both graphs on the same random inputs (ORT graph optimisations off) and compare outputs."""
    ref_sess = make_session(original)
    opt_sess = make_session(optimized)
    feeds = random_inputs(ref_sess, batch=batch, seed=seed, dims=dims)
    names = [o.name for o in ref_sess.get_outputs()]
    opt_names = [o.name for o in opt_sess.get_outputs()]
    if names != opt_names:
        raise AssertionError(f"optimised graph outputs {opt_names} differ from the original's {names}")
    refs = ref_sess.run(names, feeds)
    outs = opt_sess.run(names, feeds)
    return ParityCheck({n: compare(r, o) for n, r, o in zip(names, refs, outs)}, batch=batch, seed=seed)


def randomise_batchnorm(model: Any, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, in place, from a fixed seed.

    A fresh model's BatchNorm is the identity (mean 0, variance 1, scale 1, shift 0), so a wrong
    BatchNorm fold would still match; these values make the folding checks able to fail.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
