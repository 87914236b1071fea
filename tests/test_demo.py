"""The demo's main job on a small synthetic set: train, score, figures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

from fcn import demo
from fcn.data import synthetic
from fcn.imageio import read_rgb


def test_demo_trains_scores_and_saves_figures(tmp_path):
    data_dir = synthetic.write_kitti_road(tmp_path / "data", images_per_category=4, test_images_per_category=1,
                                          scale=0.25, seed=3)
    scores = demo.run_demo(data_dir=data_dir, run_dir=tmp_path / "run", figures_dir=tmp_path / "fig", epochs=1)
    assert set(scores) == {"um_road", "umm_road", "uu_road"}
    assert all(0 < s["MaxF"] <= 1 for s in scores.values())
    assert json.loads((tmp_path / "run" / "scores.json").read_text()) == scores
    for name in ("loss_curves", "test_overlays"):
        assert read_rgb(tmp_path / "fig" / f"{name}.png").shape[2] == 3


def test_demo_data_is_written_once(tmp_path):
    root = demo.prepare_synthetic_kitti_road(tmp_path)
    marker = root / "SYNTHETIC.md"
    assert marker.is_file()
    first = sorted(p.name for p in (root / "training" / "image_2").iterdir())
    assert len(first) == 3 * demo.DEMO_IMAGES_PER_CATEGORY
    stamp = marker.stat().st_mtime_ns
    assert demo.prepare_synthetic_kitti_road(tmp_path) == root and marker.stat().st_mtime_ns == stamp
