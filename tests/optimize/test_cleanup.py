"""Clean-up pass: Identity/Dropout removal, dead nodes, unused and duplicate constants."""

import numpy as np

from .graphs import ops, parse, rewrites

GRAPH = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4] x) => (float[1,4] y) {
  a = Identity(x)
  b = Add(a, c1)
  d = Dropout(b)
  e = Mul(d, c2)
  dead = Sub(x, c1)
  y = Identity(e)
}
"""


def test_cleanup_removes_identity_dropout_dead_and_duplicates(check):
    c = np.arange(4, dtype=np.float32)
    model = parse(GRAPH, c1=c, c2=c.copy(), unused=np.zeros(4, np.float32))
    result = check(model, ["cleanup"])
    assert ops(result.model) == {"Add": 1, "Mul": 1}
    assert [i.name for i in result.model.graph.initializer] == ["c1"]  # c2 merged, unused dropped
    assert rewrites(result, "cleanup") >= 4
    details = " ".join(result.reports[0].details)
    assert "Dropout" in details and "Identity" in details and "duplicate" in details


def test_dropout_with_used_mask_is_kept(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] y, bool[1,4] mask) {
          y, mask = Dropout(x)
        }
        """
    )
    result = check(model, ["cleanup"])
    assert ops(result.model) == {"Dropout": 1}
    assert not result.modified


def test_clean_graph_is_a_fixed_point(check):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x) => (float[1,4] y) { y = Relu(x) }
        """
    )
    result = check(model, ["cleanup"])
    assert not result.modified and result.iterations == 1


def test_unused_initialiser_inputs_are_dropped_but_real_inputs_kept(check):
    import onnx

    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1,4] x, float[1,4] spare, float[4] old) => (float[1,4] y) { y = Add(x, c) }
        """,
        c=np.ones(4, np.float32),
        old=np.zeros(4, np.float32),
    )
    result = check(model, ["cleanup"])
    assert [i.name for i in result.model.graph.input] == ["x", "spare"]  # interface kept
    assert [i.name for i in result.model.graph.initializer] == ["c"]
    assert "initialiser input" in " ".join(result.reports[0].details)
    onnx.checker.check_model(result.model)
