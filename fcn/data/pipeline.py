"""The tf.data input pipeline shared by every dataset: decode, map labels, augment, resize, batch, prefetch.

A dataset reader supplies paths and one `read_label(path) -> (H, W) uint8 training ids` function; the
pipeline never interprets label values except IGNORE_ID (255), which it carries through untouched.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fcn.imageio import ImageFileError, read_rgb

IGNORE_ID = 255
AUTOTUNE = tf.data.AUTOTUNE


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


def _decode_fn(read_label: Callable):
    def load(image_path, label_path):
        # Never raise inside tf.data's Python callback: an exception there reaches the person as a long
        # graph dump (and aborted the interpreter at exit). The problem travels out as a string instead.
        image_path, label_path = image_path.decode(), label_path.decode()
        try:
            image, label = load_pair(image_path, label_path, read_label)
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


def augment_pair(image, label, aug: Augmentation, seed):
    """Random crop and flip (same for image and label), then photometric jitter on the image only.

    Args:
        image: (H, W, 3) float32 in [0, 255]; label: (H, W) uint8; seed: int32 tensor of shape (2,).
    """
    if aug.min_crop_fraction < 1.0:
        image, label = _random_crop(image, label, aug.min_crop_fraction, seed)
    if aug.flip:
        flip = tf.random.stateless_uniform([], seed=seed + 3) < 0.5
        image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
        label = tf.cond(flip, lambda: label[:, ::-1], lambda: label)
    return _photometric(image, aug, seed + 4), label


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
) -> tf.data.Dataset:
    """Batches of (images (B, H, W, 3) float32 in [0, 255], labels (B, H, W) int32, 255 = ignore).

    The batches of epochs `first_epoch` .. `epochs - 1`, one after the other (one pass by default).
    Epoch e's order and augmentation depend only on (seed, e), so a run resumed at epoch e sees exactly
    the data it would have seen without the interruption, and the same seed gives the same batches.

    With `class_weights` ((C,) floats) each batch also carries per-pixel sample weights (B, H, W):
    the weight of the pixel's class, 0 for ignore pixels.
    """
    if len(image_paths) != len(label_paths) or not image_paths:
        raise ValueError(f"need equal, non-zero numbers of images and labels, got {len(image_paths)} and {len(label_paths)}")
    if not 0 <= first_epoch < epochs:
        raise ValueError(f"need 0 <= first_epoch < epochs, got {first_epoch} and {epochs}")
    images = tf.constant([str(p) for p in image_paths])
    labels = tf.constant([str(p) for p in label_paths])
    decode = _decode_fn(read_label)
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


def _prepare(image, label, sample_seed, augmentation, image_size, add_weights):
    image = tf.cast(image, tf.float32)
    if augmentation is not None:
        image, label = augment_pair(image, label, augmentation, sample_seed)
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
