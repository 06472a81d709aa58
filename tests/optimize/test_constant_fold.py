"""Constant folding (onnxscript's folder): constant subgraphs become one initialiser."""

import numpy as np

from .graphs import ops, parse, rewrites


def test_constant_subgraph_is_folded(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] y) {
          two = Constant<value = float[4] {2, 2, 2, 2}>()
          k = Mul(two, c)
          k2 = Sqrt(k)
          y = Add(x, k2)
        }
        """,
        c=np.array([1, 2, 3, 4], np.float32),
    )
    result = check(model, ["constant_fold", "cleanup"])
    assert ops(result.model) == {"Add": 1}
    assert rewrites(result, "constant_fold") >= 1
    (init,) = [i for i in result.model.graph.initializer]
    np.testing.assert_allclose(
        np.frombuffer(init.raw_data, np.float32) if init.raw_data else init.float_data,
        np.sqrt(2 * np.arange(1, 5, dtype=np.float32)),
        rtol=1e-6,
    )


def test_input_dependent_nodes_are_not_folded(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] y) { s = Sqrt(x)  y = Add(s, x) }
        """
    )
    result = check(model, ["constant_fold"])
    assert ops(result.model) == {"Sqrt": 1, "Add": 1}
    assert not result.modified
