"""KITTI semantics reader, on the real half- and full-resolution files and on broken copies of them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil

import numpy as np
import pytest
from conftest import check_training_batches

from fcn.data import cityscapes_labels, get_dataset, kitti_semantics
from fcn.imageio import ImageFileError, read_rgb, read_unchanged, write_png
from fcn.train import fast_config


@pytest.fixture(params=["half", "full"])
def root(request, kitti_semantics_root, kitti_semantics_full_root):
    return kitti_semantics_root if request.param == "half" else kitti_semantics_full_root


def test_reader_lists_every_frame_with_its_semantic_map(root):
    samples = kitti_semantics.list_samples(root)
    images = sorted((root / "training" / "image_2").glob("*.png"))
    assert [s.image for s in samples] == images
    for sample in samples:
        assert sample.label == root / "training" / "semantic" / sample.image.name
        assert sample.name == sample.image.stem


def test_labels_agree_with_the_instance_maps(root):
    samples = kitti_semantics.list_samples(root)
    raw_ids = set()
    for sample in samples:
        semantic = read_unchanged(sample.label)
        instance = read_unchanged(root / "training" / "instance" / sample.image.name)
        assert semantic.dtype == np.uint8 and instance.dtype == np.uint16
        labels = kitti_semantics.read_label(sample.label)
        np.testing.assert_array_equal(labels, cityscapes_labels.label_ids_to_train_ids(instance // 256))
        assert set(np.unique(labels).tolist()) <= set(range(19)) | {255}
        raw_ids |= set(np.unique(semantic).tolist())
    assert not raw_ids & {1, 2, 3}  # ego vehicle, rectification border, out of roi: never in KITTI
    assert (
        raw_ids <= {0} | set(range(4, 34)) and {7, 11, 21, 26} <= raw_ids
    )  # road, building, vegetation, car


def test_table_colours_match_semantic_rgb(kitti_semantics_full_root):
    colours = np.array([label.colour for label in cityscapes_labels.LABELS], np.uint8)
    for sample in kitti_semantics.list_samples(kitti_semantics_full_root):
        ids = read_unchanged(sample.label)
        rgb = read_rgb(kitti_semantics_full_root / "training" / "semantic_rgb" / sample.image.name)
        np.testing.assert_array_equal(rgb, colours[ids])


def test_split_is_deterministic_disjoint_and_seeded(kitti_semantics_root):
    samples = kitti_semantics.list_samples(kitti_semantics_root)
    train, val = kitti_semantics.split_train_val(samples, 0.2, seed=0)
    assert kitti_semantics.split_train_val(samples, 0.2, seed=0) == (train, val)
    assert len(val) == round(0.2 * len(samples)) and len(train) + len(val) == len(samples)
    assert not {s.name for s in train} & {s.name for s in val}
    assert [s.name for s in val] == sorted(s.name for s in val)
    assert {s.name for s in kitti_semantics.split_train_val(samples, 0.2, seed=1)[1]} != {s.name for s in val}
    info = get_dataset("kitti_semantics")
    assert info.list_train_val(kitti_semantics_root, 0.2, 0) == (train, val)
    with pytest.raises(ValueError, match="val_fraction"):
        kitti_semantics.split_train_val(samples, 1.0)


@pytest.fixture
def small_copy(kitti_semantics_full_root, tmp_path):
    """A writable copy of two full-resolution frames (image_2 and semantic), plus a testing folder."""
    root = tmp_path / "data_semantics"
    for sub in ("image_2", "semantic"):
        (root / "training" / sub).mkdir(parents=True)
        for name in ("000000_10.png", "000001_10.png"):
            shutil.copy(kitti_semantics_full_root / "training" / sub / name, root / "training" / sub)
    (root / "testing" / "image_2").mkdir(parents=True)
    shutil.copy(root / "training" / "image_2" / "000000_10.png", root / "testing" / "image_2")
    return root


def test_testing_split_has_no_labels(small_copy):
    testing = kitti_semantics.list_samples(small_copy, "testing")
    assert [s.name for s in testing] == ["000000_10"] and testing[0].label is None


def test_missing_label_names_the_file(small_copy):
    (small_copy / "training" / "semantic" / "000001_10.png").unlink()
    with pytest.raises(ImageFileError, match=r"semantic/000001_10\.png: ground truth missing"):
        kitti_semantics.list_samples(small_copy)


def test_label_of_another_size_names_the_file(small_copy):
    path = small_copy / "training" / "semantic" / "000000_10.png"
    write_png(path, read_unchanged(path)[1:])
    with pytest.raises(ImageFileError, match=r"000000_10\.png: ground truth is \(374, 1242\)"):
        kitti_semantics.list_samples(small_copy)


def test_unknown_label_id_names_the_file(small_copy):
    path = small_copy / "training" / "semantic" / "000000_10.png"
    ids = read_unchanged(path)
    ids[0, 0] = 40
    write_png(path, ids)
    with pytest.raises(
        ImageFileError, match=r"000000_10\.png: label ids outside the Cityscapes label table: 40 in 1 px"
    ):
        kitti_semantics.read_label(path)


def test_batches_through_the_training_pipeline(kitti_semantics_root):
    config = fast_config(
        dataset="kitti_semantics",
        data_dir=str(kitti_semantics_root),
        image_size=(64, 128),
        max_train_images=2,
        max_val_images=2,
    )
    check_training_batches(config, kitti_semantics.NUM_CLASSES, expected_counts=(2, 2))
