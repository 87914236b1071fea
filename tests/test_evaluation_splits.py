"""Test-time augmentation, evaluation on any split and on a folder of one's own (issue 7).

Tiny synthetic data and a tiny untrained model: what is checked is which frames are scored and how the
probabilities are combined, not how good the model is.
"""


import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import save_random_tiny_model

from fcn import cli, predict
from fcn.data import camvid as camvid_reader
from fcn.data import get_dataset, synthetic
from fcn.imageio import read_rgb

IMAGE_SIZE = (64, 96)  # the size the tiny model is recorded to run at


def _save_tiny_model(path, dataset: str):
    return save_random_tiny_model(path, dataset, IMAGE_SIZE)


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    """Synthetic CamVid (train 2, val 1, test 2 frames of 48x80) and a tiny CamVid model."""
    root = tmp_path_factory.mktemp("camvid")
    data = synthetic.generate("camvid", root, seed=0, train=2, val=1, test=2, height=48, width=80)
    model_path = root / "tiny.keras"
    model = _save_tiny_model(model_path, "camvid")
    return data, model_path, model


def _reference_scores(model, image, image_size):
    # Today's inference, written out independently: resize, network, softmax.
    x = tf.image.resize(tf.convert_to_tensor(image[None]), image_size, method="bilinear")
    return tf.nn.softmax(model(tf.cast(x, tf.float32), training=False), axis=-1)[0].numpy()


def test_tta_off_is_todays_result(camvid):
    data, _, model = camvid
    image = read_rgb(next((data / "test").glob("*.png")))
    expected = _reference_scores(model, image, IMAGE_SIZE)
    assert np.array_equal(predict.predict_scores(model, image, IMAGE_SIZE), expected)
    assert np.array_equal(predict.predict_scores(model, image, IMAGE_SIZE, tta_scales=[1], tta_flip=False),
                          expected)


def test_tta_flip_gives_mirrored_predictions_for_a_mirrored_image(camvid):
    _, _, model = camvid
    image = np.random.default_rng(0).integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8)
    mirror = np.ascontiguousarray(image[:, ::-1])
    plain = predict.predict_scores(model, image, IMAGE_SIZE)
    assert not np.array_equal(predict.predict_scores(model, mirror, IMAGE_SIZE), plain[:, ::-1])  # no TTA: no
    with_flip = predict.predict_scores(model, image, IMAGE_SIZE, tta_flip=True)
    assert np.array_equal(predict.predict_scores(model, mirror, IMAGE_SIZE, tta_flip=True), with_flip[:, ::-1])
    # The average of the image's and the mirrored image's (mirrored back) probabilities, by hand:
    np.testing.assert_allclose(with_flip, (plain + _reference_scores(model, mirror, IMAGE_SIZE)[:, ::-1]) / 2,
                               atol=1e-6)
    assert np.array_equal(predict.predict_labels(model, mirror, IMAGE_SIZE, tta_flip=True),
                          predict.predict_labels(model, image, IMAGE_SIZE, tta_flip=True)[:, ::-1])


def test_tta_scales_average_probabilities_at_the_base_size(camvid):
    _, _, model = camvid
    image = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    scores = predict.predict_scores(model, image, IMAGE_SIZE, tta_scales=(0.75, 1.0, 1.25), tta_flip=True)
    assert scores.shape == (*IMAGE_SIZE, 11)
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)
    assert predict.predict_labels(model, image, IMAGE_SIZE, tta_scales=(0.75, 1.25)).shape == (48, 80)
    with pytest.raises(ValueError, match="above 0"):
        predict.predict_scores(model, image, IMAGE_SIZE, tta_scales=(1.0, 0.0))


def _labelled_pixels(info, samples) -> int:
    return sum(int((info.read_label(sample.label) != 255).sum()) for sample in samples)


def _evaluate_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert cli.main(["evaluate", "segmentation", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_split_test_scores_exactly_the_test_frames(camvid, capsys):
    data, model_path, _ = camvid
    scores = _evaluate_json(capsys, "--dataset", "camvid", "--data-dir", str(data), "--split", "test",
                            "--model", str(model_path))
    test_frames = camvid_reader.list_samples(data, "test")
    assert len(test_frames) == 2
    assert np.sum(scores["confusion_matrix"]) == _labelled_pixels(get_dataset("camvid"), test_frames)


def test_eval_dir_scores_exactly_the_folders_frames(camvid, tmp_path, capsys):
    data, model_path, _ = camvid
    held_out = tmp_path / "held_out"  # a person's copy: one test frame, no list file
    frame = camvid_reader.list_samples(data, "test")[1]
    for folder, source in (("test", frame.image), ("testannot", frame.label)):
        (held_out / folder).mkdir(parents=True)
        shutil.copy(source, held_out / folder / source.name)
    scores = _evaluate_json(capsys, "--dataset", "camvid", "--eval-dir", str(held_out), "--model", str(model_path))
    assert np.sum(scores["confusion_matrix"]) == _labelled_pixels(get_dataset("camvid"), [frame])


def test_eval_dir_of_a_one_split_dataset(tmp_path, capsys):
    root = synthetic.generate("kitti_semantics", tmp_path, seed=0, train=2, test=0, scale=0.1)
    model_path = tmp_path / "tiny.keras"
    _save_tiny_model(model_path, "kitti_semantics")
    info = get_dataset("kitti_semantics")
    frames = info.list_folder(root / "training", None)
    scores = _evaluate_json(capsys, "--dataset", "kitti_semantics", "--eval-dir", str(root / "training"),
                            "--model", str(model_path))
    assert len(frames) == 2
    assert np.sum(scores["confusion_matrix"]) == _labelled_pixels(info, frames)


@pytest.mark.parametrize(("dataset", "expected"), [
    ("kitti_semantics", "kitti_semantics has no labelled 'test' split; it has train, val"),
    ("cityscapes", "Cityscapes' test labels are not public"),
])
def test_a_split_the_dataset_lacks_is_one_line(dataset, expected, tmp_path, capsys):
    code = cli.main(["evaluate", "segmentation", "--dataset", dataset, "--data-dir", str(tmp_path),
                     "--split", "test", "--model", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    assert code == 1 and expected in err and len(err.strip().splitlines()) == 1


def test_missing_or_empty_eval_dir_is_one_line(camvid, tmp_path, capsys):
    _, model_path, _ = camvid
    (tmp_path / "empty" / "test").mkdir(parents=True)
    (tmp_path / "empty" / "testannot").mkdir()
    for folder, expected in (("missing", "evaluation folder not found"), ("empty", "no PNG images")):
        code = cli.main(["evaluate", "segmentation", "--dataset", "camvid", "--eval-dir", str(tmp_path / folder),
                         "--model", str(model_path)])
        err = capsys.readouterr().err
        assert code == 1 and expected in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_tta_options_as_a_person_runs_them(camvid, tmp_path):
    """A real `fcn` process: TTA off is byte-identical to no options; bad scales are one line, exit 2."""
    data, model_path, _ = camvid
    outputs = {}
    for name, options in (("plain", []), ("off", ["--tta-scales", "1"]), ("on", ["--tta-flip", "--tta-scales",
                                                                                 "0.75,1,1.25"])):
        result = _run_fcn("predict", "--model", model_path, "--input", data / "test", "--output", tmp_path / name,
                          "--format", "labels", *options)
        assert result.returncode == 0, result.stderr
        outputs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).glob("*.png"))}
    assert len(outputs["plain"]) == 2 and outputs["off"] == outputs["plain"] and outputs["on"].keys() == outputs["plain"].keys()
    result = _run_fcn("evaluate", "segmentation", "--dataset", "camvid", "--data-dir", data, "--split", "test",
                      "--model", model_path, "--tta-flip", "--tta-scales", "0.75,0", "--json")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--tta-scales" in result.stderr and "above 0" in result.stderr


def _run_fcn(*args):
    return subprocess.run([sys.executable, "-m", "fcn.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
