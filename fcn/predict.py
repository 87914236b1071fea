"""Inference: class probabilities at each image's own size, devkit result files, overlays, validation scores."""

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

import fcn.losses  # noqa: F401 - registers the custom loss and metric for load_model
import fcn.model  # noqa: F401 - registers the custom layers for load_model
from fcn import metrics, viz
from fcn.data import kitti_road
from fcn.imageio import read_rgb, write_png

OUTPUT_FORMATS = ("devkit", "overlay", "labels")


def load_model(path) -> keras.Model:
    """Load a saved .keras FCN (for inference: not compiled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    return keras.saving.load_model(path, compile=False)


def run_image_size(model_path) -> tuple[int, int] | None:
    """The training image size recorded in the run folder beside a model (config.json), if any."""
    config = Path(model_path).parent / "config.json"
    if not config.is_file():
        return None
    return tuple(json.loads(config.read_text())["image_size"])


def predict_probabilities(model: keras.Model, image: np.ndarray, image_size=None) -> np.ndarray:
    """Softmax probabilities for one image, at the image's own size.

    Args:
        image: (H, W, 3) uint8 RGB. image_size: (h, w) the model was trained at; the image is resized to it
            and the probabilities resized back (bilinear). None runs at the image's own size.
    Returns:
        (H, W, C) float32.
    """
    x = tf.convert_to_tensor(image[None], tf.float32)
    if image_size is not None:
        x = tf.image.resize(x, image_size, method="bilinear")
    probabilities = tf.nn.softmax(model(x, training=False), axis=-1)
    if image_size is not None:
        probabilities = tf.image.resize(probabilities, image.shape[:2], method="bilinear")
    return probabilities[0].numpy()


def road_confidence(probabilities: np.ndarray, road_id: int = 1) -> np.ndarray:
    """8-bit road confidence (round(255 * p_road)), the KITTI devkit's result format: (H, W) uint8."""
    return np.round(np.clip(probabilities[..., road_id], 0.0, 1.0) * 255).astype(np.uint8)


def list_images(input_dir) -> list[Path]:
    """PNG and JPEG files of a folder, sorted (errors if there are none)."""
    input_dir = Path(input_dir)
    images = sorted(p for p in input_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        raise FileNotFoundError(f"{input_dir}: no .png or .jpg images")
    return images


def write_predictions(model, image_paths, output_dir, image_size=None, output_format="devkit",
                      palette=kitti_road.PALETTE, progress=True) -> list[Path]:
    """Predict every image and write one file per image.

    devkit: 8-bit road confidence named like the gt (um_000000.png -> um_road_000000.png), ready for
    `fcn evaluate kitti-road`; overlay: predicted classes painted over the image; labels: (H, W) uint8 ids.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    written = []
    for path in tqdm(list(image_paths), desc="predict", disable=not progress):
        image = read_rgb(path)
        probabilities = predict_probabilities(model, image, image_size)
        if output_format == "devkit":
            target, array = Path(output_dir) / kitti_road.gt_name(Path(path).name), road_confidence(probabilities)
        elif output_format == "overlay":
            target = Path(output_dir) / Path(path).with_suffix(".png").name
            array = viz.overlay(image, probabilities.argmax(-1), palette)
        else:
            target, array = Path(output_dir) / Path(path).with_suffix(".png").name, probabilities.argmax(-1)
        written.append(write_png(target, array.astype(np.uint8)))
    return written


def evaluate_road(model, samples, image_size=None, progress=False) -> dict[str, dict]:
    """KITTI devkit scores (MaxF, AP, ...) of a model on labelled KITTI Road samples, per <cat>_road category.

    Probabilities are computed at each image's full size, as the benchmark requires.
    """
    histograms = {}
    for sample in tqdm(samples, desc="evaluate", disable=not progress):
        road, valid = metrics.road_gt_masks(read_rgb(sample.label))
        confidence = road_confidence(predict_probabilities(model, read_rgb(sample.image), image_size))
        pos, neg = metrics.confidence_histograms(confidence, road, valid)
        total = histograms.setdefault(f"{sample.category}_road", [0, 0])
        total[0], total[1] = total[0] + pos, total[1] + neg
    return {category: metrics.road_scores(pos, neg) for category, (pos, neg) in sorted(histograms.items())}


def evaluate_segmentation(model, samples, info, image_size=None, progress=False) -> dict:
    """Per-class IoU, mean IoU, pixel accuracy (and the confusion matrix) over labelled samples, at full size.

    Args:
        info: the dataset's DatasetInfo (label reader, class names).
    """
    confusion = metrics.ConfusionMatrix(info.num_classes)
    for sample in tqdm(samples, desc="evaluate", disable=not progress):
        probabilities = predict_probabilities(model, read_rgb(sample.image), image_size)
        confusion.update(info.read_label(sample.label), probabilities.argmax(-1))
    scores = metrics.segmentation_scores(confusion.matrix, info.class_names)
    if info.class_names == metrics.CITYSCAPES_CLASS_NAMES:
        # Cityscapes-labelled data (Cityscapes, KITTI semantics) also gets the official 7 category scores.
        categories = metrics.category_confusion(confusion.matrix, metrics.CITYSCAPES_CATEGORY_OF_TRAIN_ID)
        category_scores = metrics.segmentation_scores(categories, metrics.CITYSCAPES_CATEGORIES)
        scores["category_iou"] = category_scores["class_iou"]
        scores["mean_category_iou"] = category_scores["mean_iou"]
    return {**scores, "confusion_matrix": confusion.matrix.tolist()}
