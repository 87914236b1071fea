"""End to end on real KITTI Road files: train a few steps, resume, predict devkit files, evaluate."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import csv
import json
import math

import keras
import numpy as np
import pytest

from fcn import cli, metrics, modelfile, predict
from fcn.data import kitti_road
from fcn.imageio import read_png_size, read_unchanged
from fcn.train import TrainConfig, fast_config, train


@pytest.fixture(scope="module")
def trained_run(kitti_road_half_root, tmp_path_factory):
    """One short real training run (light encoder, 8 half-resolution images, 2 epochs)."""
    run_dir = tmp_path_factory.mktemp("runs") / "kitti_road-fast"
    code = cli.main(["train", "--dataset", "kitti_road", "--data-dir", str(kitti_road_half_root),
                     "--run-dir", str(run_dir), "--fast", "--epochs", "2", "--image-size", "64x192"])
    assert code == 0
    return run_dir


@pytest.mark.slow
def test_train_writes_the_run_folder(trained_run):
    for name in ("config.json", "history.csv", "best.keras", "final.keras"):
        assert (trained_run / name).is_file(), name
    config = TrainConfig.load(trained_run / "config.json")
    assert config.image_size == (64, 192) and config.epochs == 2 and config.encoder == "vgg16_mini"
    with open(trained_run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["val_loss"])) for r in rows)
    assert [p.name for p in (trained_run / "checkpoint").iterdir()] == ["epoch-0002.keras"]  # the last only


def test_training_reduces_the_loss(trained_run):
    with open(trained_run / "history.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert losses[-1] < losses[0]


def test_predict_devkit_then_evaluate(trained_run, kitti_road_root, tmp_path, capsys):
    image_dir = kitti_road_root / "training" / "image_2"
    results = tmp_path / "results"
    assert cli.main(["predict", "--model", str(trained_run / "best.keras"), "--input", str(image_dir),
                     "--output", str(results), "--format", "devkit"]) == 0
    written = sorted(p.name for p in results.iterdir())
    assert written == sorted(kitti_road.gt_name(p.name) for p in image_dir.glob("*.png"))
    for name in written:
        result = read_unchanged(results / name)
        assert result.dtype == np.uint8 and result.ndim == 2
        assert result.shape == read_png_size(kitti_road_root / "training" / "gt_image_2" / name)
    capsys.readouterr()
    gt_dir = kitti_road_root / "training" / "gt_image_2"
    assert cli.main(["evaluate", "kitti-road", "--gt-dir", str(gt_dir), "--results-dir", str(results),
                     "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"um_road", "umm_road", "uu_road"}  # no lane results were written
    expected = metrics.evaluate_kitti_road(gt_dir, results)
    for category, values in scores.items():
        assert set(values) >= {"MaxF", "AvgPrec", "PRE_wp", "REC_wp", "FPR_wp", "FNR_wp"}
        assert values["MaxF"] == expected[category]["MaxF"]
        assert 0 < values["MaxF"] <= 1


def test_predict_overlay_and_in_memory_scores_agree_with_files(trained_run, kitti_road_root, tmp_path):
    model = predict.load_model(trained_run / "best.keras")
    image_size = predict.run_image_size(trained_run / "best.keras")
    assert image_size == (64, 192)
    samples = kitti_road.list_samples(kitti_road_root)[:4]
    overlays = predict.write_predictions(model, [s.image for s in samples], tmp_path / "overlay", image_size,
                                         "overlay", progress=False)
    assert [p.name for p in overlays] == [s.image.name for s in samples]
    assert read_unchanged(overlays[0]).shape == (375, 1242, 3)
    # Scores computed in memory equal the devkit route through files.
    in_memory = predict.evaluate_road(model, samples, image_size)
    predict.write_predictions(model, [s.image for s in samples], tmp_path / "devkit", image_size, progress=False)
    from_files = metrics.evaluate_kitti_road(kitti_road_root / "training" / "gt_image_2", tmp_path / "devkit",
                                             categories=["um_road"])
    assert in_memory["um_road"]["MaxF"] == from_files["um_road"]["MaxF"]


@pytest.mark.slow
def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert cli.main(["train", "--data-dir", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "r"),
                     "--fast"]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert cli.main(["predict", "--model", str(tmp_path / "none.keras"), "--input", str(tmp_path),
                     "--output", str(tmp_path / "o")]) == 1
    assert "none.keras: model file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--data-dir", "x", "--run-dir", "y", "--image-size", "160by576"])


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_interrupted_run_resumes_where_it_stopped(kitti_road_half_root, tmp_path, precision):
    mixed_precision = precision == "float16"
    config = fast_config(data_dir=str(kitti_road_half_root), run_dir=str(tmp_path / "run"), epochs=3,
                         image_size=(32, 96), max_train_images=4, max_val_images=2, precision=precision)
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0, extra_callbacks=[_Interrupt()])
    assert json.loads((tmp_path / "run" / "state.json").read_text())["epochs_done"] == 1
    first_epoch = modelfile.load_model(tmp_path / "run" / "checkpoint" / "epoch-0001.keras")
    model, history = train(config, verbose=0)
    assert len(history["loss"]) == 3  # the whole run's history, epoch 1 restored, not redone
    with open(tmp_path / "run" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]
    # The optimizer's state came back with the weights: its step count goes on from epoch 1's. The loss-scale
    # optimizer does not count a step whose gradients overflowed, and halves its scale (from its initial_scale)
    # at each one: the counted and the skipped steps are the run's 3 x 2 only if neither was reset by the resume.
    optimizer = model.optimizer
    steps = int(optimizer.iterations.numpy())
    skipped = int(math.log2(optimizer.initial_scale / float(optimizer.dynamic_scale.numpy()))) if mixed_precision else 0
    assert steps + skipped == 3 * 2 and steps > 0
    assert not np.array_equal(model.get_layer("fc6").get_weights()[0], first_epoch.get_layer("fc6").get_weights()[0])


@pytest.mark.slow
@pytest.mark.parametrize("option", ["float16", "bfloat16", "jit_compile", "class_balancing"])
def test_training_options_run_on_cpu(kitti_road_half_root, tmp_path, option):
    setting = {"precision": option} if option.endswith("float16") else {option: True}
    config = fast_config(data_dir=str(kitti_road_half_root), run_dir=str(tmp_path / option), epochs=1,
                         image_size=(32, 96), max_train_images=4, max_val_images=2, **setting)
    model, history = train(config, verbose=0)
    assert math.isfinite(history["loss"][0]) and math.isfinite(history["val_loss"][0])
    assert model.output.dtype == "float32"
    if option.endswith("float16"):
        assert model.get_layer("fc6").compute_dtype == option
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    if option == "class_balancing":
        assert len(list((tmp_path / ".cache").glob("class_weights_2_*.json"))) == 1
