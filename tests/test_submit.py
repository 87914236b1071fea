"""fcn submit kitti-road and fcn predict --format devkit-bev, run as a person runs them, on a tiny synthetic set."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fcn import bev, imageio, predict
from fcn.data import kitti_road, synthetic
from fcn.train import fast_config, train

TEST_FRAMES = 2  # per category


@pytest.fixture(scope="module")
def road_root(tmp_path_factory) -> Path:
    """A synthetic data_road with calib files: 3 training and 2 testing frames per category, at 0.2 scale."""
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=3,
                                      test_images_per_category=TEST_FRAMES, scale=0.2, seed=3)


@pytest.fixture(scope="module")
def model_path(road_root, tmp_path_factory) -> Path:
    """A tiny trained road model (the fast configuration, one epoch)."""
    run_dir = tmp_path_factory.mktemp("runs") / "kitti_road-fast"
    train(fast_config(data_dir=str(road_root), run_dir=str(run_dir), epochs=1), verbose=0)
    return run_dir / "best.keras"


@pytest.fixture
def road_copy(road_root, tmp_path) -> Path:
    """A copy of the synthetic data_road, to break."""
    return Path(shutil.copytree(road_root, tmp_path / "data_road"))


def run_fcn(*args) -> subprocess.CompletedProcess:
    fcn_command = Path(sys.executable).parent / "fcn"
    return subprocess.run([str(fcn_command), *map(str, args)], capture_output=True, text=True, timeout=600)


def expected_names() -> list[str]:
    return [f"{category}_road_{index:06d}.png" for category in ("um", "umm", "uu") for index in range(TEST_FRAMES)]


@pytest.mark.slow
def test_submit_writes_every_testing_frame_in_bev(model_path, road_root, tmp_path):
    output = tmp_path / "submission.zip"
    finished = run_fcn("submit", "kitti-road", "--model", model_path, "--data-dir", road_root, "--output", output)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines()[-1].startswith(f"wrote {output}: 6 bird's-eye-view road maps (um 2, umm 2, uu 2)")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["submission.zip"]  # no temporary file left
    with zipfile.ZipFile(output) as archive:
        assert sorted(archive.namelist()) == expected_names()  # at the root, named like the gt
        maps = {name: imageio.read_unchanged(_extract(archive, name, tmp_path)) for name in archive.namelist()}
    # The same as the perspective devkit map of `fcn predict`, through the frame's calib.
    model = predict.load_model(model_path)
    perspective = tmp_path / "perspective"
    testing = road_root / "testing"
    predict.write_predictions(model, sorted((testing / "image_2").glob("*.png")), perspective,
                              predict.run_image_size(model_path), "devkit", progress=False)
    for name, array in maps.items():
        assert array.dtype == np.uint8 and array.shape == (800, 400)
        lookup = bev.bev_lookup(bev.calib_path(testing / "calib", name), imageio.read_png_size(perspective / name))
        np.testing.assert_array_equal(array, bev.to_bev(imageio.read_unchanged(perspective / name), lookup))
        assert (array[~lookup.valid] == 0).all()


def _extract(archive, name, folder) -> Path:
    path = folder / "extracted" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(archive.read(name))
    return path


@pytest.mark.slow
def test_predict_devkit_bev_writes_the_submission_maps(model_path, road_root, tmp_path):
    testing = road_root / "testing"
    finished = run_fcn("predict", "--model", model_path, "--input", testing / "image_2", "--output", tmp_path / "bev",
                       "--format", "devkit-bev", "--calib-dir", testing / "calib")
    assert finished.returncode == 0, finished.stderr
    assert sorted(path.name for path in (tmp_path / "bev").iterdir()) == expected_names()
    for path in (tmp_path / "bev").iterdir():
        array = imageio.read_unchanged(path)
        assert array.dtype == np.uint8 and array.shape == (800, 400)
    missing = run_fcn("predict", "--model", model_path, "--input", testing / "image_2", "--output", tmp_path / "x",
                      "--format", "devkit-bev")
    assert missing.returncode == 2 and "--format devkit-bev needs --calib-dir" in missing.stderr


def refused(model_path, data_dir, output) -> str:
    """The one error line of a submit that must fail; the output is left untouched."""
    finished = run_fcn("submit", "kitti-road", "--model", model_path, "--data-dir", data_dir, "--output", output)
    assert finished.returncode == 1 and finished.stdout == ""
    [line] = finished.stderr.splitlines()
    return line


@pytest.mark.slow
def test_submit_refuses_missing_calib_and_keeps_the_old_archive(model_path, road_copy, tmp_path):
    calib = road_copy / "testing" / "calib"
    (calib / "umm_000001.txt").unlink()
    (calib / "uu_000000.txt").unlink()
    output = tmp_path / "submission.zip"
    output.write_bytes(b"an earlier submission")
    line = refused(model_path, road_copy, output)
    assert line == (f"error: {calib / 'umm_000001.txt'}: calib file not found (2 of 6 calib files missing in {calib}: "
                    "umm_000001.txt, uu_000000.txt)")
    assert output.read_bytes() == b"an earlier submission"


@pytest.mark.slow
def test_submit_refuses_missing_frames(model_path, road_copy, tmp_path):
    image_dir = road_copy / "testing" / "image_2"
    (image_dir / "um_000000.png").unlink()
    line = refused(model_path, road_copy, tmp_path / "submission.zip")
    assert line == (f"error: {image_dir}: 1 testing frames missing (each category's ids run from 000000 without "
                    "gaps): um_000000.png")
    for path in image_dir.glob("uu_*.png"):
        path.unlink()
    line = refused(model_path, road_copy, tmp_path / "submission.zip")
    assert line == f"error: {image_dir}: no testing frames of uu; the benchmark scores every frame of um, umm, uu"
    assert not (tmp_path / "submission.zip").exists()


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("R0_rect:", "R0:"), "calib file has no R0_rect"),
    (lambda text: text.replace("Tr_cam_to_road: ", "Tr_cam_to_road: 1,0 "), "Tr_cam_to_road is not a list of numbers"),
    (lambda text: text.split("Tr_cam_to_road")[0] + "Tr_cam_to_road: 1 0 0 0 0 1 0 -100 0 0 1 0\n",
     "the road plane is out of view"),
])
def test_submit_refuses_bad_calib(model_path, road_copy, tmp_path, edit, message):
    path = road_copy / "testing" / "calib" / "um_000001.txt"
    path.write_text(edit(path.read_text()))
    assert refused(model_path, road_copy, tmp_path / "s.zip").startswith(f"error: {path}: {message}")


@pytest.mark.slow
def test_submit_checks_the_output_name(model_path, road_root, tmp_path):
    line = refused(model_path, road_root, tmp_path / "submission.tar")
    assert line == f"error: {tmp_path / 'submission.tar'}: the submission must be a .zip archive"


def test_synthetic_calib_puts_the_ego_road_in_front_of_the_car(road_root):
    # The calib files describe the camera the scenes were drawn with: the cells just ahead of the car are road.
    for sample in kitti_road.list_samples(road_root):
        lookup = bev.bev_lookup(bev.calib_path(road_root / "training" / "calib", sample.image.name),
                                imageio.read_png_size(sample.image))
        gt = bev.to_bev(imageio.read_rgb(sample.label), lookup)
        ahead = gt[-100:, 180:220]  # z 6 to 11 m, x -1 to 1 m
        assert (ahead[..., 2] > 0).mean() > 0.9, sample.name



def constant_road_model(p_road: float):
    """A model that says "road, probability p_road" at every pixel: its scores are known by hand."""
    import keras

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    logit = np.log(p_road / (1 - p_road))
    model.layers[-1].set_weights([np.zeros((1, 1, 3, 2), np.float32), np.array([0.0, logit], np.float32)])
    return model


def test_evaluate_road_views_scores_bev_by_metric_area(road_root):
    # Every cell says road at 186/255: at the one useful threshold everything is road, so MaxF = 2q / (1 + q)
    # with q the road fraction of the cells counted: BEV cells with a source pixel and valid gt.
    samples = kitti_road.list_samples(road_root)
    calib_dir = road_root / "training" / "calib"
    scores = predict.evaluate_road_views(constant_road_model(0.73), samples, calib_dir)
    assert list(scores) == ["perspective", "bev"]
    assert scores["perspective"] == predict.evaluate_road(constant_road_model(0.73), samples)
    counts = {}
    for sample in samples:
        lookup = bev.bev_lookup(bev.calib_path(calib_dir, sample.image.name), imageio.read_png_size(sample.image))
        gt = bev.to_bev(imageio.read_rgb(sample.label), lookup)
        valid = (gt[..., 0] > 0) & lookup.valid
        road, total = counts.get(sample.category, (0, 0))
        counts[sample.category] = (road + int((valid & (gt[..., 2] > 0)).sum()), total + int(valid.sum()))
    for category, (road, total) in counts.items():
        q = road / total
        assert scores["bev"][f"{category}_road"]["MaxF"] == pytest.approx(2 * q / (1 + q), abs=1e-6)
        assert scores["bev"][f"{category}_road"]["counts"]["totalPosNum"] == road
    assert scores["bev"]["um_road"]["MaxF"] != pytest.approx(scores["perspective"]["um_road"]["MaxF"], abs=1e-4)


def test_road_views_figure(road_root):
    from fcn import viz

    sample = kitti_road.list_samples(road_root)[0]
    views = predict.road_views(constant_road_model(0.73), sample, road_root / "training" / "calib")
    assert views["confidence"].shape == views["image"].shape[:2] and (views["confidence"] == 186).all()
    assert views["confidence_bev"].shape == (800, 400) and views["gt_bev"].shape == (800, 400, 3)
    assert set(np.unique(views["confidence_bev"])) == {0, 186}
    fig = viz.plot_road_views(**views, title=sample.name)
    assert len(fig.axes) == 3 and fig.axes[1].get_xlim() == (-10.0, 10.0)
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
