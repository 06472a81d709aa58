"""The pass manager: fixed point, iteration cap, per-pass reports."""

import onnx_ir as ir
import pytest

from deploykit.optimize import list_passes, optimize_model
from deploykit.optimize.manager import PassManager
from deploykit.optimize.passes import PASSES
from deploykit.optimize.passes._base import GraphPass

from .graphs import parse

NESTED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,8,4,4] x) => (float[1,24,4,4] y) {
  a = Conv(x, wa)
  b = Conv(x, wb)
  i = Identity(b)
  ab = Concat<axis = 1>(a, i)
  y = Concat<axis = 1>(ab, x, x)
}
"""


def test_pipeline_reaches_a_fixed_point_and_reports(check):
    result = check(parse(NESTED, wa=(4, 8, 1, 1), wb=(4, 8, 1, 1)), "all")
    from deploykit.optimize import ALL_PASSES

    assert [r.name for r in result.reports][: len(ALL_PASSES)] == list(ALL_PASSES)  # run in pipeline order
    by = {r.name: r for r in result.reports}
    # Identity gone, convs fused, then the Split feeding the Concat in order is undone and the
    # nested Concat flattened: one Conv and one Concat remain.
    assert [n.op_type for n in result.model.graph.node] == ["Conv", "Concat"]
    assert by["cleanup"].rewrites >= 1 and by["fuse_parallel_conv"].rewrites == 1
    assert by["fuse_concat"].rewrites >= 2
    assert result.nodes_before == 5 and result.nodes_after == 2
    assert result.iterations >= 2  # the last round proves nothing changes any more
    d = result.to_dict()
    assert d["reports"][0]["nodes_before"] == 5 and d["modified"] is True


class _Flip(GraphPass):
    """A pass that always claims a change: the manager must stop at max_iterations."""

    name = "flip"

    def run(self, model):
        self.log("flipped")


def test_manager_stops_at_max_iterations():
    model = ir.serde.deserialize_model(parse(NESTED, wa=(4, 8, 1, 1), wb=(4, 8, 1, 1)))
    manager = PassManager([_Flip()], max_iterations=3)
    _, reports, modified = manager.run(model)
    assert modified and manager.iterations == 3 and reports[0].rewrites == 3


@pytest.mark.parametrize("name", list_passes())
def test_every_listed_pass_runs_by_name_and_preserves_outputs(name, check):
    """A pass offered by --list-passes can be asked for alone and never changes what the model computes."""
    result = check(parse(NESTED, wa=(4, 8, 1, 1), wb=(4, 8, 1, 1)), name)
    assert result.passes == [name] and result.reports[0].name == name
    assert PASSES[name].description  # --list-passes prints it


def test_pipelines_by_name():
    from deploykit.optimize import DEFAULT_PASSES, resolve_passes

    assert resolve_passes(None) == list(DEFAULT_PASSES) and "fuse_parallel_conv" not in DEFAULT_PASSES
    from deploykit.optimize import ALL_PASSES

    assert resolve_passes("all") == list(ALL_PASSES) and "batchnorm_to_affine" not in ALL_PASSES
    assert resolve_passes("default,batchnorm_to_affine")[-1] == "batchnorm_to_affine"
    assert optimize_model(parse(NESTED, wa=(4, 8, 1, 1), wb=(4, 8, 1, 1)), "cleanup").passes == ["cleanup"]


def test_optimising_twice_changes_nothing_more():
    model = parse(NESTED, wa=(4, 8, 1, 1), wb=(4, 8, 1, 1))
    once = optimize_model(model, "all")
    twice = optimize_model(once.model, "all")
    assert not twice.modified and twice.nodes_after == once.nodes_after
