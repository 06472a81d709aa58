"""Calibration recipes: every shipped one loads; mistakes in a user's recipe are named."""

from __future__ import annotations

import pytest

from deploykit.errors import DeployKitError
from deploykit.quantize.recipes import RECIPE_DIR, load_recipe, recipe_for

FAMILIES = ["resnet", "resnext", "densenet", "googlenet", "inception"]


@pytest.mark.parametrize("name", FAMILIES)
def test_shipped_recipes_load(name):
    r = load_recipe(name)
    assert r.name == name and 0 < r.gate <= 1 and r.num_images >= r.min_images


def test_recipe_lookup_by_model_and_family():
    assert recipe_for("googlenet", "inception").name == "googlenet"
    assert recipe_for("inception_v3", "inception").name == "inception"
    assert recipe_for("resnext50_32x4d", "resnext").name == "resnext"
    assert recipe_for("mystery", "unknown").name == "default"


def test_bad_recipes_are_one_line_errors(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[calibration]\nmethod = "entropy"\nbins = 3\n')
    with pytest.raises(DeployKitError, match="unknown keys bins"):
        load_recipe(p)
    p.write_text('[calibration]\nmethod = "guess"\n')
    with pytest.raises(DeployKitError, match="method 'guess'"):
        load_recipe(p)
    p.write_text("[calibration\n")
    with pytest.raises(DeployKitError, match="not valid TOML"):
        load_recipe(p)
    with pytest.raises(DeployKitError, match="not found"):
        load_recipe("no-such-recipe")
    assert RECIPE_DIR.is_dir()
