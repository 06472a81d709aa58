"""The full pipeline on every registry model (small inputs): parity within 1e-5, same top-1."""

from __future__ import annotations

import collections

import pytest
import torch

from deploykit.models import create_model, get_spec, list_models
from deploykit.optimize import optimize_model
from deploykit.optimize.verify import MAX_REL_ERR, check_parity, randomise_batchnorm


def _size(name: str) -> int:
    return 75 if name == "inception_v3" else 32


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_pipeline_preserves_outputs(name, tmp_path):
    import onnx

    from deploykit.export.to_onnx import export_onnx

    torch.manual_seed(0)
    size = _size(name)
    cfg = get_spec(name).data_config.replace(input_size=(3, size, size), num_classes=10)
    model = create_model(name, num_classes=10, data_config=cfg).eval()
    randomise_batchnorm(model)
    path = tmp_path / f"{name}.onnx"
    with torch.no_grad():
        export_onnx(model, cfg, path)
    original = onnx.load(path)
    result = optimize_model(original, "all")
    onnx.checker.check_model(result.model)
    parity = check_parity(original, result.model, batch=2)
    assert parity.max_rel <= MAX_REL_ERR, parity.to_dict()
    assert parity.top1_agreement == 1.0
    assert result.nodes_after <= result.nodes_before
    ops = collections.Counter(n.op_type for n in result.model.graph.node)
    assert ops["Identity"] == 0 and ops["Dropout"] == 0
    assert (
        ops["BatchNormalization"] <= collections.Counter(n.op_type for n in original.graph.node)["BatchNormalization"]
    )
    by = {r.name: r for r in result.reports}
    if name.startswith("densenet"):
        assert by["pool_before_conv"].rewrites == 3  # the three transitions
    if name in ("googlenet", "inception_v3"):
        assert by["fuse_parallel_conv"].rewrites >= 9
