"""Notebooks are committed clean, their fast mode is really small, and no cell ends in a stray value.

Running every notebook top to bottom is tests/test_browser.py's job: JupyterLab in a real browser, as a
person runs them.
"""

import ast
import dataclasses
import json

import pytest
from conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
# Train settings that make a run small; the fast mode must take every one of them from fast_config.
SIZE_FIELDS = ("encoder", "weights", "image_size", "batch_size", "epochs", "learning_rate",
               "max_train_images", "max_val_images")


def _cells(notebook) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _code_cells(notebook) -> list[tuple[int, str, list[str]]]:
    """(index, source, tags) of each code cell."""
    cells = enumerate(_cells(notebook))
    return [(i, "".join(c["source"]), _tags(c)) for i, c in cells if c["cell_type"] == "code"]


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_kitti_road.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(notebook):
    cells = _cells(notebook)
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    tagged = [c for c in cells if "parameters" in _tags(c)]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_show_figures_and_no_stray_values(notebook):
    """A cell's last expression is shown as Out[n]: only figures may be; each figure is also saved."""
    figure_cells = 0
    for index, source, tags in _code_cells(notebook):
        last = ast.parse(source).body[-1]
        shown = isinstance(last, ast.Expr) and not (
            isinstance(last.value, ast.Call) and getattr(last.value.func, "id", None) == "print")
        where = f"{notebook.name} cell {index}"
        if "figure" in tags:
            figure_cells += 1
            assert shown, f"{where} is tagged 'figure' but does not end with the figure to show"
            assert "viz.save_figure(" in source, f"{where} shows a figure without saving it"
        else:
            assert not shown, f"{where} ends in a value that would print as Out[]: {ast.unparse(last)}"
    assert figure_cells >= 3  # data, loss curves, overlays at least


def _run_until_config(notebook, overrides: dict) -> dict:
    """Run a notebook's code cells in this process, with `overrides` after its parameters cell (as papermill
    injects them), up to the cell that builds the training `config`; return the notebook's variables."""
    namespace: dict = {}
    for index, source, tags in _code_cells(notebook):
        exec(compile(source, f"{notebook.name} cell {index}", "exec"), namespace)
        if "parameters" in tags:
            namespace.update(overrides)
        if "config" in namespace:
            return namespace
    raise AssertionError(f"{notebook.name} never builds a `config`")


# The notebooks whose full mode runs a dataset's own CPU recipe (fcn/recipes.py CPU_RECIPES).
RECIPE_DATASETS = {"01_kitti_road": "kitti_road", "02_kitti_semantic": "kitti_semantics", "04_camvid": "camvid"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_fast_mode_trains_the_fast_config_and_full_mode_the_recipe(notebook, tmp_path, monkeypatch):
    from fcn.train import fast_config

    monkeypatch.chdir(tmp_path)
    paths = dict(SYNTHETIC_DIR=str(tmp_path / "data"), RUN_DIR=str(tmp_path / "run"),
                 FIGURES_DIR=str(tmp_path / "figures"))
    fast = _run_until_config(notebook, dict(FAST=True, **paths))
    fast_settings = {name: getattr(fast["config"], name) for name in SIZE_FIELDS}
    assert fast_settings == {name: getattr(fast_config(), name) for name in SIZE_FIELDS}
    assert fast["config"].epochs < fast["EPOCHS"]

    # The full recipe on the data the fast run wrote (no second synthetic set): the parameters apply.
    data_dir = str(fast["data_dir"] if "data_dir" in fast else fast["root"])
    full = _run_until_config(notebook, dict(FAST=False, DATA_DIR=data_dir, **paths))
    # On this machine (no GPU) "auto" is the CPU recipe; the notebook says so.
    from fcn import precision, recipes

    assert full["recipe_name"] == "cpu"
    # A dataset notebook runs its dataset's CPU recipe, the benchmark's (size, budget, remedy); the others the
    # CPU recipe at their own IMAGE_SIZE and EPOCHS.
    dataset = RECIPE_DATASETS.get(notebook.stem)
    expected = (recipes.CPU_RECIPES[dataset] if dataset else
                {**recipes.CPU, "image_size": tuple(full["IMAGE_SIZE"]), "epochs": full["EPOCHS"]})
    config = full["config"]
    assert {key: getattr(config, key) for key in expected if key != "precision"} == {
        key: value for key, value in expected.items() if key != "precision"}
    assert config.precision == precision.choose("auto", config.encoder)  # "auto", resolved for this machine
    # With a GPU, the paper's recipe, at the notebook's size and epochs.
    monkeypatch.setattr(recipes, "has_gpu", lambda: True)
    on_gpu = _run_until_config(notebook, dict(FAST=False, DATA_DIR=data_dir, **paths))
    assert {key: getattr(on_gpu["config"], key) for key in recipes.PAPER} == recipes.PAPER
    assert on_gpu["config"].image_size == tuple(full["IMAGE_SIZE"]) and on_gpu["config"].epochs == full["EPOCHS"]
    assert dataclasses.asdict(full["config"])["data_dir"] == data_dir
