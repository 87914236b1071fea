"""Segmentation metrics, reimplemented from the official evaluators and checked against their numbers."""

import functools
from pathlib import Path

import numpy as np
import tqdm

from fcn import bev, imageio
from fcn.data import cityscapes_labels, kitti_road, label_check

# ---------------------------------------------------------------------------------------------------------
# KITTI Road: the official devkit's pixel evaluation in perspective view
# (devkit_road, "Update February 2015", python/evaluateRoad.py + helper.py).
# Pixels are pooled over all images of a category through 256-bin histograms of the 8-bit confidences,
# which gives the devkit's counts exactly without keeping the pixels.
# ---------------------------------------------------------------------------------------------------------

KITTI_ROAD_CATEGORIES = ("um_lane", "um_road", "umm_road", "uu_road")
# um_lane is the ego-lane benchmark: a road model writes no result for it (see evaluate_kitti_road).
_LANE_CATEGORY = "um_lane"
# How many missing result names an error lists: enough to see the pattern, still one line.
_MISSING_LISTED = 5
# What the devkit prints, in this order, as percent with "%4.2f".
KITTI_ROAD_PRINTED = ("MaxF", "AvgPrec", "PRE_wp", "REC_wp", "FPR_wp", "FNR_wp")

# The devkit's own arithmetic: float64 thresholds k/255 and a float32 confidence per 8-bit value. Which
# side of a threshold a value falls on is decided by these exact numbers, so they are kept as they are.
_THRESHOLDS = np.array(range(0, 256)) / 255.0
_THRESHOLD_EDGES = np.concatenate(([-np.inf], _THRESHOLDS, [np.inf]))
_CONFIDENCES = np.clip(np.arange(256).astype("f4") / 255, 0.0, 1.0)
# Pascal VOC 11 recall levels, spelled as the devkit does (the fourth is 0.30000000000000004).
_RECALL_LEVELS = np.arange(0, 1.1, 0.1)
_EPSILON = 1e-10


def road_gt_masks(gt_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(road, valid) masks of a KITTI Road gt image, by the devkit's rule road = B > 0, valid = R > 0.

    Args:
        gt_rgb: (H, W, 3) uint8 RGB. Black is "don't care"; blue is road outside the evaluation area.
    Returns:
        Two (H, W) bool arrays. Only valid pixels take part in the evaluation. Raises ValueError for a colour
        outside the gt encoding: the devkit's rule would silently score it.
    """
    gt_rgb = np.asarray(gt_rgb)
    kitti_road.check_gt_colours(gt_rgb)
    return gt_rgb[..., 2] > 0, gt_rgb[..., 0] > 0


def read_road_gt_masks(path) -> tuple[np.ndarray, np.ndarray]:
    """`road_gt_masks` of a gt file; errors (foreign colours included) name the file."""
    gt_rgb = imageio.read_rgb(path)
    with label_check.naming_file(path):
        return road_gt_masks(gt_rgb)


def confidence_histograms(confidence_u8, road, valid) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each 8-bit confidence over valid road and valid non-road pixels.

    Args:
        confidence_u8: (H, W) uint8, v / 255 is the confidence that the pixel is road.
        road, valid: (H, W) bool masks from `road_gt_masks`.
    Returns:
        (pos_hist, neg_hist): two (256,) int64 arrays.
    """
    confidence_u8 = np.asarray(confidence_u8)
    if confidence_u8.dtype != np.uint8:
        raise ValueError(f"expected uint8 confidences, got {confidence_u8.dtype}")
    if not confidence_u8.shape == np.shape(road) == np.shape(valid):
        raise ValueError(
            f"shapes differ: confidence {confidence_u8.shape}, road {np.shape(road)}, valid {np.shape(valid)}"
        )
    road, valid = np.asarray(road, bool), np.asarray(valid, bool)
    pos_hist = np.bincount(confidence_u8[road & valid], minlength=256)
    neg_hist = np.bincount(confidence_u8[~road & valid], minlength=256)
    return pos_hist.astype(np.int64), neg_hist.astype(np.int64)


def road_scores(pos_hist, neg_hist) -> dict:
    """The devkit's scores (pxEval_maximizeFMeasure) from pooled confidence histograms.

    Returns:
        MaxF, AvgPrec, PRE_wp, REC_wp, FPR_wp, FNR_wp, BestThresh as fractions in [0, 1]; BestThresh_k, the
        first k maximising F (predicted road iff v >= k); counts at k: totalPosNum, totalNegNum, TP_wp,
        FP_wp, FN_wp, TN_wp.
    """
    pos_hist, neg_hist = _check_histogram(pos_hist, "pos_hist"), _check_histogram(neg_hist, "neg_hist")
    total_pos, total_neg = int(pos_hist.sum()), int(neg_hist.sum())
    if total_pos == 0:
        raise ValueError("no valid road pixels: recall, and with it MaxF, is undefined")
    fn, fp = _devkit_fn_fp(pos_hist, neg_hist)
    tp, tn = total_pos - fn, total_neg - fp
    recall = tp / float(total_pos)
    precision = tp / (tp + fp + _EPSILON)
    # Thresholds that find no road at all form a tail at high k, so indices below stay those of k.
    found = ~((recall == 0) & (precision == 0))
    recall, precision = recall[found], precision[found]
    f_measure = 2.0 * (precision * recall) / (precision + recall + _EPSILON)
    k = int(f_measure.argmax())
    return {
        "MaxF": float(f_measure[k]),
        "AvgPrec": _average_precision(precision, recall),
        **_working_point_rates(tp[k], tn[k], fp[k], fn[k]),
        "BestThresh": float(_THRESHOLDS[k]),
        "BestThresh_k": k,
        "counts": {
            "totalPosNum": total_pos,
            "totalNegNum": total_neg,
            "TP_wp": int(tp[k]),
            "FP_wp": int(fp[k]),
            "FN_wp": int(fn[k]),
            "TN_wp": int(tn[k]),
        },
    }


def evaluate_kitti_road(gt_dir, results_dir, categories=None, progress=False) -> dict[str, dict]:
    """Score result maps against KITTI Road gt, like the devkit's `evaluateRoad.py <results> <training>`.

    Each gt file `<category>_<id>.png` of every category evaluated needs a result of the same name in
    results_dir: an 8-bit single-channel PNG of the gt's size. Unlike the devkit, which drops a category
    whose results are missing, any missing result is an error: a table without it would look complete.

    Args:
        categories: None evaluates every road category that has gt files, and um_lane too when results_dir
            holds um_lane results (the ego-lane benchmark is separate: road models write no lane maps).
            Named categories must all have gt files.
    Returns:
        {category: road_scores(...)}, in KITTI_ROAD_CATEGORIES order (or the order asked).
    Raises:
        FileNotFoundError for a missing folder; ValueError for an empty results folder, no gt, or missing
        results (their count and the first names); ImageFileError naming the file for a result of the wrong
        size or format, or a gt file with colours outside the gt encoding.
    """
    frames = kitti_road_frame_histograms(gt_dir, results_dir, categories, progress)
    return {category: road_scores(*pooled_histograms(category_frames)) for category, category_frames in frames.items()}


def kitti_road_frame_histograms(gt_dir, results_dir, categories=None, progress=False) -> dict[str, list[tuple]]:
    """Per frame, the confidence histograms `evaluate_kitti_road` pools (same arguments, checks and errors).

    Returns:
        {category: [(frame name, pos_hist, neg_hist), ...]}, frames sorted by name; a frame name is its
        image's (um_road_000000.png -> um_000000).
    """
    pairs = _checked_pairs(Path(gt_dir), Path(results_dir), categories)
    return {category: _frame_histograms(category_pairs, category, progress) for category, category_pairs in pairs.items()}


def pooled_histograms(frames) -> tuple[np.ndarray, np.ndarray]:
    """(pos_hist, neg_hist) summed over (name, pos_hist, neg_hist) frames: a category's pixels pooled."""
    pos_total, neg_total = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for _, pos_hist, neg_hist in frames:
        pos_total += pos_hist
        neg_total += neg_hist
    return pos_total, neg_total


def road_counts_at(pos_hist, neg_hist, threshold_k: int) -> dict[str, int]:
    """TP, FP, FN, TN of histograms at the devkit's threshold index k (road_scores' BestThresh_k).

    Binned exactly as `road_scores` bins, so the counts of frames add up to the pooled TP_wp, FP_wp, ...
    """
    pos_hist, neg_hist = _check_histogram(pos_hist, "pos_hist"), _check_histogram(neg_hist, "neg_hist")
    if not 0 <= threshold_k < 256:
        raise ValueError(f"threshold index must lie in [0, 256), got {threshold_k}")
    fn, fp = _devkit_fn_fp(pos_hist, neg_hist)
    fn, fp = int(fn[threshold_k]), int(fp[threshold_k])
    return {"TP": int(pos_hist.sum()) - fn, "FP": fp, "FN": fn, "TN": int(neg_hist.sum()) - fp}


def road_predicted(confidence_u8, threshold_k: int) -> np.ndarray:
    """(H, W) bool: the pixels the devkit counts as predicted road at threshold index k (as road_counts_at)."""
    confidence_u8 = np.asarray(confidence_u8)
    if confidence_u8.dtype != np.uint8:
        raise ValueError(f"expected uint8 confidences, got {confidence_u8.dtype}")
    return _CONFIDENCES[confidence_u8] >= _THRESHOLDS[threshold_k]


def evaluate_kitti_road_bev(gt_dir, results_dir, calib_dir, categories=None, progress=False) -> dict[str, dict]:
    """`evaluate_kitti_road` in bird's-eye view, as the benchmark scores: gt and results go through each frame's
    BEV lookup (fcn/bev.py, the devkit's transform) and only cells with a source pixel and valid gt count.

    Args:
        calib_dir: the frames' KITTI calib files (<cat>_<id>.txt), e.g. .../data_road/training/calib.
    Raises:
        As evaluate_kitti_road; FileNotFoundError naming the first missing calib file (all are checked before
        any scoring); ValueError naming a malformed calib file or one that puts the road plane out of view.
    """
    pairs = _checked_pairs(Path(gt_dir), Path(results_dir), categories)
    bev.check_calib_files([gt for category_pairs in pairs.values() for gt, _ in category_pairs], calib_dir)
    histograms = functools.partial(_bev_image_histograms, calib_dir=Path(calib_dir))
    return {
        category: road_scores(*pooled_histograms(_frame_histograms(category_pairs, category, progress, histograms)))
        for category, category_pairs in pairs.items()
    }


def bev_histograms(gt_rgb, confidence_u8, lookup: bev.BevLookup) -> tuple[np.ndarray, np.ndarray]:
    """`confidence_histograms` in bird's-eye view: both maps (image-sized) through the lookup, validity folded in.

    Cells without a source pixel are black (not valid) in the BEV gt already; ANDing the lookup's valid map as
    well is the devkit's validMap, and keeps them out even for a gt whose corners are not black.
    """
    road, valid = road_gt_masks(bev.to_bev(gt_rgb, lookup))
    return confidence_histograms(bev.to_bev(confidence_u8, lookup), road, valid & lookup.valid)


def road_percent_strings(category_scores: dict) -> dict[str, str]:
    """The six numbers the devkit prints for one category: percent, "%4.2f"."""
    # The devkit scales its float32 working-point values by 100 in float32, MaxF and AvgPrec in float64.
    dtypes = {"MaxF": np.float64, "AvgPrec": np.float64}
    return {
        key: f"{float(dtypes.get(key, np.float32)(category_scores[key]) * 100):4.2f}"
        for key in KITTI_ROAD_PRINTED
    }


def format_kitti_road_table(scores: dict[str, dict], view: str = "perspective view") -> str:
    """A plain-text table of `evaluate_kitti_road` scores, one row per category, in percent."""
    lines = [
        f"KITTI Road, {view} (percent)",
        f"{'category':<10}" + "".join(f"{key:>9}" for key in KITTI_ROAD_PRINTED),
    ]
    for category, category_scores in scores.items():
        printed = road_percent_strings(category_scores)
        lines.append(f"{category:<10}" + "".join(f"{printed[key]:>9}" for key in KITTI_ROAD_PRINTED))
    return "\n".join(lines)


def _check_histogram(hist, name: str) -> np.ndarray:
    hist = np.asarray(hist)
    if hist.shape != (256,) or not np.issubdtype(hist.dtype, np.integer) or (hist < 0).any():
        raise ValueError(f"{name}: expected 256 non-negative integer counts, got {hist.dtype} {hist.shape}")
    return hist.astype(np.int64)


def _devkit_fn_fp(pos_hist: np.ndarray, neg_hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FN[k] and FP[k] for the 256 thresholds, binned exactly as the devkit's evalExp bins its pixels."""
    # Weighting each value's confidence by its pixel count is the devkit's histogram of all the pixels.
    fn_hist = np.histogram(_CONFIDENCES, bins=_THRESHOLD_EDGES, weights=pos_hist)[0]
    fp_hist = np.histogram(_CONFIDENCES, bins=_THRESHOLD_EDGES, weights=neg_hist)[0]
    fn = np.cumsum(fn_hist)[0:256]
    fp = np.flipud(np.cumsum(np.flipud(fp_hist)))[1:257]
    return fn, fp


def _average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    # Recall 1 is always reached (at k = 0 everything is predicted road), so no level is empty.
    best_precisions = [precision[recall >= level].max() for level in _RECALL_LEVELS]
    return float(sum(best_precisions) / len(best_precisions))


def _working_point_rates(tp, tn, fp, fn) -> dict[str, float]:
    """The devkit's calcEvalMeasures: float32 ratios; FPR_wp is nan when there is no valid non-road pixel."""
    tp, tn, fp, fn = (np.float32(count) for count in (tp, tn, fp, fn))
    positives, negatives = tp + fn, tn + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = {
            "PRE_wp": tp / (tp + fp),
            "REC_wp": tp / positives,
            "FPR_wp": fp / negatives,
            "FNR_wp": fn / positives,
        }
    return {key: float(value) for key, value in rates.items()}


def _checked_pairs(gt_dir: Path, results_dir: Path, categories) -> dict[str, list[tuple[Path, Path]]]:
    """{category: (gt, result) paths} of the categories to evaluate, every result present."""
    _check_folders(gt_dir, results_dir)
    categories = _categories_to_evaluate(gt_dir, results_dir, categories)
    pairs = {category: _result_pairs(gt_dir, results_dir, category) for category in categories}
    _check_results_complete(pairs, gt_dir, results_dir)
    return pairs


def _check_folders(gt_dir: Path, results_dir: Path) -> None:
    for folder, what in ((gt_dir, "gt folder"), (results_dir, "results folder")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: {what} not found")
    if not any(results_dir.iterdir()):
        raise ValueError(f"{results_dir}: results folder is empty (expected one result PNG per gt file)")


def _categories_to_evaluate(gt_dir: Path, results_dir: Path, categories) -> tuple[str, ...]:
    if categories is not None:
        return _check_categories(gt_dir, tuple(categories))
    with_gt = [category for category in KITTI_ROAD_CATEGORIES if _gt_paths(gt_dir, category)]
    lane_results = any(results_dir.glob(f"{_LANE_CATEGORY}_*.png"))
    chosen = tuple(category for category in with_gt if category != _LANE_CATEGORY or lane_results)
    if not chosen:
        raise ValueError(f"{gt_dir}: no KITTI Road gt files (<um_road|umm_road|uu_road>_<id>.png)")
    return chosen


def _check_categories(gt_dir: Path, categories: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(categories) - set(KITTI_ROAD_CATEGORIES))
    if unknown:
        raise ValueError(f"unknown KITTI Road categories {unknown}; known: {list(KITTI_ROAD_CATEGORIES)}")
    without_gt = [category for category in categories if not _gt_paths(gt_dir, category)]
    if without_gt:
        raise ValueError(f"{gt_dir}: no gt files for categories {without_gt} (<category>_<id>.png)")
    return categories


def _gt_paths(gt_dir: Path, category: str) -> list[Path]:
    return sorted(gt_dir.glob(f"{category}_*.png"))


def _result_pairs(gt_dir: Path, results_dir: Path, category: str) -> list[tuple[Path, Path]]:
    """(gt, result) paths of one category, the result named like its gt (it may not exist)."""
    return [(gt_path, results_dir / gt_path.name) for gt_path in _gt_paths(gt_dir, category)]


def _check_results_complete(pairs: dict[str, list], gt_dir: Path, results_dir: Path) -> None:
    """One line naming what is missing: count, per category, the first names."""
    missing = {
        category: [result.name for _, result in category_pairs if not result.is_file()]
        for category, category_pairs in pairs.items()
    }
    names = [name for category_missing in missing.values() for name in category_missing]
    if not names:
        return
    total = sum(len(category_pairs) for category_pairs in pairs.values())
    per_category = ", ".join(
        f"{category} {len(missing[category])} of {len(pairs[category])}"
        for category in pairs
        if missing[category]
    )
    listed = ", ".join(names[:_MISSING_LISTED])
    if len(names) > _MISSING_LISTED:
        listed += f" and {len(names) - _MISSING_LISTED} more"
    raise imageio.ImageFileError(
        f"{results_dir}: {len(names)} of {total} result files missing ({per_category}): {listed}; "
        f"every gt file in {gt_dir} needs a result of the same name"
    )


def _frame_histograms(pairs, category: str, progress: bool, image_histograms=None) -> list[tuple]:
    # 4 KB per frame: a category's frames are kept, so per-frame scores need no second reading.
    image_histograms = image_histograms or _image_histograms
    return [
        (_frame_name(gt_path, category), *image_histograms(gt_path, result_path))
        for gt_path, result_path in tqdm.tqdm(pairs, desc=category, unit="image", disable=not progress)
    ]


def _frame_name(gt_path: Path, category: str) -> str:
    """um_road_000000.png -> um_000000, the image's name."""
    return gt_path.stem.replace(f"{category}_", f"{category.split('_')[0]}_", 1)


def _image_histograms(gt_path: Path, result_path: Path) -> tuple[np.ndarray, np.ndarray]:
    road, valid = read_road_gt_masks(gt_path)
    confidence = _read_confidence(result_path, gt_path, road.shape)
    return confidence_histograms(confidence, road, valid)


def _bev_image_histograms(gt_path: Path, result_path: Path, calib_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    gt_rgb = imageio.read_rgb(gt_path)
    with label_check.naming_file(gt_path):
        kitti_road.check_gt_colours(gt_rgb)
    confidence = _read_confidence(result_path, gt_path, gt_rgb.shape[:2])
    lookup = bev.bev_lookup(bev.calib_path(calib_dir, gt_path.name), gt_rgb.shape)
    return bev_histograms(gt_rgb, confidence, lookup)


def _read_confidence(result_path: Path, gt_path: Path, shape) -> np.ndarray:
    """A result map, checked: 8-bit, single channel, the size of its gt."""
    confidence = imageio.read_unchanged(result_path)
    if confidence.ndim != 2 or confidence.dtype != np.uint8:
        raise imageio.ImageFileError(
            f"{result_path}: expected an 8-bit single-channel PNG, got {confidence.dtype} of shape {confidence.shape}"
        )
    if confidence.shape != tuple(shape):
        raise imageio.ImageFileError(
            f"{result_path}: size {confidence.shape[1]}x{confidence.shape[0]} (WxH) differs from its gt "
            f"{gt_path.name}, {shape[1]}x{shape[0]}"
        )
    return confidence


# ---------------------------------------------------------------------------------------------------------
# Multi-class segmentation: confusion matrix and the scores derived from it (IoU as in the official Cityscapes
# script, cityscapesscripts/evaluation/evalPixelLevelSemanticLabeling.py; pixel accuracy, mean accuracy and
# frequency-weighted IoU as in Long et al., FCN, CVPR 2015). Labels and predictions are training ids.
# ---------------------------------------------------------------------------------------------------------

# The 7 Cityscapes categories that contain evaluated classes ("void" has none), in the official order, and
# the category index of each of the 19 training ids, both from the one label table of the project.
CITYSCAPES_CLASS_NAMES = tuple(cityscapes_labels.CLASS_NAMES)
CITYSCAPES_CATEGORIES = cityscapes_labels.CATEGORIES
CITYSCAPES_CATEGORY_OF_TRAIN_ID = tuple(
    int(category)
    for category in cityscapes_labels.train_ids_to_categories(np.arange(cityscapes_labels.NUM_CLASSES))
)


def confusion_matrix(labels, predictions, num_classes: int, ignore_id: int | None = 255) -> np.ndarray:
    """Pixel counts of (ground truth, prediction) pairs, skipping pixels whose label is ignore_id.

    Args:
        labels: integer array, values in [0, num_classes) or ignore_id.
        predictions: integer array of the same shape, values in [0, num_classes) everywhere.
        ignore_id: label value to skip (None: none); must lie outside [0, num_classes).
    Returns:
        (C, C) int64, rows = ground truth, columns = prediction.
    """
    labels, predictions = _check_label_arrays(labels, predictions, num_classes, ignore_id)
    if ignore_id is not None:
        keep = labels != ignore_id
        labels, predictions = labels[keep], predictions[keep]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels outside [0, {num_classes}) that are not ignore_id={ignore_id}")
    pairs = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    counts = np.bincount(pairs.ravel(), minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


class ConfusionMatrix:
    """Accumulates `confusion_matrix` over images; `scores()` gives `segmentation_scores` of the total."""

    def __init__(self, num_classes: int, class_names=None, ignore_id: int | None = 255):
        self.class_names = _class_names(class_names, num_classes)
        self.ignore_id = ignore_id
        self._matrix = np.zeros((num_classes, num_classes), np.int64)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def matrix(self) -> np.ndarray:
        """(C, C) int64 counts so far (a copy), rows = ground truth, columns = prediction."""
        return self._matrix.copy()

    def update(self, labels, predictions) -> None:
        """Add one image (or batch) of training-id labels and predictions."""
        self._matrix += confusion_matrix(labels, predictions, self.num_classes, self.ignore_id)

    def reset(self) -> None:
        self._matrix[:] = 0

    def scores(self) -> dict:
        return segmentation_scores(self._matrix, self.class_names)


def segmentation_scores(matrix, class_names=None) -> dict:
    """IoU and accuracies of a confusion matrix (rows = ground truth, columns = prediction).

    A class absent from both ground truth and prediction has IoU NaN and is left out of the mean, like the
    official Cityscapes script; a class only predicted has IoU 0 and counts. Accuracy is per-class recall.
    Returns:
        plain floats: class_iou and class_accuracy ({class name: value}), mean_iou, mean_accuracy,
        pixel_accuracy, frequency_weighted_iou; and num_pixels (int).
    """
    matrix = _check_matrix(matrix)
    names = _class_names(class_names, len(matrix))
    true_positives = np.diag(matrix).astype(np.float64)
    gt_pixels, predicted_pixels = matrix.sum(axis=1), matrix.sum(axis=0)
    iou = _divide(true_positives, gt_pixels + predicted_pixels - true_positives)
    accuracy = _divide(true_positives, gt_pixels)
    total = int(matrix.sum())
    present = gt_pixels > 0  # a present class has a union > 0, so its IoU is a number
    return {
        "class_iou": dict(zip(names, map(float, iou), strict=True)),
        "class_accuracy": dict(zip(names, map(float, accuracy), strict=True)),
        "mean_iou": _nanmean(iou),
        "mean_accuracy": _nanmean(accuracy),
        "pixel_accuracy": float(np.trace(matrix) / total) if total else float("nan"),
        "frequency_weighted_iou": float(np.sum(gt_pixels[present] * iou[present]) / total)
        if total
        else float("nan"),
        "num_pixels": total,
    }


def category_confusion(matrix, category_of_class, num_categories: int | None = None) -> np.ndarray:
    """Confusion matrix of categories: the sum of each (category, category) block of a class matrix.

    Args:
        matrix: (C, C) class confusion matrix.
        category_of_class: C category indices, e.g. CITYSCAPES_CATEGORY_OF_TRAIN_ID.
        num_categories: K; default max(category_of_class) + 1.
    Returns:
        (K, K) int64.
    """
    matrix = _check_matrix(matrix)
    category_of_class = np.asarray(category_of_class)
    if category_of_class.shape != (len(matrix),) or not np.issubdtype(category_of_class.dtype, np.integer):
        raise ValueError(f"expected {len(matrix)} integer category indices, got {category_of_class!r}")
    if num_categories is None:
        num_categories = int(category_of_class.max()) + 1
    if category_of_class.min() < 0 or category_of_class.max() >= num_categories:
        raise ValueError(f"category indices outside [0, {num_categories}): {category_of_class.tolist()}")
    membership = np.eye(num_categories, dtype=np.int64)[category_of_class]  # (C, K) one-hot
    return membership.T @ matrix @ membership


def format_segmentation_table(scores: dict) -> str:
    """A plain-text table of `segmentation_scores`: IoU and accuracy per class, then the summary, in percent."""
    names = list(scores["class_iou"])
    width = max(24, *(len(name) + 2 for name in names))
    lines = [f"{'class':<{width}}{'IoU %':>9}{'acc %':>9}"]
    for name in names:
        lines.append(
            f"{name:<{width}}{_percent(scores['class_iou'][name])}{_percent(scores['class_accuracy'][name])}"
        )
    lines.append("-" * (width + 18))
    summary = {
        "mean IoU": "mean_iou",
        "mean accuracy": "mean_accuracy",
        "pixel accuracy": "pixel_accuracy",
        "frequency-weighted IoU": "frequency_weighted_iou",
    }
    lines += [f"{label:<{width}}{_percent(scores[key])}" for label, key in summary.items()]
    if "category_iou" in scores:
        lines.append("-" * (width + 18))
        lines += [
            f"{'category ' + name:<{width}}{_percent(iou)}" for name, iou in scores["category_iou"].items()
        ]
        lines.append(f"{'mean category IoU':<{width}}{_percent(scores['mean_category_iou'])}")
    return "\n".join(lines)


def _check_label_arrays(labels, predictions, num_classes: int, ignore_id) -> tuple[np.ndarray, np.ndarray]:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if ignore_id is not None and 0 <= ignore_id < num_classes:
        raise ValueError(f"ignore_id={ignore_id} is a class id; it must lie outside [0, {num_classes})")
    if labels.shape != predictions.shape:
        raise ValueError(f"shapes differ: labels {labels.shape}, predictions {predictions.shape}")
    for name, array in (("labels", labels), ("predictions", predictions)):
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    if predictions.size and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(
            f"predictions outside [0, {num_classes}): min {predictions.min()}, max {predictions.max()}"
        )
    return labels, predictions


def _check_matrix(matrix) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.issubdtype(matrix.dtype, np.integer):
        raise ValueError(f"expected a square integer confusion matrix, got {matrix.dtype} {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("confusion matrix has negative counts")
    return matrix.astype(np.int64)


def _class_names(class_names, num_classes: int) -> tuple[str, ...]:
    if class_names is None:
        return tuple(str(index) for index in range(num_classes))
    class_names = tuple(class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    return class_names


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (without a warning)."""
    result = np.full(numerator.shape, np.nan)
    defined = denominator > 0
    result[defined] = numerator[defined] / denominator[defined]
    return result


def _nanmean(values: np.ndarray) -> float:
    """Mean over the defined values, NaN (without a warning) when there is none."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _percent(value: float) -> str:
    return f"{'n/a':>9}" if np.isnan(value) else f"{100 * value:9.2f}"
