"""Starting a run from another run's model (--init-from): e.g. pre-trained on synthetic frames, then real data."""

import subprocess
import sys

import numpy as np
import pytest

from fcn import modelfile
from fcn.data import synthetic
from fcn.model import build_fcn8
from fcn.train import fast_config, init_from_model, train


@pytest.fixture(scope="module")
def road_data(tmp_path_factory):
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("road"), images_per_category=4,
                                      test_images_per_category=1, scale=0.25, seed=5)


@pytest.fixture(scope="module")
def source_model(tmp_path_factory):
    """A saved 2-class vgg16_mini FCN-8 with random weights (what a pre-training run leaves)."""
    path = tmp_path_factory.mktemp("source") / "best.keras"
    model = build_fcn8(2, encoder="vgg16_mini", weights=None)
    info = modelfile.model_info("kitti_road", ("not road", "road"), (64, 192), "vgg16_mini", road_class=1)
    modelfile.save_model(model, path, info)
    return path, model


def _weights_by_layer(model):
    return {i: layer.get_weights() for i, layer in enumerate(model.layers) if layer.weights}


def test_every_fitting_layer_is_copied_and_other_class_counts_keep_their_score_layers(source_model):
    path, source = source_model
    target = build_fcn8(11, encoder="vgg16_mini", weights=None)  # e.g. CamVid after road pre-training
    before = _weights_by_layer(target)
    copied, kept = init_from_model(target, path, "vgg16_mini")
    after, original = _weights_by_layer(target), _weights_by_layer(source)
    assert copied + len(kept) == len(after) and kept  # the score layers differ in shape
    for index, weights in after.items():
        name = target.layers[index].name
        fits = [w.shape for w in weights] == [w.shape for w in original[index]]
        expected = original[index] if fits else before[index]
        assert (name in kept) != fits
        assert all(np.array_equal(a, b) for a, b in zip(weights, expected, strict=True)), name
    assert all("score" in name or "upscore" in name for name in kept), kept


def test_a_model_with_another_encoder_is_refused(source_model):
    path, _ = source_model
    with pytest.raises(ValueError, match=r"best\.keras: a vgg16_mini model cannot start a mobilenet_v2 run"):
        init_from_model(build_fcn8(2, encoder="mobilenet_v2", weights=None), path, "mobilenet_v2")


@pytest.mark.slow
def test_training_starts_from_the_model_and_a_resume_does_not_copy_it_again(source_model, road_data, tmp_path):
    path, source = source_model
    config = fast_config(data_dir=str(road_data), run_dir=str(tmp_path / "run"), epochs=1, learning_rate=1e-9,
                         max_train_images=2, max_val_images=2, init_from=str(path), augment=False)
    model, _ = train(config, verbose=0)
    # With a learning rate of 1e-9 one epoch leaves the copied kernels where they were.
    for trained, original in zip(model.layers, source.layers, strict=True):
        for a, b in zip(trained.get_weights(), original.get_weights(), strict=True):
            if a.ndim == 4:  # convolution kernels (BatchNorm statistics would move)
                np.testing.assert_allclose(a, b, atol=1e-6)
    # Resuming for a second epoch loads the checkpoint; the source file is no longer needed.
    moved = tmp_path / "moved.keras"
    path.rename(moved)
    try:
        config.epochs = 2
        train(config, verbose=0)
    finally:
        moved.rename(path)


@pytest.mark.slow
def test_the_command_line_says_where_it_started_and_names_a_missing_file(source_model, road_data, tmp_path):
    path, _ = source_model
    command = [sys.executable, "-m", "fcn", "train", "--fast", "--data-dir", str(road_data), "--epochs", "1",
               "--max-train-images", "2", "--max-val-images", "2"]
    done = subprocess.run([*command, "--run-dir", str(tmp_path / "a"), "--init-from", str(path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{path}: started from its weights" in done.stdout
    missing = tmp_path / "nowhere.keras"
    done = subprocess.run([*command, "--run-dir", str(tmp_path / "b"), "--init-from", str(missing)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert f"{missing}: model to start from (init_from) not found" in done.stderr.strip().splitlines()[-1]
