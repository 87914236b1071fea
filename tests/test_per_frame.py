"""Where a model goes wrong (issue 17): per-frame scores worst first, error maps, and the commands for them.

Scores are checked on tiny hand-worked masks and against the pooled (devkit) counts; the commands run as
subprocesses on tiny synthetic data with a tiny untrained model: what is checked is which frames and pixels
are reported, not how good the model is.
"""

import csv
import math
import shlex
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT, save_random_tiny_model

from fcn import cli, experiment, metrics, per_frame, predict, viz
from fcn.data import camvid as camvid_reader
from fcn.data import get_dataset, kitti_road, synthetic
from fcn.imageio import read_rgb, read_unchanged, write_png

IMAGE_SIZE = (64, 96)  # the size the tiny models are recorded to run at
NAN = float("nan")


# --- per-frame scores on hand-worked masks -------------------------------------------------------------------

def _hand_worked_road_frame():
    # Road in the top row (values 255, 200, 64), not road below (128, 0); the last pixel is not evaluated.
    confidence = np.array([[255, 200, 64], [128, 0, 255]], np.uint8)
    road = np.array([[1, 1, 1], [0, 0, 0]], bool)
    valid = np.array([[1, 1, 1], [1, 1, 0]], bool)
    return confidence, road, valid


def test_road_frame_row_counts_pixels_at_the_threshold():
    confidence, road, valid = _hand_worked_road_frame()
    pos, neg = metrics.confidence_histograms(confidence, road, valid)
    # Threshold 100/255: road predicted at 255, 200 and 128 -> TP 2 (255, 200), FN 1 (64), FP 1 (128), TN 1 (0).
    row = per_frame.road_frame_row("um_000000", "um_road", pos, neg, 100)
    assert {key: row[key] for key in ("tp", "fp", "fn", "tn")} == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    assert row["precision"] == pytest.approx(2 / 3) and row["recall"] == pytest.approx(2 / 3)
    assert row["f_measure"] == pytest.approx(2 / 3) and row["threshold"] == pytest.approx(100 / 255)
    # Threshold 0: everything evaluated is road -> all 3 road pixels found, both non-road pixels wrong.
    row = per_frame.road_frame_row("um_000000", "um_road", pos, neg, 0)
    assert (row["tp"], row["fp"], row["fn"]) == (3, 2, 0)
    assert row["f_measure"] == pytest.approx(2 * 3 / (2 * 3 + 2))


def test_road_frame_row_is_nan_where_a_score_is_undefined():
    no_road = np.zeros(256, np.int64)
    negatives = np.zeros(256, np.int64)
    negatives[[10, 250]] = 1  # one confident false positive, one true negative at threshold 128
    row = per_frame.road_frame_row("uu_000001", "uu_road", no_road, negatives, 128)
    assert math.isnan(row["recall"]) and row["precision"] == 0 and row["f_measure"] == 0
    row = per_frame.road_frame_row("uu_000001", "uu_road", no_road, np.zeros(256, np.int64), 128)
    assert all(math.isnan(row[key]) for key in ("f_measure", "precision", "recall"))


def test_frame_counts_add_up_to_the_devkit_counts_and_match_the_drawn_pixels():
    rng = np.random.default_rng(0)
    frames = []
    for index in range(4):
        confidence = rng.integers(0, 256, (12, 20)).astype(np.uint8)
        road, valid = rng.random((12, 20)) < 0.5, rng.random((12, 20)) < 0.8
        frames.append((f"um_{index:06d}", *metrics.confidence_histograms(confidence, road, valid),
                       confidence, road, valid))
    scores = metrics.road_scores(*metrics.pooled_histograms([f[:3] for f in frames]))
    k = scores["BestThresh_k"]
    rows = per_frame.road_frame_rows({"um_road": [f[:3] for f in frames]}, {"um_road": scores})
    totals = {key: sum(row[key.lower()[:2]] for row in rows) for key in ("TP_wp", "FP_wp", "FN_wp")}
    assert totals == {key: scores["counts"][key] for key in totals}
    for name, _, _, confidence, road, valid in frames:  # the pixels an error map paints are the counted ones
        predicted = metrics.road_predicted(confidence, k)
        row = next(row for row in rows if row["frame"] == name)
        assert row["tp"] == (predicted & road & valid).sum() and row["fp"] == (predicted & ~road & valid).sum()
    assert [row["f_measure"] for row in rows] == sorted(row["f_measure"] for row in rows)


def test_segmentation_frame_row_on_a_hand_worked_frame():
    labels = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    prediction = np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
    row = per_frame.segmentation_frame_row("f", labels, prediction, ("a", "b", "c", "d"))
    # 5 evaluated pixels, 4 right. IoU a: 1 / (2 + 1 - 1); b: 2 / (2 + 3 - 2); c: 1; d in neither: NaN.
    assert row["pixel_accuracy"] == pytest.approx(4 / 5)
    assert row["iou a"] == pytest.approx(1 / 2) and row["iou b"] == pytest.approx(2 / 3) and row["iou c"] == 1
    assert math.isnan(row["iou d"])
    assert row["mean_iou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert list(row) == list(per_frame.segmentation_columns(("a", "b", "c", "d")))


def test_worst_first_puts_unscored_frames_last():
    rows = [{"frame": name, "s": score} for name, score in (("a", 0.9), ("b", NAN), ("c", 0.1), ("d", 0.5))]
    assert [row["frame"] for row in per_frame.worst_first(rows, "s")] == ["c", "d", "a", "b"]


def test_write_csv_writes_nan_as_empty_and_leaves_no_temporary_file(tmp_path):
    path = per_frame.write_csv(tmp_path / "deep" / "frames.csv", [{"frame": "a", "x": NAN, "n": 3}],
                               ("frame", "x", "n"))
    assert path.read_text() == "frame,x,n\na,,3\n"
    assert [p.name for p in path.parent.iterdir()] == ["frames.csv"]


# --- error maps ----------------------------------------------------------------------------------------------

def test_road_error_map_paints_each_outcome_and_leaves_the_rest():
    image = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[1, 1, 0], [0, 255, 255]], np.uint8)
    predicted = np.array([[1, 0, 1], [0, 1, 0]], bool)
    painted = viz.road_error_map(image, predicted, labels, alpha=1.0)
    tp, fp, fn = (np.array(c, np.uint8) for c in viz.ROAD_OUTCOME_COLOURS.values())
    assert (painted[0, 0] == tp).all() and (painted[0, 1] == fn).all() and (painted[0, 2] == fp).all()
    assert (painted[1] == image[1]).all()  # a true negative and ignored pixels (predicted or not) stay


def test_class_error_map_darkens_right_pixels_and_paints_wrong_ones_as_the_class_taken():
    image = np.zeros((1, 4, 3), np.uint8)
    image[:] = (200, 100, 50)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    labels = np.array([[0, 1, 2, 255]], np.uint8)
    prediction = np.array([[0, 2, 2, 1]], np.uint8)
    painted = viz.class_error_map(image, labels, prediction, palette, alpha=1.0)
    darkened = np.round(np.array([200, 100, 50]) * viz.CORRECT_BRIGHTNESS)
    assert (painted[0, 0] == darkened).all() and (painted[0, 2] == darkened).all()
    assert (painted[0, 1] == palette[2]).all()  # road-truth pixel taken for class 2: class 2's colour
    assert (painted[0, 3] == image[0, 3]).all()  # ignored
    with pytest.raises(ValueError, match="sizes differ"):
        viz.class_error_map(image, labels[:, :3], prediction[:, :3], palette)


# --- the commands, as subprocesses ---------------------------------------------------------------------------

def _run_fcn(*args):
    return subprocess.run([sys.executable, "-m", "fcn.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _one_line_error(result, *parts):
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(part in lines[0] for part in parts), result.stderr


@pytest.fixture(scope="module")
def road_data(tmp_path_factory):
    """Synthetic KITTI Road, 2 frames per category, at a tenth of the KITTI size."""
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("road"), images_per_category=2,
                                      test_images_per_category=1, scale=0.1, seed=0)


def _results_of_known_quality(gt_dir, results_dir):
    """Devkit results: the first frame of each category right, the second with its road's lower half missed."""
    results_dir.mkdir()
    for gt_path in sorted(gt_dir.glob("*_road_*.png")):
        road, _ = metrics.read_road_gt_masks(gt_path)
        confidence = np.where(road, 255, 0).astype(np.uint8)
        if gt_path.stem.endswith("1"):
            confidence[confidence.shape[0] // 2:] = 0
        write_png(results_dir / gt_path.name, confidence)


@pytest.mark.slow
def test_evaluate_kitti_road_per_frame_writes_the_frames_worst_first(road_data, tmp_path):
    gt_dir = road_data / "training" / "gt_image_2"
    _results_of_known_quality(gt_dir, tmp_path / "results")
    target = tmp_path / "frames.csv"
    result = _run_fcn("evaluate", "kitti-road", "--gt-dir", gt_dir, "--results-dir", tmp_path / "results",
                      "--json", "--per-frame", target)
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stderr  # stdout stays JSON
    with open(target) as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == per_frame.ROAD_COLUMNS
    assert sorted(row["frame"] for row in rows) == sorted(p.stem for p in (road_data / "training" / "image_2").iterdir())
    scores = [float(row["f_measure"]) for row in rows]
    assert scores == sorted(scores) and scores[-3:] == [1.0, 1.0, 1.0]  # the right frames last
    assert {row["frame"][-1] for row in rows[:3]} == {"1"} and max(scores[:3]) < 1
    pooled = metrics.evaluate_kitti_road(gt_dir, tmp_path / "results")
    for category, category_scores in pooled.items():
        tp = sum(int(row["tp"]) for row in rows if row["category"] == category)
        assert tp == category_scores["counts"]["TP_wp"]
        assert {float(row["threshold"]) for row in rows if row["category"] == category} == {category_scores["BestThresh"]}


@pytest.mark.slow
def test_evaluate_per_frame_refuses_an_unwritable_file_before_any_work(road_data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    target = blocker / "frames.csv"
    result = _run_fcn("evaluate", "kitti-road", "--gt-dir", road_data / "training" / "gt_image_2",
                      "--results-dir", tmp_path, "--per-frame", target)
    _one_line_error(result, str(target), "not a folder")
    result = _run_fcn("evaluate", "kitti-road", "--gt-dir", road_data / "training" / "gt_image_2",
                      "--results-dir", tmp_path, "--per-frame", tmp_path)
    _one_line_error(result, str(tmp_path), "is a folder")


def _save_tiny_model(path, dataset: str):
    save_random_tiny_model(path, dataset, IMAGE_SIZE)
    return path


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    """Synthetic CamVid (train 2, val 1, test 3 frames of 48x80) and a tiny CamVid model file."""
    root = tmp_path_factory.mktemp("camvid")
    data = synthetic.generate("camvid", root, seed=0, train=2, val=1, test=3, height=48, width=80)
    return data, _save_tiny_model(root / "tiny.keras", "camvid")


@pytest.mark.slow
def test_evaluate_segmentation_per_frame_writes_every_frame_worst_first(camvid, tmp_path):
    data, model_path = camvid
    target = tmp_path / "frames.csv"
    result = _run_fcn("evaluate", "segmentation", "--dataset", "camvid", "--data-dir", data, "--split", "test",
                      "--model", model_path, "--per-frame", target)
    assert result.returncode == 0, result.stderr
    assert "mean IoU" in result.stdout and f"wrote the scores of 3 frames, worst first, to {target}" in result.stdout
    with open(target) as f:
        rows = list(csv.DictReader(f))
    info = get_dataset("camvid")
    assert tuple(rows[0]) == per_frame.segmentation_columns(info.class_names)
    assert sorted(row["frame"] for row in rows) == sorted(p.stem for p in (data / "test").glob("*.png"))
    means = [float(row["mean_iou"]) for row in rows]
    assert means == sorted(means)
    for row in rows:  # each frame's mean is that of its classes' IoUs (the empty cells left out)
        ious = [float(row[f"iou {name}"]) for name in info.class_names if row[f"iou {name}"] != ""]
        assert float(row["mean_iou"]) == pytest.approx(np.mean(ious)) and 0 <= float(row["pixel_accuracy"]) <= 1


@pytest.mark.slow
def test_predict_errors_writes_one_map_per_image(camvid, tmp_path):
    data, model_path = camvid
    result = _run_fcn("predict", "--model", model_path, "--input", data / "test", "--output", tmp_path / "errors",
                      "--format", "errors", "--gt-dir", data / "testannot")
    assert result.returncode == 0, result.stderr
    images = sorted((data / "test").glob("*.png"))
    assert sorted(p.name for p in (tmp_path / "errors").iterdir()) == [p.name for p in images]
    for image_path in images:
        image, errors = read_rgb(image_path), read_rgb(tmp_path / "errors" / image_path.name)
        ignored = get_dataset("camvid").read_label(data / "testannot" / image_path.name) == 255
        assert errors.shape == image.shape and (errors[ignored] == image[ignored]).all()
        assert not (errors == image).all()  # every pixel evaluated is darkened or painted


@pytest.mark.slow
def test_predict_errors_on_a_road_model_paints_road_outcomes(road_data, tmp_path):
    model_path = _save_tiny_model(tmp_path / "road.keras", "kitti_road")
    images = road_data / "training" / "image_2"
    result = _run_fcn("predict", "--model", model_path, "--input", images, "--output", tmp_path / "errors",
                      "--format", "errors", "--gt-dir", road_data / "training" / "gt_image_2")
    assert result.returncode == 0, result.stderr
    image_path = sorted(images.iterdir())[0]
    image, errors = read_rgb(image_path), read_rgb(tmp_path / "errors" / image_path.name)
    labels = kitti_road.read_label(road_data / "training" / "gt_image_2" / kitti_road.gt_name(image_path.name))
    changed = (errors != image).any(axis=-1)
    assert not changed[labels == 255].any() and changed[labels == 1].all()  # road is either found or missed


@pytest.mark.slow
def test_predict_errors_refuses_missing_or_mismatched_ground_truth(camvid, tmp_path):
    data, model_path = camvid
    gt_dir = tmp_path / "gt"
    shutil.copytree(data / "testannot", gt_dir)
    names = sorted(p.name for p in gt_dir.iterdir())
    (gt_dir / names[1]).unlink()
    output = tmp_path / "errors"
    args = ("predict", "--model", model_path, "--input", data / "test", "--output", output, "--format", "errors",
            "--gt-dir", gt_dir)
    _one_line_error(_run_fcn(*args), str(gt_dir / names[1]), "ground truth missing")
    assert not output.exists()
    shutil.copy(data / "testannot" / names[1], gt_dir / names[1])
    cv2.imwrite(str(gt_dir / names[2]), np.zeros((10, 10), np.uint8))  # another size, as the last frame
    _one_line_error(_run_fcn(*args), str(gt_dir / names[2]), "ground truth is 10x10")
    assert not output.exists()  # the first frames were fine, and still nothing was written
    _one_line_error(_run_fcn(*args[:-2]), "--gt-dir")
    assert read_unchanged(data / "testannot" / names[2]).shape == (48, 80)


def test_the_documented_commands_parse():
    text = (REPO_ROOT / "docs" / "evaluation.md").read_text()
    section = text.split("## Where a model goes wrong")[1].split("\n## ")[0]
    commands = [line for line in section.splitlines() if line.startswith("fcn ")]
    assert len(commands) == 3
    for command in commands:
        cli.build_parser().parse_args(shlex.split(command)[1:])  # a renamed option exits here


def test_worst_frames_figure_shows_the_lowest_scoring_frames(camvid, road_data, tmp_path):
    data, model_path = camvid
    road_model = _save_tiny_model(tmp_path / "road.keras", "kitti_road")
    for info, samples, path in ((get_dataset("camvid"), camvid_reader.list_samples(data, "test"), model_path),
                                (get_dataset("kitti_road"), kitti_road.list_samples(road_data), road_model)):
        model = predict.load_model(path)
        fig = experiment.worst_frames_figure(model, samples, info, IMAGE_SIZE, count=2)
        titles = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
        rows = []
        if info.road_class is None:
            predict.evaluate_segmentation(model, samples, info, IMAGE_SIZE, per_frame=rows)
        else:
            predict.evaluate_road(model, samples, IMAGE_SIZE, per_frame=rows)
        key = "mean_iou" if info.road_class is None else "f_measure"
        assert [row[key] for row in rows] == sorted(row[key] for row in rows)
        assert [title.split("\n")[0] for title in titles] == [row["frame"] for row in rows[:2]]
        assert len(fig.axes) == 4 and fig.legends  # image | errors for 2 frames, and the colours' legend
