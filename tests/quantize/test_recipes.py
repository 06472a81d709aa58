"""Calibration recipes: every shipped one loads; mistakes in a user's recipe are named."""

from __future__ import annotations

import pytest

from deploykit.errors import DeployKitError
from deploykit.quantize import recipes
from deploykit.quantize.recipes import FAMILY_RECIPES, load_recipe, recipe_for, shipped_recipes

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
    with pytest.raises(DeployKitError, match="'no-such-recipe' is not shipped"):
        load_recipe("no-such-recipe")
    with pytest.raises(DeployKitError, match="recipe file not found"):
        load_recipe(str(tmp_path / "absent.toml"))
    with pytest.raises(DeployKitError, match="must end in .toml"):
        load_recipe(tmp_path / "r.txt")


def test_every_family_recipe_is_shipped_as_package_data():
    assert set(FAMILY_RECIPES.values()) == set(shipped_recipes())


def test_a_folder_named_like_a_recipe_is_not_taken_for_it(tmp_path, monkeypatch):
    """`deploykit export googlenet --out googlenet` then `quantize googlenet` in the same folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "googlenet").mkdir()
    (tmp_path / "resnet").write_text("not a recipe")
    assert load_recipe("googlenet").name == "googlenet" and load_recipe("resnet").method


def test_a_family_whose_recipe_is_missing_is_an_error_not_the_defaults(monkeypatch):
    monkeypatch.setitem(FAMILY_RECIPES, "resnet", "vanished")
    with pytest.raises(DeployKitError, match="'vanished' is not shipped"):
        recipe_for("resnet18", "resnet")
    assert recipes.Recipe().method == "entropy"
