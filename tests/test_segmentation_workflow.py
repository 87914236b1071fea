"""Multi-class chain on real KITTI semantics files: train briefly, evaluate from the command line."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

import numpy as np
import pytest

from fcn import cli, experiment, metrics, predict
from fcn.data import cityscapes, get_dataset
from fcn.imageio import read_rgb
from fcn.model import build_fcn8
from fcn.train import fast_config, train


def test_prepare_data_is_explicit(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        experiment.prepare_data("camvid", tmp_path / "nowhere", tmp_path, fast=True)
    with pytest.raises(ValueError, match="no synthetic writer"):
        experiment.prepare_data("kitti_road", "synthetic", tmp_path, fast=True)
    root, is_synthetic = experiment.prepare_data("camvid", "synthetic", tmp_path, fast=True)
    assert is_synthetic and (root / "SYNTHETIC.md").is_file()
    assert experiment.prepare_data("camvid", root, tmp_path, fast=True) == (root, False)


@pytest.mark.slow
def test_train_then_evaluate_segmentation_cli(kitti_semantics_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    _, history = train(fast_config(dataset="kitti_semantics", data_dir=str(kitti_semantics_root),
                                   run_dir=str(run_dir), epochs=1, max_train_images=4, max_val_images=None,
                                   class_balancing=True), verbose=0)
    capsys.readouterr()
    assert cli.main(["evaluate", "segmentation", "--dataset", "kitti_semantics", "--data-dir",
                     str(kitti_semantics_root), "--split", "val", "--model", str(run_dir / "final.keras"),
                     "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    info = get_dataset("kitti_semantics")
    assert list(scores["class_iou"]) == list(info.class_names)
    present = [v for v in scores["class_iou"].values() if v is not None]  # null = absent from both
    assert scores["mean_iou"] == pytest.approx(np.mean(present), abs=1e-12)
    # The score that picked the best epoch during training is this same validation mean IoU.
    assert history["val_miou"][0] == pytest.approx(scores["mean_iou"], abs=1e-9)
    # The confusion matrix covers exactly the labelled pixels of the validation frames.
    _, val = info.list_train_val(kitti_semantics_root, 0.2, 0)
    labelled = sum(int(np.sum(info.read_label(s.label) != 255)) for s in val)
    matrix = np.array(scores["confusion_matrix"])
    assert matrix.shape == (19, 19) and matrix.sum() == labelled
    assert scores["pixel_accuracy"] == pytest.approx(np.trace(matrix) / labelled)
    # Category IoU = IoU of the block-summed matrix (flat = road + sidewalk, ...).
    flat = matrix[:2, :2].sum()
    flat_iou = flat / (matrix[:2].sum() + matrix[:, :2].sum() - flat)
    assert list(scores["category_iou"]) == list(metrics.CITYSCAPES_CATEGORIES)
    assert scores["category_iou"]["flat"] == pytest.approx(flat_iou)


def test_full_resolution_cityscapes_inference(cityscapes_root):
    # 2048x1024 frames: the network runs at the training size, the probabilities come back at full size.
    sample = cityscapes.list_samples(cityscapes_root, "train")[0]
    model = build_fcn8(19, encoder="vgg16_mini", weights=None)
    probabilities = predict.predict_probabilities(model, read_rgb(sample.image), (128, 256))
    assert probabilities.shape == (1024, 2048, 19)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-4)
