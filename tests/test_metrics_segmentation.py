"""Multi-class metrics: hand-worked tiny cases, and agreement with the official Cityscapes evaluator."""

import copy
import math

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official_evaluation
from cityscapesscripts.helpers import labels as official_labels

from fcn import metrics
from fcn.data import cityscapes, cityscapes_labels

# Cityscapes label id of each training id 0..18 (shared/data/README.md); every other id is ignored.
TRAIN_ID_TO_LABEL_ID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
BUS, TRAIN = 15, 16  # training ids

# The 3-class case worked by hand below: 2x4 images, 255 = ignore.
LABELS = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
PREDICTIONS = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
# Rows = ground truth, columns = prediction; the ignored pixel (predicted 0) is not counted, 7 pixels in all.
MATRIX = np.array([[1, 1, 0], [0, 2, 1], [1, 0, 1]])
# IoU = TP / (TP + FP + FN): class 0: 1 / (1 + 1 + 1) = 1/3, class 1: 2 / (2 + 1 + 1) = 1/2,
# class 2: 1 / (1 + 1 + 1) = 1/3; mean IoU = (1/3 + 1/2 + 1/3) / 3 = 7/18.
# Accuracy (recall) = TP / gt pixels: 1/2, 2/3, 1/2; mean 5/9. Pixel accuracy = (1 + 2 + 1) / 7 = 4/7.
# Frequency-weighted IoU = 2/7 * 1/3 + 3/7 * 1/2 + 2/7 * 1/3 = 17/42.
NAMES = ("a", "b", "c")


def test_confusion_matrix_of_the_hand_worked_case():
    matrix = metrics.confusion_matrix(LABELS, PREDICTIONS, num_classes=3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, MATRIX)


def test_scores_of_the_hand_worked_case():
    scores = metrics.segmentation_scores(MATRIX, NAMES)
    assert scores["class_iou"] == pytest.approx({"a": 1 / 3, "b": 1 / 2, "c": 1 / 3}, abs=1e-15)
    assert scores["mean_iou"] == pytest.approx(7 / 18, abs=1e-15)
    assert scores["class_accuracy"] == pytest.approx({"a": 1 / 2, "b": 2 / 3, "c": 1 / 2}, abs=1e-15)
    assert scores["mean_accuracy"] == pytest.approx(5 / 9, abs=1e-15)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 7, abs=1e-15)
    assert scores["frequency_weighted_iou"] == pytest.approx(17 / 42, abs=1e-15)
    assert scores["num_pixels"] == 7
    assert all(type(value) is float for value in scores["class_iou"].values())
    assert type(scores["mean_iou"]) is float


def test_class_absent_from_gt_and_prediction_is_nan_and_left_out_of_the_mean():
    # The same pixels with a 4th class "d" that occurs nowhere: its IoU is 0/0.
    matrix = metrics.confusion_matrix(LABELS, PREDICTIONS, num_classes=4)
    scores = metrics.segmentation_scores(matrix, (*NAMES, "d"))
    assert math.isnan(scores["class_iou"]["d"]) and math.isnan(scores["class_accuracy"]["d"])
    assert scores["mean_iou"] == pytest.approx(7 / 18, abs=1e-15)
    assert scores["mean_accuracy"] == pytest.approx(5 / 9, abs=1e-15)
    assert scores["frequency_weighted_iou"] == pytest.approx(17 / 42, abs=1e-15)


def test_class_only_predicted_has_iou_zero_and_counts_in_the_mean():
    # gt all class 0, one pixel predicted 1: IoU 0 = 3 / (3 + 0 + 1) = 3/4, IoU 1 = 0 / (0 + 1 + 0) = 0,
    # mean (3/4 + 0) / 2 = 3/8. Class 1 has no gt pixel, so its accuracy (recall) is undefined.
    matrix = metrics.confusion_matrix([[0, 0, 0, 0]], [[0, 0, 0, 1]], num_classes=2)
    scores = metrics.segmentation_scores(matrix)
    assert scores["class_iou"] == {"0": 0.75, "1": 0.0}
    assert scores["mean_iou"] == 0.375
    assert math.isnan(scores["class_accuracy"]["1"]) and scores["mean_accuracy"] == 0.75


def test_ignored_pixels_are_never_counted():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(6, 7))
    labels[rng.random(labels.shape) < 0.3] = 11  # CamVid-style ignore id
    predictions = rng.integers(0, 4, size=labels.shape)
    matrix = metrics.confusion_matrix(labels, predictions, num_classes=4, ignore_id=11)
    assert matrix.sum() == np.count_nonzero(labels != 11)
    # Whatever is predicted at ignored pixels changes nothing.
    repredicted = np.where(labels == 11, rng.integers(0, 4, size=labels.shape), predictions)
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, repredicted, 4, ignore_id=11), matrix)
    all_ignored = np.full((2, 3), 255)
    np.testing.assert_array_equal(metrics.confusion_matrix(all_ignored, np.zeros((2, 3), int), 4), 0)


def test_accumulating_two_images_equals_the_matrix_of_their_concatenation():
    rng = np.random.default_rng(1)
    first_labels, second_labels = rng.integers(0, 5, size=(4, 6)), rng.integers(0, 5, size=(3, 6))
    first_labels[0, :3] = 255
    first_predictions, second_predictions = rng.integers(0, 5, size=(4, 6)), rng.integers(0, 5, size=(3, 6))
    accumulator = metrics.ConfusionMatrix(5, class_names="vwxyz")
    accumulator.update(first_labels, first_predictions.astype(np.uint8))
    accumulator.update(second_labels, second_predictions)
    expected = metrics.confusion_matrix(
        np.concatenate([first_labels, second_labels]),
        np.concatenate([first_predictions, second_predictions]),
        5,
    )
    np.testing.assert_array_equal(accumulator.matrix, expected)
    assert accumulator.scores() == metrics.segmentation_scores(expected, "vwxyz")
    accumulator.reset()
    assert accumulator.matrix.sum() == 0


@pytest.mark.parametrize(
    ("labels", "predictions", "message"),
    [
        ([[0, 1]], [[0, 3]], "predictions outside"),
        ([[0, 1]], [[-1, 0]], "predictions outside"),
        ([[0, 255]], [[0, 255]], "predictions outside"),  # not even at an ignored pixel
        ([[0, 3]], [[0, 1]], "labels outside"),
        ([[-1, 0]], [[0, 1]], "labels outside"),
        ([[0, 1]], [[0, 1, 2]], "shapes differ"),
        ([[0.0, 1.0]], [[0, 1]], "integer"),
    ],
)
def test_invalid_values_raise(labels, predictions, message):
    with pytest.raises(ValueError, match=message):
        metrics.confusion_matrix(np.array(labels), np.array(predictions), num_classes=3)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="ignore_id"):
        metrics.confusion_matrix([[0]], [[0]], num_classes=3, ignore_id=2)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.confusion_matrix([[0]], [[0]], num_classes=0)
    with pytest.raises(ValueError, match="class names"):
        metrics.segmentation_scores(MATRIX, ("a", "b"))
    with pytest.raises(ValueError, match="square"):
        metrics.segmentation_scores(np.ones((2, 3), int))


def test_category_confusion_sums_blocks():
    # Classes 0, 1 -> category 0; classes 2, 3 -> category 1.
    matrix = np.arange(16).reshape(4, 4)
    expected = np.array([[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])
    np.testing.assert_array_equal(metrics.category_confusion(matrix, [0, 0, 1, 1]), expected)
    assert metrics.category_confusion(matrix, [0, 0, 1, 1], num_categories=3).shape == (3, 3)
    with pytest.raises(ValueError, match="category indices"):
        metrics.category_confusion(matrix, [0, 0, 1])


def test_cityscapes_categories_match_the_official_label_table():
    official = [official_labels.trainId2label[train_id].category for train_id in range(19)]
    ours = [metrics.CITYSCAPES_CATEGORIES[index] for index in metrics.CITYSCAPES_CATEGORY_OF_TRAIN_ID]
    assert ours == official
    categories = official_labels.category2labels.items()
    evaluated = [name for name, members in categories if not all(label.ignoreInEval for label in members)]
    assert list(metrics.CITYSCAPES_CATEGORIES) == evaluated
    official_names = [official_labels.trainId2label[train_id].name for train_id in range(19)]
    assert list(cityscapes.CLASS_NAMES) == official_names
    official_ids = [official_labels.trainId2label[train_id].id for train_id in range(19)]
    assert official_ids == list(TRAIN_ID_TO_LABEL_ID)
    # The project's one mapping (used below against the official evaluator) agrees with the README table.
    label_ids = np.arange(34)
    expected = [TRAIN_ID_TO_LABEL_ID.index(i) if i in TRAIN_ID_TO_LABEL_ID else 255 for i in label_ids]
    assert cityscapes_labels.label_ids_to_train_ids(label_ids).tolist() == expected


def test_format_segmentation_table():
    table = metrics.format_segmentation_table(
        metrics.segmentation_scores(metrics.confusion_matrix(LABELS, PREDICTIONS, 4), (*NAMES, "d"))
    )
    lines = table.splitlines()
    assert lines[1].split() == ["a", "33.33", "50.00"]
    assert lines[4].split() == ["d", "n/a", "n/a"]
    assert "38.89" in table and "57.14" in table and "40.48" in table  # 7/18, 4/7, 17/42


# ---------------------------------------------------------------------------------------------------------
# Agreement with cityscapesscripts' evalPixelLevelSemanticLabeling on real Cityscapes val gt.
# ---------------------------------------------------------------------------------------------------------


def perturbed_prediction(gt_train_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training ids: the gt, with class-dependent pixel noise and random blocks; never bus where gt is valid."""
    prediction = gt_train_ids.copy()
    valid = gt_train_ids != 255
    # Ignored gt pixels get any class, bus included: the official script must not count them either.
    prediction[~valid] = rng.integers(0, 19, size=np.count_nonzero(~valid))
    replacement_classes = np.array([train_id for train_id in range(19) if train_id != BUS])
    flip_probability = np.linspace(0.02, 0.5, 19)[np.where(valid, gt_train_ids, 0)]  # varies by class
    flipped = valid & (rng.random(gt_train_ids.shape) < flip_probability)
    prediction[flipped] = rng.choice(replacement_classes, size=np.count_nonzero(flipped))
    height, width = gt_train_ids.shape
    for _ in range(30):
        block_height, block_width = rng.integers(16, 200, size=2)
        top, left = rng.integers(0, height - block_height), rng.integers(0, width - block_width)
        block = prediction[top : top + block_height, left : left + block_width]
        block[valid[top : top + block_height, left : left + block_width]] = rng.choice(replacement_classes)
    return prediction


def assert_scores_equal(ours: dict, official: dict, tolerance=1e-9):
    assert set(ours) <= set(official)
    for name, value in ours.items():
        if math.isnan(official[name]):
            assert math.isnan(value), name
        else:
            assert value == pytest.approx(official[name], abs=tolerance), name


@pytest.mark.slow
def test_agrees_with_the_official_cityscapes_evaluator(shared_data, tmp_path):
    gt_paths = cityscapes.list_label_files(shared_data / "cityscapes", "val")
    # Only the frames whose gt has neither bus nor train: the predictions never show bus on valid pixels
    # (IoU 0/0 = NaN, left out of the means) and show train although no gt has it (IoU 0, counted).
    # All 12 such frames at full resolution take ~1 s in the official script, so nothing is cropped.
    gt_train_ids = {path: cityscapes.read_label(path) for path in gt_paths}
    gt_train_ids = {path: ids for path, ids in gt_train_ids.items() if not np.isin(ids, [BUS, TRAIN]).any()}
    assert len(gt_train_ids) >= 3, "too few frames without bus and train to compare"

    rng = np.random.default_rng(2015)
    accumulator = metrics.ConfusionMatrix(cityscapes.NUM_CLASSES, cityscapes.CLASS_NAMES)
    prediction_paths = []
    for gt_path, train_ids in gt_train_ids.items():
        prediction = perturbed_prediction(train_ids, rng)
        accumulator.update(train_ids, prediction)
        # The official script reads label-id PNGs; write_result converts the train ids.
        stem = gt_path.name.removesuffix("_gtFine_labelIds.png")
        result_path = cityscapes.write_result(tmp_path / "results" / cityscapes.result_name(stem), prediction)
        prediction_paths.append(str(result_path))

    args = copy.copy(official_evaluation.args)  # the module's defaults, left untouched for other users
    args.evalInstLevelScore = False  # needs instanceIds and only feeds nIoU
    args.evalPixelAccuracy = False
    args.quiet = True
    args.exportFile = str(tmp_path / "resultPixelLevelSemanticLabeling.json")
    official = official_evaluation.evaluateImgLists(
        prediction_paths, [str(path) for path in gt_train_ids], args
    )

    ours = accumulator.scores()
    assert math.isnan(ours["class_iou"]["bus"]) and ours["class_iou"]["train"] == 0.0
    assert 0.1 < ours["mean_iou"] < 0.9 and len(set(ours["class_iou"].values())) > 10  # imperfect, varied
    assert_scores_equal(ours["class_iou"], official["classScores"])
    assert ours["mean_iou"] == pytest.approx(official["averageScoreClasses"], abs=1e-9)

    categories = metrics.segmentation_scores(
        metrics.category_confusion(accumulator.matrix, metrics.CITYSCAPES_CATEGORY_OF_TRAIN_ID),
        metrics.CITYSCAPES_CATEGORIES,
    )
    assert math.isnan(official["categoryScores"]["void"])  # no evaluated class: NaN, out of the average
    assert_scores_equal(categories["class_iou"], official["categoryScores"])
    assert categories["mean_iou"] == pytest.approx(official["averageScoreCategories"], abs=1e-9)
