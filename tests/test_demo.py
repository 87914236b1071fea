"""The demo's main job on a small synthetic set: train, score, figures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import inspect
import json
import re
import shutil
import subprocess

import pytest
from conftest import REPO_ROOT

from fcn import cli, demo
from fcn.data import synthetic
from fcn.imageio import read_rgb


@pytest.mark.slow
def test_demo_trains_scores_and_saves_figures(tmp_path):
    data_dir = synthetic.write_kitti_road(tmp_path / "data", images_per_category=4, test_images_per_category=1,
                                          scale=0.25, seed=3)
    scores = demo.run_demo(data_dir=data_dir, run_dir=tmp_path / "run", figures_dir=tmp_path / "fig", epochs=1)
    assert set(scores) == {"um_road", "umm_road", "uu_road"}
    assert all(0 < s["MaxF"] <= 1 for s in scores.values())
    assert json.loads((tmp_path / "run" / "scores.json").read_text()) == scores
    for name in ("loss_curves", "test_overlays"):
        assert read_rgb(tmp_path / "fig" / f"{name}.png").shape[2] == 3


@pytest.mark.slow
def test_demo_data_is_written_once(tmp_path):
    root = demo.prepare_synthetic_kitti_road(tmp_path)
    marker = root / "SYNTHETIC.md"
    assert marker.is_file()
    first = sorted(p.name for p in (root / "training" / "image_2").iterdir())
    assert len(first) == 3 * demo.DEMO_IMAGES_PER_CATEGORY
    stamp = marker.stat().st_mtime_ns
    assert demo.prepare_synthetic_kitti_road(tmp_path) == root and marker.stat().st_mtime_ns == stamp


def _git_ignores(path: str) -> bool:
    """Whether git ignores path (relative to the repository root); skips where there is no git checkout."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO_ROOT)
    assert result.returncode in (0, 1), f"git check-ignore failed on {path}"
    return result.returncode == 0


def test_the_demo_writes_its_figures_where_git_ignores_them():
    """A clone stays clean after `make demo`; only `make figures` rewrites the committed figures/demo/."""
    args = cli.build_parser().parse_args(["demo"])
    assert args.figures_dir is None and inspect.signature(demo.run_demo).parameters["run_dir"].default == args.run_dir
    default = str(demo.default_figures_dir(args.run_dir))
    make_demo = re.search(r"^demo:.*\n\t.*--figures-dir (\S+)", (REPO_ROOT / "Makefile").read_text(), re.M)
    for folder in {default, make_demo.group(1)}:
        assert _git_ignores(f"{folder}/test_overlays.png"), f"{folder} is not git-ignored"
    for written in ("figures/01_kitti_road/loss_curves.png", "runs/kitti_road-notebook/best.keras",
                    "data/synthetic/SYNTHETIC.md"):  # what a notebook run writes (FIGURES_DIR, RUN_DIR, data)
        assert _git_ignores(written), f"{written} is not git-ignored"
    assert not _git_ignores("figures/demo/test_overlays.png")  # the curated, committed figure
