"""Exports (fcn/export.py) and the TFLite runner (fcn/tflite_runner.py): each checked against the Keras model.

One small model (vgg16_mini, 56x88, road vs not road) is trained for 20 steps on synthetic street scenes, so
that its predictions are not all one class; every export is compared with it on held-out scenes.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn import cli, export, modelfile, predict, tflite_runner
from fcn.data import kitti_road, synthetic
from fcn.model import build_fcn8

IMAGE_SIZE = (56, 88)  # not multiples of 32: PadToMultiple pads to 64x96 and CropToReference crops back
ROAD = synthetic.CAMVID_CLASSES.index("Road")
FCN = Path(sys.executable).parent / "fcn"  # the console script of the environment under test
# TensorFlow, imported by this process, sets TF_CPP_MIN_LOG_LEVEL=1; a person's shell has none (fcn then hides
# TensorFlow's warning lines), and the commands run here as they would there.
ENV = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}


def run_fcn(*args) -> subprocess.CompletedProcess:
    return subprocess.run([FCN, *map(str, args)], capture_output=True, text=True, timeout=300, env=ENV)


def _scenes(key: str, count: int):
    scenes = [synthetic.render_scene(synthetic.scene_rng(0, key, i), *IMAGE_SIZE) for i in range(count)]
    return np.stack([s.image for s in scenes]), np.stack([(s.labels == ROAD).astype(np.int32) for s in scenes])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A .keras file (with fcn.json) of a model trained a little, and held-out scenes it was not trained on."""
    folder = tmp_path_factory.mktemp("export")
    images, labels = _scenes("train", 16)
    keras.utils.set_random_seed(0)
    model = build_fcn8(2, encoder="vgg16_mini", weights=None)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images.astype(np.float32), labels, batch_size=4, epochs=5, verbose=0)  # 20 steps
    info = modelfile.model_info("kitti_road", kitti_road.CLASS_NAMES, IMAGE_SIZE, "vgg16_mini", road_class=1)
    path = modelfile.save_model(model, folder / "best.keras", info)
    held_out, _ = _scenes("held-out", 8)
    return {"folder": folder, "path": path, "model": model, "held_out": list(held_out)}


@pytest.fixture(scope="module")
def road_data(tmp_path_factory) -> Path:
    """A synthetic KITTI Road set (data_road root): calibration source and frames to predict."""
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=4,
                                      test_images_per_category=1, scale=0.2, seed=3)


@pytest.fixture(scope="module")
def float_exports(trained):
    """The float32 and float16 TFLite files of the trained model, written by the library."""
    return {quantize: export.export_tflite(trained["model"], trained["folder"] / f"{quantize}.tflite", IMAGE_SIZE,
                                           quantize) for quantize in ("none", "fp16")}


@pytest.fixture(scope="module")
def int8_export(trained, road_data):
    """`fcn export --quantize int8` as a person runs it, calibrated on the dataset root's training images."""
    output = trained["folder"] / "int8.tflite"
    result = run_fcn("export", "--model", trained["path"], "--format", "tflite", "--quantize", "int8",
                     "--calibration-dir", road_data, "--output", output)
    return output, result


@pytest.mark.slow  # the `trained` fixture trains for 20 steps
def test_the_trained_model_predicts_both_classes(trained):
    road_share = np.mean([predict.predict_labels(trained["model"], image).mean() for image in trained["held_out"]])
    assert 0.1 < road_share < 0.9, road_share  # else agreement between exports would say little


@pytest.mark.slow
def test_tflite_float32_agrees_with_keras(trained, float_exports):
    check = export.compare_outputs(trained["model"], tflite_runner.TFLiteModel(float_exports["none"]),
                                   trained["held_out"], IMAGE_SIZE)
    assert check["max_abs_logit_diff"] <= 1e-4, check  # measured 7e-7, with logits up to 2.0
    assert check["pixel_agreement"] >= 0.9999, check


@pytest.mark.slow
def test_tflite_float16_is_close_and_half_the_size(trained, float_exports):
    check = export.compare_outputs(trained["model"], tflite_runner.TFLiteModel(float_exports["fp16"]),
                                   trained["held_out"], IMAGE_SIZE)
    assert check["max_abs_logit_diff"] <= 0.01 * check["logit_range"], check  # measured 2.6e-4 of the range
    assert check["pixel_agreement"] >= 0.999, check
    sizes = {q: path.stat().st_size for q, path in float_exports.items()}
    assert sizes["fp16"] < 0.55 * sizes["none"], sizes


@pytest.mark.slow
def test_cli_int8_export_calibrates_on_the_dataset_and_describes_itself(int8_export, trained):
    output, result = int8_export
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip() == ""  # no converter chatter
    assert f"wrote {output} (tflite, quantize int8, input 56x88" in result.stdout
    assert re.search(r"on 8 of the calibration images: the same class on \d+\.\d+ % of pixels", result.stdout)
    info = json.loads(tflite_runner.info_path(output).read_text())
    assert info["class_names"] == list(kitti_road.CLASS_NAMES) and info["road_class"] == 1
    assert info["image_size"] == list(IMAGE_SIZE)
    assert info["export"] == {"format": "tflite", "quantize": "int8", "source": "best.keras"}
    assert output.stat().st_size < 0.3 * trained["path"].stat().st_size
    assert not list(output.parent.glob(".*tmp*"))  # written through temporary names, nothing left behind


@pytest.mark.slow
def test_int8_argmax_agrees_with_float_on_held_out_scenes(int8_export, trained):
    output, result = int8_export
    assert result.returncode == 0, result.stderr[-3000:]
    int8 = tflite_runner.TFLiteModel(output)
    assert int8.input_dtype == np.uint8  # camera bytes go in as they are
    check = export.compare_outputs(trained["model"], int8, trained["held_out"], IMAGE_SIZE)
    assert check["pixel_agreement"] >= 0.95, check  # measured 98.9 % of the 39,424 pixels


@pytest.mark.slow
def test_tflite_has_a_fixed_size_and_builtin_ops_only(float_exports, capsys):
    assert tflite_runner.input_size(float_exports["none"]) == IMAGE_SIZE
    capsys.readouterr()
    tf.lite.experimental.Analyzer.analyze(model_path=str(float_exports["none"]))
    ops = set(re.findall(r"Op#\d+ (\w+)\(", capsys.readouterr().out))
    # Conv2DTranspose, PadToMultiple and CropToReference at a fixed size: builtins, no Flex (TF) ops.
    assert {"TRANSPOSE_CONV", "PAD", "STRIDED_SLICE", "CONV_2D"} <= ops, ops
    assert not any(op.startswith(("FLEX", "CUSTOM")) for op in ops), ops


@pytest.mark.slow
def test_runner_resizes_frames_of_another_size_like_predict(trained, float_exports):
    tflite = predict.load_model(float_exports["none"])
    image = synthetic.render_scene(synthetic.scene_rng(0, "other size", 0), 75, 130).image
    logits = tflite(image[None].astype(np.float32))
    assert logits.shape == (1, 75, 130, 2) and logits.dtype == np.float32
    keras_labels = predict.predict_labels(trained["model"], image, IMAGE_SIZE)
    # The runner resizes logits, predict resizes probabilities: the same classes except at a few edges.
    assert (predict.predict_labels(tflite, image) == keras_labels).mean() >= 0.99
    assert (predict.predict_labels(tflite, image, IMAGE_SIZE) == keras_labels).mean() >= 0.9999


@pytest.mark.slow
def test_evaluate_scores_a_tflite_model_like_its_keras_model(trained, float_exports, road_data):
    samples = kitti_road.list_samples(road_data)
    tflite = predict.load_model(float_exports["none"])
    assert predict.run_image_size(float_exports["none"]) == IMAGE_SIZE
    keras_scores = predict.evaluate_road(trained["model"], samples, IMAGE_SIZE)
    tflite_scores = predict.evaluate_road(tflite, samples, IMAGE_SIZE)
    for category, scores in keras_scores.items():
        assert tflite_scores[category]["MaxF"] == pytest.approx(scores["MaxF"], abs=1e-3), category


@pytest.mark.slow
def test_cli_predict_runs_a_tflite_model(int8_export, road_data, tmp_path):
    output, _ = int8_export
    images = road_data / "testing" / "image_2"
    result = run_fcn("predict", "--model", output, "--input", images, "--output", tmp_path / "out", "--format", "devkit")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "running the network at 56x88 (from the model file)" in result.stdout
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(kitti_road.gt_name(p.name) for p in images.glob("*.png"))


@pytest.mark.slow
def test_saved_model_export_serves_the_same_logits(trained):
    folder = export.export_saved_model(trained["model"], trained["folder"] / "saved_model", IMAGE_SIZE,
                                       {"image_size": list(IMAGE_SIZE)})
    assert json.loads((folder / "fcn.json").read_text()) == {"image_size": list(IMAGE_SIZE)}
    served = tf.saved_model.load(str(folder)).signatures["serving_default"]
    batch = np.stack(trained["held_out"][:2]).astype(np.float32)
    (logits,) = served(tf.constant(batch)).values()
    np.testing.assert_allclose(logits.numpy(), trained["model"](batch, training=False).numpy(), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("arguments, output, message", [
    (["--format", "tflite", "--quantize", "int8"], "m.tflite",
     "--quantize int8 needs calibration images: pass --calibration-dir"),
    (["--format", "saved_model", "--quantize", "fp16"], "m", "quantization applies to --format tflite only"),
    (["--format", "tflite"], "m.tfl", "m.tfl: a TFLite export must end in .tflite"),
    (["--format", "tflite", "--calibration-dir", "missing"], "m.tflite", "missing: calibration folder not found"),
])
def test_cli_export_refuses_bad_settings_in_one_line(trained, tmp_path, capsys, arguments, output, message):
    arguments = [str(tmp_path / "missing") if a == "missing" else a for a in arguments]
    code = cli.main(["export", "--model", str(trained["path"]), "--output", str(tmp_path / output), *arguments])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_broken_tflite_files_are_reported_by_name(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer" * 64)
    with pytest.raises(modelfile.ModelFileError, match=f"{broken}: not a TFLite model, or corrupt"):
        predict.load_model(broken)
    with pytest.raises(FileNotFoundError, match="missing.tflite: model file not found"):
        predict.read_model_info(tmp_path / "missing.tflite")
    assert predict.read_model_info(broken) is None  # a file without a description, as an old .keras
    tflite_runner.info_path(broken).write_text("{")
    with pytest.raises(modelfile.ModelFileError, match="broken.tflite.json: model description is corrupt"):
        predict.read_model_info(broken)


def test_calibration_images_are_spread_over_a_folder(tmp_path, road_data):
    assert export.spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert export.spread(list(range(3)), 8) == [0, 1, 2]
    from_root = export.calibration_images(road_data, "kitti_road", count=5)
    assert len(from_root) == 5 and all(p.parent.name == "image_2" and "training" in p.parts for p in from_root)
    with pytest.raises(FileNotFoundError, match="no .png or .jpg images to calibrate on, nor the root of a kitti_road"):
        export.calibration_images(tmp_path, "kitti_road")
