"""Class balancing for many-class datasets: median-frequency weights (Eigen & Fergus, ICCV 2015).

freq(c) = pixels of class c / pixels of the images in which c occurs; weight(c) = median(freq) / freq(c).
Ignore pixels (255) count for nothing. Keras' `class_weight` does not apply to dense targets, so the
weights reach the loss as per-pixel sample weights from the tf.data pipeline.

Plain median-frequency weights can reach 100x for a class seen in a few pixels, which makes training noisy;
`adjust_weights` offers the usual softenings: their square root, and a cap.
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fcn.imageio import write_bytes_atomic

IGNORE_ID = 255
WEIGHTINGS = ("median_frequency", "sqrt_median_frequency")


def class_pixel_counts(label_paths: Sequence, read_label: Callable, num_classes: int, progress=False):
    """(pixels per class, pixels of the images containing each class), both (C,) int64."""
    class_pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for path in tqdm(label_paths, desc="class frequencies", disable=not progress):
        labels = read_label(path)
        valid = labels[labels != IGNORE_ID]
        if valid.size and valid.max() >= num_classes:
            raise ValueError(f"{path}: label {valid.max()} is outside [0, {num_classes})")
        counts = np.bincount(valid, minlength=num_classes)
        class_pixels += counts
        image_pixels += np.where(counts > 0, valid.size, 0)
    return class_pixels, image_pixels


def median_frequency_weights(class_pixels: np.ndarray, image_pixels: np.ndarray) -> np.ndarray:
    """Per-class weights (C,) float32; a class that never occurs gets weight 0."""
    present = class_pixels > 0
    frequency = np.zeros(len(class_pixels), np.float64)
    frequency[present] = class_pixels[present] / image_pixels[present]
    weights = np.zeros_like(frequency)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights.astype(np.float32)


def adjust_weights(weights: np.ndarray, weighting: str = "median_frequency", max_weight: float | None = None):
    """Median-frequency weights softened: their square root ("sqrt_median_frequency"), then capped at max_weight.

    The defaults return the weights unchanged. Absent classes keep weight 0. Returns (C,) float32.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if max_weight is not None and not max_weight > 0:
        raise ValueError(f"max_weight must be > 0, got {max_weight}")
    weights = np.asarray(weights, np.float32)
    if weighting == "sqrt_median_frequency":
        weights = np.sqrt(weights)
    if max_weight is not None:
        weights = np.minimum(weights, np.float32(max_weight))
    return weights


def cached_median_frequency_weights(label_paths, read_label, num_classes, cache_dir,
                                    weighting: str = "median_frequency", max_weight: float | None = None):
    """median_frequency_weights of a training set, cached in cache_dir by a hash of the file list.

    `weighting` and `max_weight` (see `adjust_weights`) apply after the cache, which holds the plain weights.
    """
    return adjust_weights(_cached_plain_weights(label_paths, read_label, num_classes, cache_dir), weighting, max_weight)


def _cached_plain_weights(label_paths, read_label, num_classes, cache_dir) -> np.ndarray:
    key = hashlib.sha1("\n".join(sorted(str(p) for p in label_paths)).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"class_weights_{num_classes}_{key}.json"
    if cache.is_file():
        return np.array(json.loads(cache.read_text())["weights"], np.float32)
    weights = median_frequency_weights(*class_pixel_counts(label_paths, read_label, num_classes, progress=True))
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(cache, json.dumps({"weights": weights.tolist(), "files": len(label_paths)}).encode())
    return weights
