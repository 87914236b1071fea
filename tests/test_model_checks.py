"""Model files checked as a person meets them: `fcn` run as a command, its exit code and its one-line errors.

A model is checked against the data it is used with; the size it runs at travels inside the file; a broken
file is called broken; plain Keras loads it after `import fcn`; a huge image is predicted in bounded memory
and an impossible one is refused before any work; options are checked before work starts.
"""

import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
import zlib

import cv2
import keras
import numpy as np
import pytest

from fcn import modelfile, predict
from fcn.data import camvid, cvc_kitti, get_dataset, synthetic
from fcn.imageio import read_png_size, read_rgb, read_unchanged
from fcn.model import build_fcn8
from fcn.train import fast_config, train

TRAIN_SIZE = (32, 96)  # height x width the tiny models are trained at
CITYSCAPES_SIZE = (64, 128)  # the size written into the untrained 19-class model
COMMAND_TIMEOUT_S = 300


# ----------------------------------------------------------------------------------------------------
# Helpers: the command as a person runs it.


def _person_env() -> dict:
    # What a person's shell has: no log-level setting that other tests put into this process.
    return {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}


def run_fcn(*args, cwd) -> subprocess.CompletedProcess:
    """`fcn ARGS` in a fresh process (stdout and stderr as text)."""
    return subprocess.run([sys.executable, "-m", "fcn.cli", *map(str, args)], cwd=cwd, env=_person_env(),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def one_line_error(result: subprocess.CompletedProcess, exit_code: int = 1) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    if exit_code == 1:
        assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def strip_description(source, target) -> None:
    """Rewrite a .keras zip without its fcn.json member (a file written by plain Keras looks like this)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        assert modelfile.INFO_MEMBER in old.namelist()
        for item in old.infolist():
            if item.filename != modelfile.INFO_MEMBER:
                new.writestr(item, old.read(item))


def write_png_header(path, height, width) -> None:
    """A real 8x8 PNG whose IHDR claims height x width (with a valid CRC): only its header says it is big."""
    ok, encoded = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC of "IHDR" + its 13 data bytes
    path.write_bytes(bytes(data))


def run_measuring_peak_rss(args, cwd, log_dir) -> tuple[int, int]:
    """Run `fcn ARGS`; returns (exit code, peak resident memory of that process in bytes).

    os.wait4 gives the rusage of exactly this child, so nothing else this test process started counts.
    """
    with open(log_dir / "stdout.txt", "w") as out, open(log_dir / "stderr.txt", "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "fcn.cli", *map(str, args)], cwd=cwd,
                                   env=_person_env(), stdout=out, stderr=err)
        timer = threading.Timer(COMMAND_TIMEOUT_S, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kilobytes on Linux
    return process.returncode, usage.ru_maxrss * scale


# ----------------------------------------------------------------------------------------------------
# Fixtures: synthetic data in the real layouts, two tiny trained models and one untrained 19-class model.


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    return {
        "camvid": synthetic.generate("camvid", root, train=4, val=2, test=0, height=64, width=96, seed=0),
        "cvc_kitti": synthetic.generate("cvc_kitti", root, train=1, val=2, height=64, width=96, seed=0),
        "kitti_road": synthetic.generate("kitti_road", root, images_per_category=3, test_images_per_category=1,
                                         scale=0.25, seed=0),
    }


def _train_tiny(dataset, data_dir, runs) -> "os.PathLike":
    config = fast_config(dataset=dataset, data_dir=str(data_dir), run_dir=str(runs / dataset),
                         image_size=TRAIN_SIZE, max_train_images=4, max_val_images=2, epochs=1)
    train(config, verbose=0)
    return runs / dataset / "best.keras"


@pytest.fixture(scope="module")
def camvid_model(data, tmp_path_factory):
    return _train_tiny("camvid", data["camvid"], tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def road_model(data, tmp_path_factory):
    return _train_tiny("kitti_road", data["kitti_road"], tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def road_images(data):
    """KITTI Road test images (KITTI names, about 310x93)."""
    return data["kitti_road"] / "testing" / "image_2"


@pytest.fixture(scope="module")
def cityscapes_model(tmp_path_factory):
    """An untrained 19-class model file described as a Cityscapes model that runs at 64x128."""
    keras.utils.set_random_seed(0)
    model = build_fcn8(19, encoder="vgg16_mini", weights=None)
    # The score layer starts at zero (all classes equally likely); random scores give real label maps.
    kernel, bias = model.get_layer("score_fr").get_weights()
    model.get_layer("score_fr").set_weights([np.random.default_rng(0).normal(size=kernel.shape), bias])
    info = modelfile.model_info("cityscapes", get_dataset("cityscapes").class_names, CITYSCAPES_SIZE, "vgg16_mini")
    return modelfile.save_model(model, tmp_path_factory.mktemp("cityscapes") / "model.keras", info)


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    """A folder with one ordinary 96x128 image."""
    folder = tmp_path_factory.mktemp("small")
    cv2.imwrite(str(folder / "frame.png"), np.random.default_rng(1).integers(0, 256, (96, 128, 3), np.uint8))
    return folder


# ----------------------------------------------------------------------------------------------------
# 1. A model is checked against the data it is used with.


@pytest.mark.slow
def test_camvid_model_gives_no_kitti_road_results(camvid_model, road_images, tmp_path):
    output = tmp_path / "results"
    result = run_fcn("predict", "--model", camvid_model, "--input", road_images, "--output", output,
                     "--format", "devkit", cwd=tmp_path)
    line = one_line_error(result)
    assert str(camvid_model) in line and "not a kitti road model" in line.lower()
    assert not output.exists()


@pytest.mark.slow
def test_camvid_model_is_not_scored_on_cvc_classes(camvid_model, data, tmp_path):
    # Same number of classes (11), other classes in another order: a count check alone would let it through.
    assert len(camvid.CLASS_NAMES) == len(cvc_kitti.CLASS_NAMES) == 11
    assert camvid.CLASS_NAMES != cvc_kitti.CLASS_NAMES
    result = run_fcn("evaluate", "segmentation", "--dataset", "cvc_kitti", "--data-dir", data["cvc_kitti"],
                     "--model", camvid_model, "--json", cwd=tmp_path)
    line = one_line_error(result)
    assert ", ".join(camvid.CLASS_NAMES) in line and ", ".join(cvc_kitti.CLASS_NAMES) in line
    assert result.stdout == ""  # no scores


@pytest.mark.slow
def test_road_model_is_not_scored_on_camvid(road_model, data, tmp_path):
    result = run_fcn("evaluate", "segmentation", "--dataset", "camvid", "--data-dir", data["camvid"],
                     "--model", road_model, "--json", cwd=tmp_path)
    line = one_line_error(result)
    assert re.search(r"\b2 classes\b", line) and re.search(r"\b11\b", line), line
    assert "camvid" in line and result.stdout == ""


@pytest.mark.slow
def test_model_without_description_gives_no_kitti_road_results(road_model, road_images, tmp_path):
    # Even a real KITTI Road model: without fcn.json nothing says which output channel is road.
    stripped = tmp_path / "plain" / "model.keras"
    stripped.parent.mkdir()
    strip_description(road_model, stripped)
    output = tmp_path / "results"
    result = run_fcn("predict", "--model", stripped, "--input", road_images, "--output", output,
                     "--format", "devkit", cwd=tmp_path)
    line = one_line_error(result)
    assert str(stripped) in line and "kitti road" in line.lower()
    assert not output.exists()


# ----------------------------------------------------------------------------------------------------
# 2. The size a model runs at is recorded in the model file.


@pytest.mark.slow
def test_copied_model_runs_at_its_training_size(road_model, road_images, tmp_path):
    copy = tmp_path / "elsewhere" / "copied.keras"
    copy.parent.mkdir()
    shutil.copyfile(road_model, copy)
    assert (road_model.parent / "config.json").is_file() and not (copy.parent / "config.json").exists()
    assert predict.run_image_size(copy) == TRAIN_SIZE

    outputs = {}
    for name, model_path in (("original", road_model), ("copy", copy)):
        result = run_fcn("predict", "--model", model_path, "--input", road_images, "--output", tmp_path / name,
                         "--format", "devkit", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}" in result.stdout
        outputs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
    expected_names = sorted(p.name.replace("_", "_road_", 1) for p in road_images.glob("*.png"))
    assert sorted(outputs["original"]) == expected_names
    assert outputs["copy"] == outputs["original"]

    # Not identical by accident: the network run at each image's own size gives other confidences.
    model = predict.load_model(copy)
    image_path = sorted(road_images.glob("*.png"))[0]
    written = read_unchanged(tmp_path / "copy" / expected_names[0])
    image = read_rgb(image_path)
    assert written.shape == image.shape[:2]
    assert np.array_equal(written, predict.predict_road_confidence(model, image, TRAIN_SIZE))
    assert not np.array_equal(written, predict.predict_road_confidence(model, image, None))


# ----------------------------------------------------------------------------------------------------
# 3. A broken model file is called broken; a missing one missing.


def _damage_weights(data: bytes) -> bytes:
    # Flip bytes in the middle of the weights member, leaving the zip's directory intact.
    damaged = bytearray(data)
    position = len(damaged) // 2
    damaged[position:position + 64] = bytes(b ^ 0xFF for b in damaged[position:position + 64])
    return bytes(damaged)


BREAKAGES = {
    "truncated": lambda data: data[: len(data) // 2],
    "random bytes": lambda data: np.random.default_rng(0).bytes(4096),
    "empty": lambda data: b"",
    "damaged inside": _damage_weights,
}


@pytest.mark.slow
@pytest.mark.parametrize("breakage", BREAKAGES)
def test_broken_model_file_is_reported_as_corrupt(breakage, cityscapes_model, small_images, tmp_path):
    broken = tmp_path / "best.keras"
    broken.write_bytes(BREAKAGES[breakage](cityscapes_model.read_bytes()))
    result = run_fcn("predict", "--model", broken, "--input", small_images, "--output", tmp_path / "out",
                     "--format", "labels", cwd=tmp_path)
    line = one_line_error(result)
    assert str(broken) in line
    assert ("empty" if breakage == "empty" else "corrupt") in line and "not found" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_missing_model_file_is_reported_as_not_found(small_images, tmp_path):
    missing = tmp_path / "no-such-run" / "best.keras"
    result = run_fcn("predict", "--model", missing, "--input", small_images, "--output", tmp_path / "out",
                     cwd=tmp_path)
    line = one_line_error(result)
    assert str(missing) in line and "not found" in line and "corrupt" not in line


# ----------------------------------------------------------------------------------------------------
# 4. Plain Keras loads a saved model after `import fcn`.

_LOAD_WITH_PLAIN_KERAS = """
import sys

import fcn  # registers fcn's layers, loss and metric with Keras
import keras
import numpy as np

model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2])[None], training=False)))
"""


@pytest.mark.slow
def test_plain_keras_loads_a_saved_model_after_import_fcn(road_model, road_images, tmp_path):
    image = read_rgb(sorted(road_images.glob("*.png"))[0]).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    result = subprocess.run([sys.executable, "-c", _LOAD_WITH_PLAIN_KERAS, str(road_model),
                             str(tmp_path / "image.npy"), str(tmp_path / "logits.npy")],
                            cwd=tmp_path, env=_person_env(), capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    plain = np.load(tmp_path / "logits.npy")
    ours = keras.ops.convert_to_numpy(modelfile.load_model(road_model)(image[None], training=False))
    assert plain.shape == (1, *image.shape[:2], 2)
    assert np.ptp(ours[..., 1] - ours[..., 0]) > 0  # a trained model, not constant scores
    np.testing.assert_allclose(plain, ours, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# 5. Memory is bounded in predict; an image over the limit is refused before any prediction.

BIG_SIDE = 6000  # a 36-megapixel image
# Measured 2026-11-26 (2 cores, TF 2.21), peak RSS of `fcn predict --format labels`: 0.98 GB for a 96x128 image,
# 1.59 GB for 6000x6000, so about 17 bytes per pixel above the small run. Before predict_scores resized the uint8
# image itself, its float32 copy (made twice in the conversion) took the big run to 1.95 GB (27 bytes per pixel).
# The old approach kept all probabilities: (H, W, 19) float32 is 76 bytes per pixel (2.7 GB for 36 MP) before its
# resize copies. The budget fails both and leaves 7 bytes per pixel (250 MB here) of room.
BYTES_PER_PIXEL_BUDGET = 24


@pytest.mark.slow
def test_big_image_is_predicted_in_bounded_memory(cityscapes_model, small_images, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    tile = np.random.default_rng(2).integers(0, 256, (60, 60, 3), np.uint8)
    assert BIG_SIDE % 60 == 0
    assert cv2.imwrite(str(big / "street.png"), np.tile(tile, (BIG_SIDE // 60, BIG_SIDE // 60, 1)),
                       [cv2.IMWRITE_PNG_COMPRESSION, 1])
    peaks = {}
    for name, folder in (("small", small_images), ("big", big)):
        log_dir = tmp_path / f"log-{name}"
        log_dir.mkdir()
        code, peaks[name] = run_measuring_peak_rss(
            ["predict", "--model", cityscapes_model, "--input", folder, "--output", tmp_path / f"out-{name}",
             "--format", "labels"], tmp_path, log_dir)
        assert code == 0, (log_dir / "stderr.txt").read_text()
    print(f"peak RSS: {peaks['small'] / 1e9:.2f} GB (96x128), {peaks['big'] / 1e9:.2f} GB ({BIG_SIDE}x{BIG_SIDE})")
    assert peaks["big"] - peaks["small"] < BYTES_PER_PIXEL_BUDGET * BIG_SIDE**2

    labels = read_unchanged(tmp_path / "out-big" / "street.png")
    assert labels.shape == (BIG_SIDE, BIG_SIDE) and labels.dtype == np.uint8
    assert labels.max() < 19 and len(np.unique(labels[::50, ::50])) > 1


@pytest.mark.slow
@pytest.mark.parametrize("case", ["any model", "model without a size"])
def test_image_over_the_limit_is_refused_before_any_prediction(case, cityscapes_model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a_small.png"), np.zeros((64, 64, 3), np.uint8))  # listed first: never predicted
    if case == "any model":
        model, (height, width), limit = cityscapes_model, (20_000, 20_000), 100_000_000
    else:
        # Without a recorded size the network runs at each image's own size, which is limited to 4 MP. (Label
        # ids need no class colours, so a 19-class model without its description may write them.)
        model, (height, width), limit = tmp_path / "plain.keras", (2000, 3000), 4_000_000
        strip_description(cityscapes_model, model)
    huge = images / "b_huge.png"
    write_png_header(huge, height, width)
    assert read_png_size(huge) == (height, width) and height * width > limit
    output = tmp_path / "out"
    result = run_fcn("predict", "--model", model, "--input", images, "--output", output, "--format", "labels",
                     cwd=tmp_path)
    line = one_line_error(result)
    assert str(huge) in line and f"{limit:,}" in line
    assert "running the network" not in result.stdout and not output.exists()


# ----------------------------------------------------------------------------------------------------
# 6. Options are checked before work starts.


@pytest.mark.slow
@pytest.mark.parametrize("option, value, says", [
    ("--epochs", "0", "at least 1"),
    ("--learning-rate", "-1", "above 0"),
    ("--image-size", "10x10", "at least 32x32"),
    ("--batch-size", "x", "whole number"),
])
def test_train_refuses_a_bad_option_in_one_line(option, value, says, data, tmp_path):
    run_dir = tmp_path / "run"
    result = run_fcn("train", "--dataset", "camvid", "--data-dir", data["camvid"], "--run-dir", run_dir,
                     "--fast", option, value, cwd=tmp_path)
    line = one_line_error(result, exit_code=2)
    assert line.startswith(f"fcn train: error: argument {option}") and says in line, line
    assert not run_dir.exists() and result.stdout == ""


@pytest.mark.slow
def test_predict_refuses_an_output_that_is_a_file(cityscapes_model, small_images, tmp_path):
    output = tmp_path / "results.png"
    output.write_bytes(b"keep me")
    result = run_fcn("predict", "--model", cityscapes_model, "--input", small_images, "--output", output,
                     "--format", "labels", cwd=tmp_path)
    line = one_line_error(result)
    assert str(output) in line and "file" in line
    assert output.read_bytes() == b"keep me" and "running the network" not in result.stdout


@pytest.mark.slow
def test_predict_refuses_a_missing_input_folder(cityscapes_model, tmp_path):
    missing = tmp_path / "no-such-folder"
    result = run_fcn("predict", "--model", cityscapes_model, "--input", missing, "--output", tmp_path / "out",
                     "--format", "labels", cwd=tmp_path)
    line = one_line_error(result)
    assert str(missing) in line and "not found" in line
    assert not (tmp_path / "out").exists()


def test_jpeg_over_the_limit_is_refused_once_decoded(tmp_path, monkeypatch):
    # A JPEG's size is known only after decoding: it is checked then, before the network runs.
    image = tmp_path / "big.jpg"
    cv2.imwrite(str(image), np.full((40, 60, 3), 128, np.uint8))
    monkeypatch.setattr(predict, "MAX_IMAGE_PIXELS", 40 * 60 - 1)
    model = build_fcn8(2, encoder="vgg16_mini", weights=None)
    with pytest.raises(ValueError, match=r"big\.jpg: 40x60 pixels is over the limit of 2,399 pixels"):
        predict.write_predictions(model, [image], tmp_path / "out", (32, 64), "labels", progress=False)
    assert not (tmp_path / "out").exists()
