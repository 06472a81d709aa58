"""QuantizeOptions: a recipe merged with the caller's overrides, validated once."""

from __future__ import annotations

import pytest

from deploykit.errors import DeployKitError
from deploykit.quantize import QuantizeOptions
from deploykit.quantize.recipes import load_recipe


def test_overrides_replace_recipe_values_and_none_keeps_them():
    rec = load_recipe("densenet")
    o = QuantizeOptions.from_recipe(rec, method="max", gate=None, keep_fp32=["first"], threads=2)
    assert o.recipe == "densenet" and o.method == "max" and o.gate == rec.gate
    assert o.keep_fp32 == ("first",) and o.threads == 2 and o.num_images == rec.num_images
    assert QuantizeOptions.from_recipe(rec).method == rec.method


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"method": "guess"}, "method 'guess'"),
        ({"profile": "tflite"}, "profile 'tflite'"),
        ({"gate": 1.5}, "gate 1.5"),
        ({"threads": 0}, "threads must be at least 1"),
        ({"bins": 3}, "unknown quantisation option"),
    ],
)
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(DeployKitError, match=message):
        QuantizeOptions.from_recipe(load_recipe("resnet"), **override)


def test_the_output_name_follows_the_profile():
    assert QuantizeOptions().out_suffix == "int8" and QuantizeOptions(profile="tensorrt").out_suffix == "int8-trt"
