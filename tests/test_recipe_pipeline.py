"""Random scale-and-crop augmentation and the in-memory cache of decoded pairs, on tiny synthetic PNGs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from fcn.data import pipeline
from fcn.imageio import read_unchanged, write_png

IGNORE = pipeline.IGNORE_ID
SIZE = (32, 48)  # the training (height, width)
GEOMETRY_ONLY = dict(brightness=0, contrast=0, saturation=0, hue=0)


def _blocks(shape=(48, 72), block=8, classes=5, seed=0):
    """(H, W) uint8 labels made of block x block squares of random classes in [0, classes)."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, classes, (shape[0] // block, shape[1] // block)).astype(np.uint8)
    return np.kron(cells, np.ones((block, block), np.uint8))


def _encoded_image(labels):
    """An image whose red channel is 40 x label: geometry must keep the two in agreement."""
    red = labels.astype(np.float32) * 40
    return np.stack([red, np.zeros_like(red), np.zeros_like(red)], -1)


def _interior(labels, radius=2):
    """Pixels whose (2r+1)^2 neighbourhood lies inside the map and holds one class, not the ignore id."""
    height, width = labels.shape
    inside = np.zeros_like(labels, bool)
    for y in range(radius, height - radius):
        for x in range(radius, width - radius):
            window = labels[y - radius : y + radius + 1, x - radius : x + radius + 1]
            inside[y, x] = labels[y, x] != IGNORE and (window == labels[y, x]).all()
    return inside


def _scale_crop(labels, seed, scale_range=(0.5, 2.0), **colour):
    aug = pipeline.Augmentation(scale_range=scale_range, **(colour or GEOMETRY_ONLY))
    image, out = pipeline.augment_pair(tf.constant(_encoded_image(labels)), tf.constant(labels), aug,
                                       tf.constant([seed, 11]), SIZE)
    return image.numpy(), out.numpy()


def test_scale_crop_keeps_the_label_on_the_image():
    labels = _blocks(block=12)
    for seed in range(12):
        image, out = _scale_crop(labels, seed)
        assert image.shape == (*SIZE, 3) and out.shape == SIZE and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 1, 2, 3, 4, IGNORE}  # nearest neighbour: no blended ids
        # Away from class edges the bilinear image is exactly the constant of the block it came from.
        interior = _interior(out)
        assert interior.sum() > 0.1 * (out != IGNORE).sum()  # the check below has pixels to bite on
        np.testing.assert_allclose(image[..., 0][interior], out[interior] * 40.0, atol=1e-3)
        assert (image[out == IGNORE] == 0).all()


def test_padding_is_ignore_in_the_label_and_zero_in_the_image_even_with_jitter():
    labels = _blocks()
    image, out = _scale_crop(labels, 3, scale_range=(0.5, 0.5), brightness=0.2, contrast=0.3)
    # Half the training size: the real pixels fill the top-left 16x24, the rest is padding.
    assert (out[:16, :24] != IGNORE).all()
    assert (out[16:] == IGNORE).all() and (out[:, 24:] == IGNORE).all()
    assert (image[16:] == 0).all() and (image[:, 24:] == 0).all()


def test_scales_really_vary():
    # Each column of the source has its own id, so the number of ids left in a row tells the scale.
    columns = np.tile(np.arange(SIZE[1], dtype=np.uint8), (SIZE[0], 1))
    ids_seen, padded = set(), set()
    for seed in range(16):
        _, out = _scale_crop(columns, seed)
        row = out[0][out[0] != IGNORE]
        ids_seen.add(len(np.unique(row)))
        padded.add(bool((out == IGNORE).any()))
    assert padded == {True, False}  # some scales below 1 (padded), some above (zoomed in)
    assert len(ids_seen) >= 6 and min(ids_seen) < 36


def test_scale_range_is_checked():
    with pytest.raises(ValueError, match="scale_range"):
        pipeline.Augmentation(scale_range=(0.0, 2.0))
    with pytest.raises(ValueError, match="scale_range"):
        pipeline.Augmentation(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="image_size"):
        pipeline.augment_pair(tf.zeros((8, 8, 3)), tf.zeros((8, 8), tf.uint8),
                              pipeline.Augmentation(scale_range=(0.5, 2.0)), tf.constant([1, 2]))


@pytest.fixture
def pairs(tmp_path):
    """Five (image, label) PNG pairs of 24x36 with block labels, some ignore pixels."""
    images, labels = [], []
    for i in range(5):
        label = _blocks((24, 36), block=6, classes=4, seed=i)
        label[:3, :5] = IGNORE
        image = np.random.default_rng(i).integers(0, 256, (24, 36, 3)).astype(np.uint8)
        images.append(write_png(tmp_path / f"image_{i}.png", image))
        labels.append(write_png(tmp_path / f"label_{i}.png", label))
    return images, labels


def _batches(images, labels, **options):
    settings = dict(augmentation=pipeline.Augmentation(scale_range=(0.5, 2.0)), shuffle=True, seed=7, epochs=3)
    ds = pipeline.make_dataset(images, labels, read_unchanged, SIZE, 2, **{**settings, **options})
    return [tuple(t.numpy() for t in batch) for batch in ds]


def test_scale_crop_in_the_pipeline_is_deterministic_by_seed_and_epoch(pairs):
    first = _batches(*pairs)
    assert len(first) == 9 and first[0][0].shape == (2, *SIZE, 3)
    for (image, label), (again_image, again_label) in zip(first, _batches(*pairs), strict=True):
        np.testing.assert_array_equal(image, again_image)
        np.testing.assert_array_equal(label, again_label)
    resumed = _batches(*pairs, first_epoch=2)
    for (image, label), (expected_image, expected_label) in zip(resumed, first[6:], strict=True):
        np.testing.assert_array_equal(label, expected_label)
        np.testing.assert_array_equal(image, expected_image)
    assert not np.array_equal(first[0][1], first[3][1])  # each epoch has its own draw


def test_cached_batches_equal_uncached_ones(pairs):
    for augmentation in (None, pipeline.Augmentation(), pipeline.Augmentation(scale_range=(0.5, 2.0))):
        plain = _batches(*pairs, augmentation=augmentation)
        cached = _batches(*pairs, augmentation=augmentation, cache_decoded=True)
        for batch, cached_batch in zip(plain, cached, strict=True):
            for tensor, cached_tensor in zip(batch, cached_batch, strict=True):
                np.testing.assert_array_equal(tensor, cached_tensor)


def test_cache_does_not_reread_files_after_the_first_epoch(pairs):
    images, labels = pairs
    iterator = iter(pipeline.make_dataset(images, labels, read_unchanged, SIZE, 5, shuffle=True, seed=1,
                                          epochs=3, cache_decoded=True))
    next(iterator)  # epoch 0: one batch of all five pairs, every file decoded once
    images[2].unlink()
    labels[4].unlink()
    assert len(list(iterator)) == 2  # epochs 1 and 2 come from memory
    # Without the cache the same epochs need the files.
    with pytest.raises(tf.errors.OpError) as raised:
        list(pipeline.make_dataset(images, labels, read_unchanged, SIZE, 5, epochs=3, first_epoch=1))
    assert pipeline.input_error(raised.value) is not None


def test_bad_file_still_surfaces_through_input_error_with_the_cache(pairs):
    images, labels = pairs
    images[3].write_bytes(images[3].read_bytes()[:100])  # the header survives, decoding fails
    with pytest.raises(tf.errors.OpError) as raised:
        list(pipeline.make_dataset(images, labels, read_unchanged, SIZE, 2, cache_decoded=True))
    error = pipeline.input_error(raised.value)
    assert error is not None and str(images[3]) in str(error)


def test_decoded_size_from_headers_and_the_memory_budget(pairs, tmp_path):
    images, _ = pairs
    needed = 5 * 24 * 36 * 4  # RGB + one label byte per pixel
    assert pipeline.decoded_bytes(images) == needed
    assert pipeline.fits_in_memory(images, budget_bytes=needed)
    assert not pipeline.fits_in_memory(images, budget_bytes=needed - 1)
    not_png = tmp_path / "frame.jpg"
    not_png.write_bytes(b"\xff\xd8\xff\xe0 not a png")
    assert not pipeline.fits_in_memory([*images, not_png])
