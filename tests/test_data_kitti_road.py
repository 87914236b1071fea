"""KITTI Road reader and the tf.data pipeline, on the real files and on broken copies of them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from fcn.data import kitti_road, pipeline
from fcn.imageio import ImageFileError, read_rgb, write_png


def test_reader_on_full_resolution_samples(kitti_road_root):
    samples = kitti_road.list_samples(kitti_road_root)
    images = sorted((kitti_road_root / "training" / "image_2").glob("*.png"))
    assert [s.image for s in samples] == images
    assert Counter(s.category for s in samples) == Counter(p.name.split("_")[0] for p in images)
    for sample in samples:
        assert sample.label.name == f"{sample.category}_road_{sample.frame_id}.png"
    testing = kitti_road.list_samples(kitti_road_root, "testing")
    assert testing and all(s.label is None for s in testing)


def test_label_mapping_follows_the_devkit_rule(kitti_road_root):
    # umm_road_000003 holds a few blue pixels (road outside the evaluated area): they must be ignored.
    gt = read_rgb(kitti_road_root / "training" / "gt_image_2" / "umm_road_000003.png")
    labels = kitti_road.label_ids_from_gt(gt)
    magenta = np.all(gt == (255, 0, 255), axis=-1)
    red = np.all(gt == (255, 0, 0), axis=-1)
    blue = np.all(gt == (0, 0, 255), axis=-1)
    assert blue.sum() > 0
    assert np.all(labels[magenta] == 1) and np.all(labels[red] == 0)
    assert np.all(labels[~(magenta | red)] == kitti_road.IGNORE_ID)
    assert set(np.unique(labels)) <= {0, 1, 255}


def test_label_mapping_hand_worked():
    gt = np.array([[[255, 0, 255], [255, 0, 0], [0, 0, 0], [0, 0, 255]]], np.uint8)
    assert kitti_road.label_ids_from_gt(gt).tolist() == [[1, 0, 255, 255]]
    with pytest.raises(ValueError, match="RGB"):
        kitti_road.label_ids_from_gt(gt[..., 0])


def test_mixed_image_sizes_in_the_half_resolution_set(kitti_road_half_root):
    samples = kitti_road.list_samples(kitti_road_half_root)
    sizes = {read_rgb(s.image).shape[:2] for s in samples[::7]}
    assert len(sizes) >= 2  # 621x187, 613x185, 620x188 ... all load through one pipeline
    ds = pipeline.make_dataset([s.image for s in samples[::20]], [s.label for s in samples[::20]],
                               kitti_road.read_label, (64, 192), batch_size=4)
    for images, labels in ds:
        assert images.shape[1:] == (64, 192, 3) and labels.shape[1:] == (64, 192)


def test_split_is_deterministic_stratified_and_disjoint(kitti_road_half_root):
    samples = kitti_road.list_samples(kitti_road_half_root)
    train, val = kitti_road.split_train_val(samples, 0.2, seed=0)
    again_train, again_val = kitti_road.split_train_val(samples, 0.2, seed=0)
    assert [s.name for s in val] == [s.name for s in again_val] and train == again_train
    assert not {s.name for s in train} & {s.name for s in val}
    assert len(train) + len(val) == len(samples)
    per_category = Counter(s.category for s in samples)
    for category, count in Counter(s.category for s in val).items():
        assert count == round(0.2 * per_category[category])
    _, other_val = kitti_road.split_train_val(samples, 0.2, seed=1)
    assert {s.name for s in other_val} != {s.name for s in val}


def test_gt_name():
    assert kitti_road.gt_name("umm_000012.png") == "umm_road_000012.png"
    assert kitti_road.gt_name("um_000001.png", "lane") == "um_lane_000001.png"
    with pytest.raises(ValueError, match="not a KITTI Road image name"):
        kitti_road.gt_name("frame.png")


@pytest.fixture
def small_copy(kitti_road_root, tmp_path):
    """A writable copy of three real training frames."""
    root = tmp_path / "data_road"
    for sub in ("image_2", "gt_image_2"):
        (root / "training" / sub).mkdir(parents=True)
    for name in ("um_000000", "umm_000000", "uu_000000"):
        category, frame = name.split("_")
        shutil.copy(kitti_road_root / "training" / "image_2" / f"{name}.png", root / "training" / "image_2")
        gt = f"{category}_road_{frame}.png"
        shutil.copy(kitti_road_root / "training" / "gt_image_2" / gt, root / "training" / "gt_image_2")
    return root


def test_missing_ground_truth_names_the_file(small_copy):
    (small_copy / "training" / "gt_image_2" / "umm_road_000000.png").unlink()
    with pytest.raises(ImageFileError, match=r"umm_road_000000\.png: ground truth missing"):
        kitti_road.list_samples(small_copy)


def test_zero_byte_png_names_the_file(small_copy):
    (small_copy / "training" / "gt_image_2" / "uu_road_000000.png").write_bytes(b"")
    with pytest.raises(ImageFileError, match=r"uu_road_000000\.png: file is empty"):
        kitti_road.list_samples(small_copy)


def test_mask_of_another_size_names_the_file(small_copy):
    gt_path = small_copy / "training" / "gt_image_2" / "um_road_000000.png"
    write_png(gt_path, read_rgb(gt_path)[:-1])
    with pytest.raises(ImageFileError, match=r"um_road_000000\.png: ground truth is \(374, 1242\)"):
        kitti_road.list_samples(small_copy)


def test_corrupt_png_names_the_file_when_decoded(small_copy):
    image_path = small_copy / "training" / "image_2" / "uu_000000.png"
    data = image_path.read_bytes()
    image_path.write_bytes(data[:200])  # header intact (sizes still check), pixel data truncated
    samples = kitti_road.list_samples(small_copy)
    with pytest.raises(ImageFileError, match=r"uu_000000\.png: cannot decode"):
        read_rgb(image_path)
    ds = pipeline.make_dataset([s.image for s in samples], [s.label for s in samples], kitti_road.read_label,
                               (64, 192), batch_size=1)
    with pytest.raises(tf.errors.OpError, match=r"uu_000000\.png: cannot decode"):
        list(ds)


def test_pipeline_checks_sizes_again_at_decode(small_copy, tmp_path):
    # A label of the wrong size that slipped past the header check (e.g. a caller without check_sizes).
    label = tmp_path / "label.png"
    write_png(label, np.zeros((10, 10, 3), np.uint8))
    image = small_copy / "training" / "image_2" / "um_000000.png"
    with pytest.raises(ImageFileError, match=r"label\.png: label is 10x10 but its image .*um_000000\.png"):
        pipeline.load_pair(image, label, kitti_road.read_label)


def test_resize_keeps_labels_exact():
    image = tf.random.uniform((30, 50, 3), 0, 255)
    labels = tf.constant(np.random.default_rng(0).choice([0, 1, 255], size=(30, 50)).astype(np.uint8))
    _, resized = pipeline.resize_pair(image, labels, (17, 23))
    assert set(np.unique(resized.numpy())) <= {0, 1, 255}  # nearest neighbour: no blended values


def test_augmentation_moves_image_and_label_together():
    # An image whose red channel encodes the label: after any crop/flip they must still agree.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(40, 60)).astype(np.uint8)
    image = np.stack([labels * 100.0, np.zeros_like(labels, float), np.zeros_like(labels, float)], -1)
    no_colour = pipeline.Augmentation(brightness=0, contrast=0, saturation=0, hue=0)
    shapes = set()
    for seed in range(8):
        out_image, out_labels = pipeline.augment_pair(tf.constant(image, tf.float32), tf.constant(labels),
                                                      no_colour, tf.constant([seed, 7]))
        np.testing.assert_array_equal(np.round(out_image.numpy()[..., 0] / 100), out_labels.numpy())
        shapes.add(out_labels.shape)
    assert len(shapes) > 1  # the crop really varies


def test_flip_happens_for_some_seeds_and_not_others():
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    flip_only = pipeline.Augmentation(min_crop_fraction=1.0, brightness=0, contrast=0, saturation=0, hue=0)
    outcomes = set()
    for seed in range(10):
        _, out = pipeline.augment_pair(tf.zeros((3, 4, 3)), tf.constant(labels), flip_only, tf.constant([seed, 1]))
        out = out.numpy()
        assert np.array_equal(out, labels) or np.array_equal(out, labels[:, ::-1])
        outcomes.add(np.array_equal(out, labels))
    assert outcomes == {True, False}


def test_photometric_jitter_changes_only_the_image():
    image = tf.fill((8, 8, 3), 120.0)
    labels = tf.ones((8, 8), tf.uint8)
    aug = pipeline.Augmentation(flip=False, min_crop_fraction=1.0)
    out_image, out_labels = pipeline.augment_pair(image, labels, aug, tf.constant([3, 4]))
    assert not np.allclose(out_image.numpy(), 120.0)
    assert float(tf.reduce_min(out_image)) >= 0 and float(tf.reduce_max(out_image)) <= 255
    np.testing.assert_array_equal(out_labels.numpy(), labels.numpy())


def test_pipeline_is_deterministic_by_seed(kitti_road_root):
    samples = kitti_road.list_samples(kitti_road_root)[:4]
    args = ([s.image for s in samples], [s.label for s in samples], kitti_road.read_label, (32, 96), 2,
            pipeline.Augmentation())

    def first_batch(seed):
        return next(iter(pipeline.make_dataset(*args, shuffle=True, seed=seed)))[0].numpy()

    np.testing.assert_array_equal(first_batch(0), first_batch(0))
    assert not np.array_equal(first_batch(0), first_batch(1))
