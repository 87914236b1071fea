"""Recipes by hardware: the paper's on a GPU, the CPU one otherwise; both valid training configs."""

import pytest

from fcn import recipes
from fcn.train import TrainConfig


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(recipes, "has_gpu", lambda: False)
    assert recipes.choose("auto") == ("cpu", recipes.CPU)
    assert "no GPU found" in recipes.describe("cpu")
    monkeypatch.setattr(recipes, "has_gpu", lambda: True)
    assert recipes.choose("auto") == ("paper", recipes.PAPER)
    assert "GPU found" in recipes.describe("paper")


def test_this_machine_has_no_gpu_so_auto_is_the_cpu_recipe():
    assert recipes.choose()[0] == ("paper" if recipes.has_gpu() else "cpu")


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_each_recipe_is_a_valid_config(name):
    _, settings = recipes.choose(name)
    config = TrainConfig(**settings)
    assert {key: getattr(config, key) for key in settings} == settings
    settings["encoder"] = "changed"  # a copy: the table itself is untouched
    assert recipes.RECIPES[name]["encoder"] != "changed"


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        recipes.choose("fast")
