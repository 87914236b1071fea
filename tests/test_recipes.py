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
    # "auto" precision is resolved to what this machine uses; everything else is taken as it is.
    assert {key: getattr(config, key) for key in settings if key != "precision"} == {
        key: value for key, value in settings.items() if key != "precision"}
    assert config.precision in ("float32", "bfloat16", "float16")
    settings["encoder"] = "changed"  # a copy: the table itself is untouched
    assert recipes.RECIPES[name]["encoder"] != "changed"


@pytest.mark.parametrize("dataset", sorted(recipes.CPU_RECIPES))
def test_a_dataset_s_cpu_recipe_brings_its_size_budget_and_remedy(dataset):
    name, settings = recipes.choose("cpu", dataset, image_size=(64, 64), epochs=3)
    assert name == "cpu" and settings == recipes.CPU_RECIPES[dataset]  # the notebook's size and epochs unused
    assert settings["minutes"] and settings["epochs"] == recipes.MAX_EPOCHS and settings["precision"] == "auto"
    assert settings.get("class_balancing", False) == (dataset != "kitti_road")
    config = TrainConfig(dataset=dataset, **settings)
    assert config.image_size == tuple(settings["image_size"])
    text = recipes.describe(name, settings)
    assert f"a budget of {settings['minutes']} minutes" in text and "precision: " in text


def test_other_recipes_take_the_notebook_s_size_and_epochs():
    assert recipes.choose("paper", "kitti_road", (160, 576), 30)[1] == {**recipes.PAPER, "image_size": (160, 576),
                                                                         "epochs": 30}
    assert recipes.choose("cpu", "cityscapes", (256, 512), 40)[1] == {**recipes.CPU, "image_size": (256, 512),
                                                                      "epochs": 40}
    assert recipes.choose("cpu", "cityscapes")[1] == recipes.CPU


def test_held_out_frames_are_named_in_the_recipe_module():
    assert len(recipes.HELD_OUT["kitti_road"]) == 12 and "umm_000003.png" in recipes.HELD_OUT["kitti_road"]
    assert recipes.HELD_OUT["camvid"][0] == "0006R0_f03030.png" and len(recipes.HELD_OUT["camvid"]) == 31


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        recipes.choose("fast")
