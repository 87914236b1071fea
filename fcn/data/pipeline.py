"""The tf.data input pipeline shared by every dataset: decode, map labels, augment, resize, batch, prefetch.

A dataset reader supplies paths and one `read_label(path) -> (H, W) uint8 training ids` function; the
pipeline never interprets label values except IGNORE_ID (255), which it carries through untouched.
"""

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


def _decode_fn(read_label: Callable):
    def decode(image_path, label_path):
        def load(image_bytes_path, label_bytes_path):
            return load_pair(image_bytes_path.decode(), label_bytes_path.decode(), read_label)

        image, label = tf.numpy_function(load, [image_path, label_path], [tf.uint8, tf.uint8], stateful=False)
        image.set_shape([None, None, 3])
        label.set_shape([None, None])
        return image, label

    return decode


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
) -> tf.data.Dataset:
    """Batches of (images (B, H, W, 3) float32 in [0, 255], labels (B, H, W) int32, 255 = ignore).

    With `class_weights` ((C,) floats) each batch also carries per-pixel sample weights (B, H, W):
    the weight of the pixel's class, 0 for ignore pixels.

    Augmentation and shuffling are seeded: the same seed gives the same batches. With shuffle=True the
    order (and the augmentation draws) change every epoch.
    """
    if len(image_paths) != len(label_paths) or not image_paths:
        raise ValueError(f"need equal, non-zero numbers of images and labels, got {len(image_paths)} and {len(label_paths)}")
    paths = tf.data.Dataset.from_tensor_slices(([str(p) for p in image_paths], [str(p) for p in label_paths]))
    if shuffle:
        paths = paths.shuffle(len(image_paths), seed=seed, reshuffle_each_iteration=True)
    pairs = paths.map(_decode_fn(read_label), num_parallel_calls=AUTOTUNE)
    pairs = pairs.map(lambda image, label: (tf.cast(image, tf.float32), label))
    if augmentation is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=shuffle).batch(2)
        pairs = tf.data.Dataset.zip((pairs, seeds)).map(
            lambda pair, s: augment_pair(*pair, augmentation, tf.cast(s % (2**31 - 8), tf.int32)),
            num_parallel_calls=AUTOTUNE,
        )
    pairs = pairs.map(lambda image, label: resize_pair(image, label, image_size), num_parallel_calls=AUTOTUNE)
    pairs = pairs.map(lambda image, label: (image, tf.cast(label, tf.int32)))
    if class_weights is not None:
        pairs = pairs.map(_pixel_weights_fn(class_weights), num_parallel_calls=AUTOTUNE)
    return pairs.batch(batch_size).prefetch(AUTOTUNE)


def _pixel_weights_fn(class_weights):
    # A 256-entry table, so the ignore id (and any unused id) looks up weight 0.
    table = np.zeros(256, np.float32)
    table[: len(class_weights)] = class_weights
    table = tf.constant(table)

    def add_weights(image, label):
        return image, label, tf.gather(table, label)

    return add_weights
