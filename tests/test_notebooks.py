"""Every notebook runs top to bottom in its fast mode (papermill), and is committed clean."""

import json

import pytest
from conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_kitti_road.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(notebook, tmp_path):
    import papermill

    figures = tmp_path / "figures"
    parameters = dict(FAST=True, EPOCHS=1, SYNTHETIC_DIR=str(tmp_path / "data"), RUN_DIR=str(tmp_path / "run"),
                      FIGURES_DIR=str(figures))
    papermill.execute_notebook(str(notebook), str(tmp_path / notebook.name), parameters=parameters,
                               cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    assert (figures / "loss_curves.png").is_file()
    assert any(figures.glob("*overlay*.png"))
