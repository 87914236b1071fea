"""The tf.data input pipeline shared by every dataset: decode, map labels, augment, resize, batch, prefetch.

A dataset reader supplies paths and one `read_label(path) -> (H, W) uint8 training ids` function; the
pipeline never interprets label values except IGNORE_ID (255), which it carries through untouched.
"""

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fcn.imageio import ImageFileError, read_png_size, read_rgb

IGNORE_ID = 255
AUTOTUNE = tf.data.AUTOTUNE
# Decoded training sets up to this size are kept in memory after the first epoch (see `fits_in_memory`):
# 2 GiB holds e.g. ~1,000 Cityscapes frames at 1024x512, and stays well under a laptop's RAM.
CACHE_BUDGET_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Augmentation:
    """Joint random augmentation. Geometry is applied identically to image and label."""

    flip: bool = True
    # Random crop covering this fraction range of each side, then resized back to the training size.
    min_crop_fraction: float = 0.7
    # Photometric jitter, on images scaled to [0, 1]: robustness to lighting.
    brightness: float = 0.2
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.03
    # Random scale then crop (MMSegmentation / DeepLab recipe), replacing the crop above when set: the image is
    # resized to the training size times a factor drawn from this range, then a training-size window is
    # cropped; where the scaled image is smaller, the label is padded with IGNORE_ID and the image with 0.
    scale_range: tuple[float, float] | None = None

    def __post_init__(self):
        if self.scale_range is not None and not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")


def load_pair(image_path, label_path, read_label: Callable) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image and its label map, checking that their sizes agree (errors name the files)."""
    image = read_rgb(image_path)
    label = read_label(label_path)
    if label.shape != image.shape[:2]:
        raise ImageFileError(
            f"{label_path}: label is {label.shape[0]}x{label.shape[1]} but its image {image_path} "
            f"is {image.shape[0]}x{image.shape[1]} (HxW)"
        )
    return image, label.astype(np.uint8)


# The message of the last bad file met inside tf.data in this process, for `input_error` below.
_last_input_error: list[str] = []
_INPUT_ERROR_MARK = "fcn input error:"


def _decode_fn(read_label: Callable, cache: dict | None = None):
    # `cache`, when given, keeps every decoded pair by its paths, so later epochs do not re-read the files.
    # Only good pairs are kept, so a bad file is met (and reported) each time it is read.
    def load(image_path, label_path):
        # Never raise inside tf.data's Python callback: an exception there reaches the person as a long
        # graph dump (and aborted the interpreter at exit). The problem travels out as a string instead.
        key = (image_path, label_path)
        if cache is not None and key in cache:
            return (*cache[key], b"")
        image_path, label_path = image_path.decode(), label_path.decode()
        try:
            image, label = load_pair(image_path, label_path, read_label)
            if cache is not None:
                cache[key] = (image, label)
            return image, label, b""
        except Exception as error:  # noqa: BLE001 - every failure of a file becomes one named message
            message = str(error) if isinstance(error, ImageFileError) else f"{image_path}: {error}"
            _last_input_error[:] = [message]
            return np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.uint8), message.encode()

    def decode(image_path, label_path):
        image, label, problem = tf.numpy_function(load, [image_path, label_path],
                                                  [tf.uint8, tf.uint8, tf.string], stateful=False)
        check = tf.debugging.Assert(tf.equal(problem, ""), [_INPUT_ERROR_MARK, problem])
        with tf.control_dependencies([check]):
            image, label = tf.identity(image), tf.identity(label)
        image.set_shape([None, None, 3])
        label.set_shape([None, None])
        return image, label

    return decode


def input_error(error: Exception) -> ImageFileError | None:
    """The bad-file error behind a TensorFlow error raised while iterating a dataset, if there was one.

    tf.data reports a failed file as a TensorFlow error whose text is a graph dump; this returns the one
    line a person needs ("<file>: <what is wrong>") as an ImageFileError, or None for other errors.
    """
    if not isinstance(error, tf.errors.OpError) or _INPUT_ERROR_MARK not in str(error):
        return None
    return ImageFileError(_last_input_error[0]) if _last_input_error else ImageFileError(str(error))


def _random_crop(image, label, min_fraction, seed):
    shape = tf.shape(label)
    fraction = tf.random.stateless_uniform([], seed=seed, minval=min_fraction, maxval=1.0)
    crop_h = tf.cast(tf.cast(shape[0], tf.float32) * fraction, tf.int32)
    crop_w = tf.cast(tf.cast(shape[1], tf.float32) * fraction, tf.int32)
    top = tf.random.stateless_uniform([], seed=seed + 1, maxval=shape[0] - crop_h + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seed=seed + 2, maxval=shape[1] - crop_w + 1, dtype=tf.int32)
    return image[top : top + crop_h, left : left + crop_w], label[top : top + crop_h, left : left + crop_w]


def _random_scale_crop(image, label, scale_range, image_size, seed):
    """Resize to image_size times a random factor, then cut a window of at most image_size at a random place."""
    scale = tf.random.stateless_uniform([], seed=seed, minval=scale_range[0], maxval=scale_range[1])
    scaled = tf.maximum(tf.cast(tf.round(tf.constant(image_size, tf.float32) * scale), tf.int32), 1)
    image, label = resize_pair(image, label, scaled)
    crop = tf.minimum(scaled, image_size)
    top = tf.random.stateless_uniform([], seed=seed + 1, maxval=scaled[0] - crop[0] + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seed=seed + 2, maxval=scaled[1] - crop[1] + 1, dtype=tf.int32)
    return image[top : top + crop[0], left : left + crop[1]], label[top : top + crop[0], left : left + crop[1]]


def _pad_to(image, label, image_size):
    # Bottom/right padding (as MMSegmentation does): label IGNORE_ID, so the loss never sees made-up pixels.
    pad_h, pad_w = image_size[0] - tf.shape(label)[0], image_size[1] - tf.shape(label)[1]
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
    label = tf.pad(label, [[0, pad_h], [0, pad_w]], constant_values=IGNORE_ID)
    image.set_shape([*image_size, 3])
    label.set_shape(image_size)
    return image, label


def _photometric(image, aug: Augmentation, seed):
    x = image / 255.0
    if aug.brightness:
        x = tf.image.stateless_random_brightness(x, aug.brightness, seed=seed)
    if aug.contrast:
        x = tf.image.stateless_random_contrast(x, 1 - aug.contrast, 1 + aug.contrast, seed=seed + 1)
    if aug.saturation:
        x = tf.image.stateless_random_saturation(x, 1 - aug.saturation, 1 + aug.saturation, seed=seed + 2)
    if aug.hue:
        x = tf.image.stateless_random_hue(x, aug.hue, seed=seed + 3)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def augment_pair(image, label, aug: Augmentation, seed, image_size: tuple[int, int] | None = None):
    """Random crop (or scale and crop) and flip, same for image and label; photometric jitter on the image only.

    Args:
        image: (H, W, 3) float32 in [0, 255]; label: (H, W) uint8; seed: int32 tensor of shape (2,);
        image_size: the training (height, width), needed with `aug.scale_range` (the output then has it).
    """
    if aug.scale_range is not None:
        if image_size is None:
            raise ValueError("Augmentation.scale_range needs the training image_size")
        image, label = _random_scale_crop(image, label, aug.scale_range, image_size, seed + 8)
    elif aug.min_crop_fraction < 1.0:
        image, label = _random_crop(image, label, aug.min_crop_fraction, seed)
    if aug.flip:
        flip = tf.random.stateless_uniform([], seed=seed + 3) < 0.5
        image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
        label = tf.cond(flip, lambda: label[:, ::-1], lambda: label)
    # Jitter before padding: the padding stays 0, and contrast is measured on real pixels only.
    image = _photometric(image, aug, seed + 4)
    if aug.scale_range is not None:
        image, label = _pad_to(image, label, image_size)
    return image, label


def resize_pair(image, label, image_size):
    """Resize to (height, width): image bilinear, label nearest neighbour only (labels stay integers)."""
    image = tf.image.resize(image, image_size, method="bilinear")
    label = tf.image.resize(label[..., None], image_size, method="nearest")[..., 0]
    return image, tf.cast(label, tf.uint8)


def make_dataset(
    image_paths: Sequence,
    label_paths: Sequence,
    read_label: Callable,
    image_size: tuple[int, int],
    batch_size: int,
    augmentation: Augmentation | None = None,
    shuffle: bool = False,
    seed: int = 0,
    class_weights=None,
    epochs: int = 1,
    first_epoch: int = 0,
    cache_decoded: bool = False,
) -> tf.data.Dataset:
    """Batches of (images (B, H, W, 3) float32 in [0, 255], labels (B, H, W) int32, 255 = ignore).

    The batches of epochs `first_epoch` .. `epochs - 1`, one after the other (one pass by default).
    Epoch e's order and augmentation depend only on (seed, e), so a run resumed at epoch e sees exactly
    the data it would have seen without the interruption, and the same seed gives the same batches.

    With `class_weights` ((C,) floats) each batch also carries per-pixel sample weights (B, H, W):
    the weight of the pixel's class, 0 for ignore pixels.

    With `cache_decoded` each decoded (image, label) pair is kept in memory the first time it is read, so
    later epochs skip the PNG decoding; batches are the same as without it. Use `fits_in_memory` to decide.
    """
    if len(image_paths) != len(label_paths) or not image_paths:
        raise ValueError(f"need equal, non-zero numbers of images and labels, got {len(image_paths)} and {len(label_paths)}")
    if not 0 <= first_epoch < epochs:
        raise ValueError(f"need 0 <= first_epoch < epochs, got {first_epoch} and {epochs}")
    images = tf.constant([str(p) for p in image_paths])
    labels = tf.constant([str(p) for p in label_paths])
    decode = _decode_fn(read_label, {} if cache_decoded else None)
    add_weights = None if class_weights is None else _pixel_weights_fn(class_weights)

    def one_epoch(epoch):
        order = _epoch_order(len(image_paths), seed, epoch, shuffle)
        pairs = tf.data.Dataset.from_tensor_slices(order).map(
            lambda i: (*decode(tf.gather(images, i), tf.gather(labels, i)), _sample_seed(seed, epoch, i)),
            num_parallel_calls=AUTOTUNE, deterministic=True)
        pairs = pairs.map(lambda image, label, sample_seed: _prepare(
            image, label, sample_seed, augmentation, image_size, add_weights), num_parallel_calls=AUTOTUNE)
        return pairs.batch(batch_size)

    batches = (epochs - first_epoch) * math.ceil(len(image_paths) / batch_size)
    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    # flat_map hides the length; Keras needs it to know where an epoch (or a validation pass) ends.
    return dataset.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(AUTOTUNE)


def _epoch_order(count: int, seed: int, epoch, shuffle: bool):
    """The sample indices of one epoch: a permutation drawn from (seed, epoch), or 0..count-1."""
    if not shuffle:
        return tf.range(count, dtype=tf.int64)
    keys = tf.random.stateless_uniform([count], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    return tf.cast(tf.argsort(keys), tf.int64)


def _sample_seed(seed: int, epoch, index):
    # Stateless seed of one sample in one epoch (int32, as the stateless image ops want it).
    return tf.cast(tf.stack([tf.constant(seed, tf.int64), epoch * 100_003 + index]) % (2**31 - 8), tf.int32)


def decoded_bytes(image_paths: Sequence) -> int:
    """Memory that the decoded RGB images and their uint8 label maps take, from the PNG headers alone."""
    return sum(4 * height * width for height, width in map(read_png_size, image_paths))


def fits_in_memory(image_paths: Sequence, budget_bytes: int = CACHE_BUDGET_BYTES) -> bool:
    """Whether the decoded set fits within budget_bytes and half of the memory now free (False for non-PNGs)."""
    try:
        needed = decoded_bytes(image_paths)
    except ImageFileError:
        return False  # not a PNG (or unreadable): size unknown, and the pipeline will name the bad file
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else budget_bytes
    return needed <= min(budget_bytes, free // 2)


def _prepare(image, label, sample_seed, augmentation, image_size, add_weights):
    image = tf.cast(image, tf.float32)
    scaled = augmentation is not None and augmentation.scale_range is not None
    if augmentation is not None:
        image, label = augment_pair(image, label, augmentation, sample_seed, image_size)
    if not scaled:  # scale-and-crop already gives the training size
        image, label = resize_pair(image, label, image_size)
    label = tf.cast(label, tf.int32)
    return (image, label) if add_weights is None else add_weights(image, label)


def _pixel_weights_fn(class_weights):
    # A 256-entry table, so the ignore id (and any unused id) looks up weight 0.
    table = np.zeros(256, np.float32)
    table[: len(class_weights)] = class_weights
    table = tf.constant(table)

    def add_weights(image, label):
        return image, label, tf.gather(table, label)

    return add_weights
