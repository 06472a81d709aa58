"""The parity helper really fails a graph that computes something else."""

import numpy as np

from deploykit.optimize.verify import check_parity, compare

from .graphs import parse

BASE = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4] x) => (float[N,3] y) { y = Gemm<transB = 1>(x, w, b) }
"""


def test_identical_graphs_pass():
    w, b = np.eye(3, 4, dtype=np.float32), np.zeros(3, np.float32)
    model = parse(BASE, w=w, b=b)
    result = check_parity(model, model, batch=8)
    assert result.passed and result.max_rel == 0.0 and result.top1_agreement == 1.0


def test_a_changed_weight_fails():
    w, b = np.eye(3, 4, dtype=np.float32), np.zeros(3, np.float32)
    bad_w = w.copy()
    bad_w[0, 0] = 1.001
    result = check_parity(parse(BASE, w=w, b=b), parse(BASE, w=bad_w, b=b), batch=8)
    assert not result.passed and result.max_rel > 1e-5


def test_nan_and_shape_mismatch_fail():
    ref = np.ones((2, 3), np.float32)
    out = ref.copy()
    out[1, 2] = np.nan
    r = compare(ref, out)
    assert not r.max_rel <= 1e-5  # NaN compares false: the gate fails
    assert compare(ref, np.ones((2, 4), np.float32)).max_rel == float("inf")
