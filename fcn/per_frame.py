"""Scores per frame, worst first: which frames of a split a model gets wrong (`--per-frame FILE.csv`).

A split's score pools its pixels, so a few bad frames hide in a good mean. One row per frame shows them:
KITTI Road at the split's own working point (each category's pooled MaxF threshold, as the devkit picks it),
many classes by the frame's pixel accuracy and the IoU of each class it holds.
"""

import csv
import io
import math
from pathlib import Path

import numpy as np

from fcn import metrics
from fcn.imageio import write_bytes_atomic

ROAD_COLUMNS = ("frame", "category", "f_measure", "precision", "recall", "threshold", "tp", "fp", "fn", "tn")


def road_frame_row(frame: str, category: str, pos_hist, neg_hist, threshold_k: int) -> dict:
    """One frame's F-measure, precision and recall at a category's threshold index k (BestThresh_k).

    Fractions in [0, 1]; NaN where undefined: recall without road in the frame, precision without predicted
    road, F-measure with neither (F = 2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall).
    """
    counts = metrics.road_counts_at(pos_hist, neg_hist, threshold_k)
    tp, fp, fn = counts["TP"], counts["FP"], counts["FN"]
    return {
        "frame": frame,
        "category": category,
        "f_measure": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "threshold": threshold_k / 255.0,
        "tp": tp, "fp": fp, "fn": fn, "tn": counts["TN"],
    }


def road_frame_rows(frames: dict[str, list[tuple]], scores: dict[str, dict]) -> list[dict]:
    """`road_frame_row` of every frame, each at its category's pooled threshold, worst first.

    Args:
        frames: {category: [(frame name, pos_hist, neg_hist), ...]} (metrics.kitti_road_frame_histograms).
        scores: {category: metrics.road_scores(...)} of the same frames.
    """
    rows = [road_frame_row(name, category, pos, neg, scores[category]["BestThresh_k"])
            for category, category_frames in frames.items() for name, pos, neg in category_frames]
    return worst_first(rows, "f_measure")


def kitti_road_per_frame(gt_dir, results_dir, categories=None, progress=False) -> tuple[dict, list[dict]]:
    """(metrics.evaluate_kitti_road scores, `road_frame_rows`) from one reading of the files."""
    frames = metrics.kitti_road_frame_histograms(gt_dir, results_dir, categories, progress)
    scores = {category: metrics.road_scores(*metrics.pooled_histograms(category_frames))
              for category, category_frames in frames.items()}
    return scores, road_frame_rows(frames, scores)


def segmentation_frame_row(frame: str, labels, predictions, class_names, ignore_id: int = 255) -> dict:
    """One frame's pixel accuracy, mean IoU and the IoU of each class ("iou <class>").

    A class in neither the frame's truth nor its prediction has IoU NaN (left out of the mean, as in
    metrics.segmentation_scores); a class only predicted has IoU 0.
    """
    matrix = metrics.confusion_matrix(labels, predictions, len(class_names), ignore_id)
    scores = metrics.segmentation_scores(matrix, class_names)
    return {"frame": frame, "pixel_accuracy": scores["pixel_accuracy"], "mean_iou": scores["mean_iou"],
            **{f"iou {name}": iou for name, iou in scores["class_iou"].items()}}


def segmentation_columns(class_names) -> tuple[str, ...]:
    """The CSV columns of `segmentation_frame_row`."""
    return ("frame", "pixel_accuracy", "mean_iou", *(f"iou {name}" for name in class_names))


def worst_first(rows: list[dict], key: str) -> list[dict]:
    """Rows sorted by `key`, lowest first; rows without a score (NaN) last, in their order."""
    return sorted(rows, key=lambda row: (math.isnan(row[key]), row[key] if not math.isnan(row[key]) else 0.0))


def write_csv(path, rows: list[dict], columns) -> Path:
    """Write rows as CSV (NaN as an empty cell) via a temporary file and a rename: never half a file."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue().encode())
    return path


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def _cell(value):
    if isinstance(value, float | np.floating) and math.isnan(value):
        return ""
    return value
