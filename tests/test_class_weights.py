"""Median-frequency class weights and the per-pixel sample weights the pipeline adds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from fcn.data import class_weights, pipeline
from fcn.imageio import read_unchanged, write_png


@pytest.fixture
def label_files(tmp_path):
    # Image a: 6 pixels of class 0, 2 of class 1, 1 ignored. Image b: 4 of class 0, 4 of class 2.
    a = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 255]], np.uint8)
    b = np.array([[0, 0, 2, 2], [0, 0, 2, 2]], np.uint8)
    return [write_png(tmp_path / "a.png", a), write_png(tmp_path / "b.png", b)]


def test_counts_and_weights_hand_worked(label_files):
    class_pixels, image_pixels = class_weights.class_pixel_counts(label_files, read_unchanged, 4)
    assert class_pixels.tolist() == [10, 2, 4, 0]
    assert image_pixels.tolist() == [16, 8, 8, 0]  # ignore pixels are not part of an image's total
    weights = class_weights.median_frequency_weights(class_pixels, image_pixels)
    # freq = [10/16, 2/8, 4/8] -> median 0.5 -> weights [0.8, 2, 1]; an absent class gets 0
    np.testing.assert_allclose(weights, [0.8, 2.0, 1.0, 0.0], rtol=1e-6)


def test_out_of_range_label_names_the_file(label_files):
    with pytest.raises(ValueError, match=r"b\.png: label 2 is outside \[0, 2\)"):
        class_weights.class_pixel_counts(label_files, read_unchanged, 2)


def test_weights_are_cached(label_files, tmp_path):
    first = class_weights.cached_median_frequency_weights(label_files, read_unchanged, 3, tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("class_weights_3_*.json"))
    assert len(cached) == 1
    write_png(label_files[0], np.zeros((3, 3), np.uint8))  # a cache hit does not reread the labels
    again = class_weights.cached_median_frequency_weights(label_files, read_unchanged, 3, tmp_path / "cache")
    np.testing.assert_array_equal(first, again)


def test_pipeline_adds_per_pixel_weights(tmp_path):
    labels = np.array([[0, 1, 255, 2]] * 2, np.uint8)
    label_path = write_png(tmp_path / "l.png", labels)
    image_path = write_png(tmp_path / "i.png", np.zeros((2, 4, 3), np.uint8))
    ds = pipeline.make_dataset([image_path], [label_path], read_unchanged, (2, 4), 1,
                               class_weights=np.array([0.5, 2.0, 3.0], np.float32))
    images, out_labels, weights = next(iter(ds))
    np.testing.assert_array_equal(out_labels.numpy()[0], labels.astype(np.int32))
    np.testing.assert_allclose(weights.numpy()[0], [[0.5, 2.0, 0.0, 3.0]] * 2)
