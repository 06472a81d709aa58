"""Other exporters' graphs (built in foreign.py): the default pipeline folds at least what onnxslim does."""

import pytest

from deploykit.optimize import optimize_model
from deploykit.optimize.verify import MAX_REL_ERR, check_parity

from .foreign import batchnorms, hand_built, legacy_style, op_counts, zoo_export


def _both(model):
    import onnxslim

    ours = optimize_model(model).model
    slim = onnxslim.slim(model)
    return ours, slim


def _assert_at_least_onnxslim(model):
    ours, slim = _both(model)
    parity = check_parity(model, ours, batch=2)
    assert parity.max_rel <= MAX_REL_ERR and parity.top1_agreement == 1.0, parity.to_dict()
    assert len(ours.graph.node) <= len(slim.graph.node), (op_counts(ours), op_counts(slim))
    assert batchnorms(ours) <= batchnorms(slim), (op_counts(ours), op_counts(slim))
    return ours


def test_hand_built_opset9_graph_folds_to_conv_relu_add_lrn_head():
    model = hand_built()
    assert batchnorms(model) == 2 and op_counts(model)["ConstantOfShape"] == 1
    ours = _assert_at_least_onnxslim(model)
    assert op_counts(ours) == {
        "Conv": 2,
        "Relu": 2,
        "Add": 1,
        "LRN": 1,
        "GlobalAveragePool": 1,
        "Flatten": 1,
        "Gemm": 1,
    }
    assert [i.name for i in ours.graph.input] == ["data"]


@pytest.mark.parametrize(("name", "opset"), [("resnet18", 9), ("googlenet", 11)])
def test_zoo_exports_in_both_styles(name, opset):
    base = zoo_export(name, size=32, opset=opset)
    assert batchnorms(base) > 0 and len(base.graph.input) > 1  # BN kept, weights listed as inputs
    for model in (base, legacy_style(base)):
        ours = _assert_at_least_onnxslim(model)
        assert batchnorms(ours) == 0
        assert "Sum" not in op_counts(ours) and "MatMul" not in op_counts(ours)


@pytest.mark.slow
def test_densenet_legacy_keeps_only_unfoldable_batchnorms():
    base = zoo_export("densenet121", size=32, opset=11)
    ours = _assert_at_least_onnxslim(legacy_style(base))
    # BN after a Concat has no conv to fold into (58 dense layers + 3 transitions + the final BN):
    # each Mul+Add pair becomes one BatchNormalization, which ORT fuses with the ReLU after it.
    assert batchnorms(ours) == 62 and op_counts(ours)["BatchNormalization"] == 62
    assert "Mul" not in op_counts(ours)
