"""Inference: class probabilities at each image's own size, devkit result files, overlays, validation scores.

A model file says what it was trained for (fcn/modelfile.py): the size it runs at and its classes. Both are
used and checked here, so the same file gives the same scores wherever it is copied, and a model is never
scored against data with other classes.
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm.auto import tqdm

from fcn import bev, metrics, modelfile, tflite_runner, viz
from fcn import per_frame as per_frame_scores
from fcn.data import DatasetInfo, kitti_road
from fcn.imageio import ImageFileError, read_png_size, read_rgb, write_png

if TYPE_CHECKING:  # Keras is imported where a model is loaded or run, not on import
    import keras

OUTPUT_FORMATS = ("devkit", "overlay", "labels")
# Memory limits. Results are upsampled one class at a time, so an image costs about 16 bytes per pixel
# beside the model: 100 megapixels (e.g. 10000x10000) stay under 2 GB. Running the network itself at an
# image's own size (no image_size) is limited to what fits comfortably: 4 megapixels.
MAX_IMAGE_PIXELS = 100_000_000
MAX_NETWORK_PIXELS = 4_000_000


def load_model(path) -> keras.Model | tflite_runner.TFLiteModel:
    """Load a .keras FCN (for inference: not compiled) or a .tflite export; a corrupt file is reported as such."""
    if tflite_runner.is_tflite(path):
        return tflite_runner.TFLiteModel(path)  # called like the Keras model (fcn/tflite_runner.py)
    return modelfile.load_model(path)


def read_model_info(model_path) -> dict | None:
    """The fcn.json description of a model: inside a .keras file, beside a .tflite export; None without one."""
    if tflite_runner.is_tflite(model_path):
        return tflite_runner.read_info(model_path)
    return modelfile.read_info(model_path)


def run_image_size(model_path) -> tuple[int, int] | None:
    """The image size a model runs at: recorded in the model file (or, for older files, the run's config.json)."""
    info = read_model_info(model_path)
    if info is not None:
        return tuple(info["image_size"])
    if tflite_runner.is_tflite(model_path):
        return tflite_runner.input_size(model_path)
    config = Path(model_path).parent / "config.json"
    if not config.is_file():
        return None
    return tuple(json.loads(config.read_text())["image_size"])


def check_model_classes(model_path, model: keras.Model, dataset: DatasetInfo) -> None:
    """The model scores the dataset's classes, in its order; otherwise a ValueError says what differs."""
    info = read_model_info(model_path)
    outputs = model.output_shape[-1]
    if outputs != dataset.num_classes:
        trained = f" (trained on {info['dataset']})" if info else ""
        raise ValueError(f"{model_path}: the model has {outputs} classes{trained} but {dataset.name} has "
                         f"{dataset.num_classes} ({', '.join(dataset.class_names)})")
    if info is not None and tuple(info["class_names"]) != dataset.class_names:
        raise ValueError(f"{model_path}: the model's classes ({', '.join(info['class_names'])}, trained on "
                         f"{info['dataset']}) are not {dataset.name}'s ({', '.join(dataset.class_names)})")


def road_class_of(model_path, model: keras.Model) -> int:
    """The output channel that means KITTI road; a ValueError for a model that has none."""
    info = read_model_info(model_path)
    if info is not None and info.get("road_class") is not None:
        return int(info["road_class"])
    what = f"trained on {info['dataset']}" if info else f"{model.output_shape[-1]} classes, no fcn description"
    raise ValueError(f"{model_path}: not a KITTI Road model ({what}); road results need a model trained with "
                     "--dataset kitti_road")


def check_image_size(path, image_size, shape=None) -> None:
    """Refuse images too large to predict within the memory limits above.

    PNG sizes come from the header, before any decoding; other formats pass their decoded `shape`.
    """
    path = Path(path)
    if shape is None:
        if path.suffix.lower() != ".png":
            return
        shape = read_png_size(path)
    height, width = shape[:2]
    limit = MAX_IMAGE_PIXELS if image_size is not None else MAX_NETWORK_PIXELS
    if height * width > limit:
        hint = "" if image_size is not None else "; pass --image-size to run the network at a smaller size"
        raise ImageFileError(f"{path}: {height}x{width} pixels is over the limit of {limit:,} pixels{hint}")


def predict_scores(model: keras.Model, image: np.ndarray, image_size=None, tta_scales=(1.0,),
                   tta_flip: bool = False) -> np.ndarray:
    """Softmax probabilities at the size the network runs at: (h, w, C) float32 (image_size, or the image's).

    Args:
        tta_scales: test-time augmentation: run the network at each of these multiples of that size and
            average the probabilities, resized back to it (bilinear). tta_flip: also run each scale on the
            mirrored image (its probabilities mirrored back). The defaults, (1.0,) and False, run once.
    """
    tta_scales = check_tta_scales(tta_scales)
    if tta_scales == (1.0,) and not tta_flip:
        return _network_scores(model, image, image_size)
    base = tuple(image_size) if image_size is not None else image.shape[:2]
    total = None
    for scale in tta_scales:
        size = tuple(max(1, round(side * scale)) for side in base)
        scores = _network_scores(model, image, size)
        if tta_flip:  # each scale's pair summed first, so an image and its mirror get mirrored sums
            scores = scores + _network_scores(model, image[:, ::-1], size)[:, ::-1]
        scores = _resize_scores(scores, base)
        total = scores if total is None else total + scores
    return total / (len(tta_scales) * (2 if tta_flip else 1))


def check_tta_scales(scales) -> tuple[float, ...]:
    """The test-time scales as a tuple of floats; a ValueError unless there are some, all finite and above 0."""
    scales = tuple(float(scale) for scale in scales)
    if not scales or not all(0 < scale < float("inf") for scale in scales):
        raise ValueError(f"test-time scales must be finite numbers above 0, got {scales}")
    return scales


def _network_scores(model, image, image_size) -> np.ndarray:
    # Resized in its own dtype (bilinear computes in float32 and returns float32, the same values as resizing
    # a float32 copy): a float32 copy of a large image would cost 12 bytes per pixel, twice over in the
    # conversion.
    import tensorflow as tf  # here, not on import: the checks before a model is loaded need no TensorFlow

    x = tf.convert_to_tensor(image[None])
    if image_size is not None:
        x = tf.image.resize(x, image_size, method="bilinear")
    return tf.nn.softmax(_forward(model)(tf.cast(x, tf.float32)), axis=-1)[0].numpy()


_TRACED = weakref.WeakKeyDictionary()


def _forward(model):
    """model(x, training=False), traced into one graph per input shape for a Keras model.

    Called eagerly a Keras model runs layer by layer from Python; for a MobileNet's ~150 layers that costs more
    than the arithmetic (MobileNetV2 at 160x576: 165 ms eagerly, 30 ms traced; benchmarks/README.md). TFLite models
    are already compiled and are called as they are, as are models on Keras' JAX backend.
    """
    import keras
    import tensorflow as tf

    if not isinstance(model, keras.Model) or keras.backend.backend() != "tensorflow":  # tf.function cannot trace JAX
        return lambda x: model(x, training=False)
    if model not in _TRACED:
        weak = weakref.ref(model)  # a strong reference from the value would keep the key alive forever
        _TRACED[model] = tf.function(lambda x: weak()(x, training=False), reduce_retracing=True)
    return _TRACED[model]


def _resize_scores(scores: np.ndarray, shape) -> np.ndarray:
    # At the network's size all classes at once are small; bilinear with half-pixel centres, as _upsample.
    if scores.shape[:2] == tuple(shape):
        return scores
    return np.stack([_upsample(scores[..., c], shape) for c in range(scores.shape[-1])], axis=-1)


def _upsample(channel: np.ndarray, shape) -> np.ndarray:
    # Bilinear with half-pixel centres (as tf.image.resize), one channel at a time to bound memory.
    if channel.shape == tuple(shape):
        return channel
    return cv2.resize(channel, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def predict_probabilities(model: keras.Model, image: np.ndarray, image_size=None, tta_scales=(1.0,),
                          tta_flip: bool = False) -> np.ndarray:
    """Softmax probabilities for one image, at the image's own size.

    Args:
        image: (H, W, 3) uint8 RGB. image_size: (h, w) the model was trained at; the image is resized to it
            and the probabilities resized back (bilinear). None runs at the image's own size.
        tta_scales, tta_flip: test-time augmentation (see predict_scores).
    Returns:
        (H, W, C) float32. Needs 4 * C bytes per pixel: for large images use predict_labels or
        predict_road_confidence, which keep one class at a time.
    """
    scores = predict_scores(model, image, image_size, tta_scales=tta_scales, tta_flip=tta_flip)
    return np.stack([_upsample(scores[..., c], image.shape[:2]) for c in range(scores.shape[-1])], axis=-1)


def predict_labels(model: keras.Model, image: np.ndarray, image_size=None, tta_scales=(1.0,),
                   tta_flip: bool = False) -> np.ndarray:
    """The most probable class of each pixel at the image's own size: (H, W) uint8 (memory: 9 bytes/pixel).

    tta_scales, tta_flip: test-time augmentation (see predict_scores).
    """
    scores = predict_scores(model, image, image_size, tta_scales=tta_scales, tta_flip=tta_flip)
    best = np.full(image.shape[:2], -np.inf, np.float32)
    labels = np.zeros(image.shape[:2], np.uint8)
    better = np.empty(image.shape[:2], bool)
    for c in range(scores.shape[-1]):
        channel = _upsample(scores[..., c], image.shape[:2])
        np.greater(channel, best, out=better)
        labels[better] = c
        np.copyto(best, channel, where=better)  # no channel[better] copy
    return labels


def predict_road_confidence(model: keras.Model, image: np.ndarray, image_size=None, road_id: int = 1,
                            tta_scales=(1.0,), tta_flip: bool = False) -> np.ndarray:
    """8-bit road confidence at the image's own size (the KITTI devkit's result format): (H, W) uint8.

    tta_scales, tta_flip: test-time augmentation (see predict_scores).
    """
    scores = predict_scores(model, image, image_size, tta_scales=tta_scales, tta_flip=tta_flip)
    return road_confidence(_upsample(scores[..., road_id], image.shape[:2])[..., None], road_id=0)


def road_confidence(probabilities: np.ndarray, road_id: int = 1) -> np.ndarray:
    """8-bit road confidence (round(255 * p_road)), the KITTI devkit's result format: (H, W) uint8."""
    return np.round(np.clip(probabilities[..., road_id], 0.0, 1.0) * 255).astype(np.uint8)


def list_images(input_dir) -> list[Path]:
    """PNG and JPEG files of a folder, sorted (errors if there are none)."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: input folder not found")
    images = sorted(p for p in input_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        raise FileNotFoundError(f"{input_dir}: no .png or .jpg images")
    return images


def write_predictions(model, image_paths, output_dir, image_size=None, output_format="devkit",
                      palette=kitti_road.PALETTE, progress=True, road_id: int = 1, tta_scales=(1.0,),
                      tta_flip: bool = False) -> list[Path]:
    """Predict every image and write one file per image (tta_scales, tta_flip: see predict_scores).

    devkit: 8-bit road confidence named like the gt (um_000000.png -> um_road_000000.png), ready for
    `fcn evaluate kitti-road`; overlay: predicted classes painted over the image; labels: (H, W) uint8 ids.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    image_paths = list(image_paths)
    for path in image_paths:  # names and sizes are checked before any work
        check_image_size(path, image_size)
        if output_format == "devkit":
            kitti_road.gt_name(Path(path).name)
    written = []
    for path in tqdm(image_paths, desc="predict", disable=not progress):
        image = read_rgb(path)
        check_image_size(path, image_size, image.shape)  # JPEG sizes are known only now
        if output_format == "devkit":
            target = Path(output_dir) / kitti_road.gt_name(Path(path).name)
            array = predict_road_confidence(model, image, image_size, road_id, tta_scales=tta_scales,
                                            tta_flip=tta_flip)
        else:
            target = Path(output_dir) / Path(path).with_suffix(".png").name
            labels = predict_labels(model, image, image_size, tta_scales=tta_scales, tta_flip=tta_flip)
            array = viz.overlay(image, labels, palette) if output_format == "overlay" else labels
        written.append(write_png(target, array.astype(np.uint8)))
    return written


def bev_lookups(image_paths, calib_dir) -> list[tuple[Path, bev.BevLookup]]:
    """Each KITTI Road image with the BEV lookup of its calib file (calib_dir/<cat>_<id>.txt).

    Every calib file is checked (present, well-formed, road plane in view) before any is used, so a bad one
    stops a run before the model is loaded; errors name the file.
    """
    image_paths = [Path(path) for path in image_paths]
    bev.check_calib_files([path.name for path in image_paths], calib_dir)
    return [(path, bev.bev_lookup(bev.calib_path(calib_dir, path.name), read_png_size(path)))
            for path in image_paths]


def predict_bev_confidence(model, image: np.ndarray, lookup: bev.BevLookup, image_size=None, road_id: int = 1,
                           tta_scales=(1.0,), tta_flip: bool = False) -> np.ndarray:
    """The devkit result map of an image in bird's-eye view: (800, 400) uint8, 0 where no source pixel.

    The 8-bit perspective map (predict_road_confidence) goes through the devkit's transform, exactly as
    transform2BEV.py turns a perspective result file into the form the KITTI server takes.
    """
    confidence = predict_road_confidence(model, image, image_size, road_id, tta_scales=tta_scales, tta_flip=tta_flip)
    return bev.to_bev(confidence, lookup)


def write_bev_predictions(model, lookups, output_dir, image_size=None, road_id: int = 1, progress=True,
                          tta_scales=(1.0,), tta_flip: bool = False) -> list[Path]:
    """`write_predictions` in devkit format, transformed to bird's-eye view: one 800x400 PNG per image, named
    like the gt (um_000000.png -> um_road_000000.png).

    Args:
        lookups: (image path, BevLookup) pairs from bev_lookups.
    """
    lookups = list(lookups)
    for path, _ in lookups:
        check_image_size(path, image_size)
    written = []
    for path, lookup in tqdm(lookups, desc="predict (BEV)", disable=not progress):
        confidence = predict_bev_confidence(model, read_rgb(path), lookup, image_size, road_id,
                                            tta_scales=tta_scales, tta_flip=tta_flip)
        written.append(write_png(Path(output_dir) / kitti_road.gt_name(path.name), confidence))
    return written


def road_views(model, sample, calib_dir, image_size=None, road_id: int = 1) -> dict[str, np.ndarray]:
    """One labelled KITTI Road frame in both views, the arrays viz.plot_road_views draws.

    Returns:
        image (H, W, 3) uint8 RGB, confidence (H, W) uint8, and their bird's-eye views confidence_bev (800, 400)
        uint8 and gt_bev (800, 400, 3) uint8 RGB (the gt through the same lookup).
    """
    [(_, lookup)] = bev_lookups([sample.image], calib_dir)
    image = read_rgb(sample.image)
    confidence = predict_road_confidence(model, image, image_size, road_id)
    return {"image": image, "confidence": confidence, "confidence_bev": bev.to_bev(confidence, lookup),
            "gt_bev": bev.to_bev(kitti_road.read_gt(sample.label), lookup)}


def evaluate_road_views(model, samples, calib_dir, image_size=None, progress=False, road_id: int = 1,
                        tta_scales=(1.0,), tta_flip: bool = False) -> dict[str, dict[str, dict]]:
    """`evaluate_road` in both views from one prediction per frame: {"perspective": ..., "bev": ...}.

    BEV is what the KITTI leaderboard shows; calib_dir holds the samples' calib files (training/calib).
    """
    lookups = dict(bev_lookups([sample.image for sample in samples], calib_dir))
    histograms = {"perspective": {}, "bev": {}}
    for sample in tqdm(samples, desc="evaluate", disable=not progress):
        gt_rgb = kitti_road.read_gt(sample.label)
        confidence = predict_road_confidence(model, read_rgb(sample.image), image_size, road_id,
                                             tta_scales=tta_scales, tta_flip=tta_flip)
        road, valid = metrics.road_gt_masks(gt_rgb)
        for view, (pos, neg) in (("perspective", metrics.confidence_histograms(confidence, road, valid)),
                                 ("bev", metrics.bev_histograms(gt_rgb, confidence, lookups[sample.image]))):
            total = histograms[view].setdefault(f"{sample.category}_road", [0, 0])
            total[0], total[1] = total[0] + pos, total[1] + neg
    return {view: {category: metrics.road_scores(pos, neg) for category, (pos, neg) in sorted(view_histograms.items())}
            for view, view_histograms in histograms.items()}


def write_error_maps(model, image_paths, label_paths, output_dir, info: DatasetInfo, image_size=None,
                     progress=True, tta_scales=(1.0,), tta_flip: bool = False) -> list[Path]:
    """Predict every image and write its error map (viz.error_map against its ground truth) as <name>.png.

    Every pair is checked first (sizes, and each ground truth read through the dataset's label reader), so
    a bad file stops the command before anything is written.
    """
    image_paths, label_paths = list(image_paths), list(label_paths)
    for image_path, label_path in zip(image_paths, label_paths, strict=True):
        check_image_size(image_path, image_size)
        _check_ground_truth(image_path, label_path, info)
    written = []
    for image_path, label_path in tqdm(list(zip(image_paths, label_paths, strict=True)), desc="errors",
                                       disable=not progress):
        image = read_rgb(image_path)
        prediction = predict_labels(model, image, image_size, tta_scales=tta_scales, tta_flip=tta_flip)
        errors = viz.error_map(image, info.read_label(label_path), prediction, info.palette, info.road_class)
        written.append(write_png(Path(output_dir) / Path(image_path).with_suffix(".png").name, errors))
    return written


def _check_ground_truth(image_path, label_path, info: DatasetInfo) -> None:
    # PNG sizes from the headers; a JPEG image is decoded to learn its size.
    image_path, label_path = Path(image_path), Path(label_path)
    image_shape = read_png_size(image_path) if image_path.suffix.lower() == ".png" else read_rgb(image_path).shape[:2]
    label_shape = info.read_label(label_path).shape  # also refuses values outside the dataset's encoding
    if tuple(label_shape) != tuple(image_shape):
        raise ImageFileError(f"{label_path}: ground truth is {label_shape[1]}x{label_shape[0]} (WxH) but its image "
                             f"{image_path.name} is {image_shape[1]}x{image_shape[0]}")


def evaluate_road(model, samples, image_size=None, progress=False, road_id: int = 1,
                  pooled: bool = False, tta_scales=(1.0,), tta_flip: bool = False,
                  per_frame: list | None = None) -> dict[str, dict]:
    """KITTI devkit scores (MaxF, AP, ...) of a model on labelled KITTI Road samples, per <cat>_road category.

    Probabilities are computed at each image's full size, as the benchmark requires. With pooled=True
    the result also has "urban_road": all categories' pixels together (the benchmark's URBAN_ROAD).
    tta_scales, tta_flip: test-time augmentation (see predict_scores). per_frame: a list that gets one row
    per frame (fcn.per_frame.road_frame_row, at its category's threshold), worst first.
    """
    frames = {}
    for sample in tqdm(samples, desc="evaluate", disable=not progress):
        road, valid = metrics.read_road_gt_masks(sample.label)
        confidence = predict_road_confidence(model, read_rgb(sample.image), image_size, road_id,
                                             tta_scales=tta_scales, tta_flip=tta_flip)
        frames.setdefault(f"{sample.category}_road", []).append(
            (sample.name, *metrics.confidence_histograms(confidence, road, valid)))
    frames = dict(sorted(frames.items()))
    scores = {category: metrics.road_scores(*metrics.pooled_histograms(f)) for category, f in frames.items()}
    if per_frame is not None:
        per_frame.extend(per_frame_scores.road_frame_rows(frames, scores))
    if pooled:
        everything = [frame for category_frames in frames.values() for frame in category_frames]
        scores["urban_road"] = metrics.road_scores(*metrics.pooled_histograms(everything))
    return dict(sorted(scores.items()))


def evaluate_segmentation(model, samples, info, image_size=None, progress=False, tta_scales=(1.0,),
                          tta_flip: bool = False, per_frame: list | None = None) -> dict:
    """Per-class IoU, mean IoU, pixel accuracy (and the confusion matrix) over labelled samples, at full size.

    Args:
        info: the dataset's DatasetInfo (label reader, class names).
        tta_scales, tta_flip: test-time augmentation (see predict_scores).
        per_frame: a list that gets one row per frame (fcn.per_frame.segmentation_frame_row), worst first.
    """
    if model.output_shape[-1] != info.num_classes:
        raise ValueError(f"the model has {model.output_shape[-1]} classes but {info.name} has {info.num_classes}")
    confusion = metrics.ConfusionMatrix(info.num_classes)
    rows = []
    for sample in tqdm(samples, desc="evaluate", disable=not progress):
        labels = predict_labels(model, read_rgb(sample.image), image_size, tta_scales=tta_scales, tta_flip=tta_flip)
        truth = info.read_label(sample.label)
        confusion.update(truth, labels)
        if per_frame is not None:
            rows.append(per_frame_scores.segmentation_frame_row(sample.name, truth, labels, info.class_names))
    if per_frame is not None:
        per_frame.extend(per_frame_scores.worst_first(rows, "mean_iou"))
    scores = metrics.segmentation_scores(confusion.matrix, info.class_names)
    if info.class_names == metrics.CITYSCAPES_CLASS_NAMES:
        # Cityscapes-labelled data (Cityscapes, KITTI semantics) also gets the official 7 category scores.
        categories = metrics.category_confusion(confusion.matrix, metrics.CITYSCAPES_CATEGORY_OF_TRAIN_ID)
        category_scores = metrics.segmentation_scores(categories, metrics.CITYSCAPES_CATEGORIES)
        scores["category_iou"] = category_scores["class_iou"]
        scores["mean_category_iou"] = category_scores["mean_iou"]
    return {**scores, "confusion_matrix": confusion.matrix.tolist()}
