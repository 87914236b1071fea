"""CamVid (SegNet layout) reader, on the real files and on broken copies of them."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import check_training_batches

from fcn.data import camvid, get_dataset
from fcn.imageio import ImageFileError, read_unchanged, write_png
from fcn.train import fast_config


def _list_file_names(list_file: Path) -> list[str]:
    return [Path(line.split()[0]).name for line in list_file.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("split", ["train", "val"])
def test_reader_follows_the_segnet_list_files(camvid_root, split):
    samples = camvid.list_samples(camvid_root, split)
    listed = _list_file_names(camvid_root / f"{split}.txt")
    assert [s.image.name for s in samples] == listed
    assert sorted(listed) == sorted(p.name for p in (camvid_root / split).glob("*.png"))
    for sample in samples:
        assert sample.image == camvid_root / split / sample.image.name
        assert sample.label == camvid_root / f"{split}annot" / sample.image.name
        assert sample.name == sample.image.stem


def test_official_train_and_val_are_disjoint(camvid_root):
    train, val = camvid.list_train_val(camvid_root)
    assert train and val and not {s.name for s in train} & {s.name for s in val}


def test_void_becomes_ignore_and_classes_stay(camvid_root):
    samples = camvid.list_samples(camvid_root, "val")[::10]
    seen = set()
    for sample in samples:
        raw = read_unchanged(sample.label)
        labels = camvid.read_label(sample.label)
        assert labels.dtype == np.uint8 and labels.shape == raw.shape
        np.testing.assert_array_equal(labels[raw == camvid.VOID], camvid.IGNORE_ID)
        np.testing.assert_array_equal(labels[raw != camvid.VOID], raw[raw != camvid.VOID])
        seen |= set(np.unique(labels).tolist())
    assert seen <= set(range(camvid.NUM_CLASSES)) | {camvid.IGNORE_ID}
    assert camvid.IGNORE_ID in seen and len(seen) > 6


def test_mapping_hand_worked():
    annotation = np.array([[0, 3, 10, 11]], np.uint8)
    assert camvid.label_ids_from_annotation(annotation).tolist() == [[0, 3, 10, 255]]
    with pytest.raises(
        ValueError, match=r"outside the CamVid annotation encoding .*: 12 in 1 px, 255 in 1 px"
    ):
        camvid.label_ids_from_annotation(np.array([[1, 12, 255]], np.uint8))


def test_classes_and_palette_match_segnet():
    assert camvid.NUM_CLASSES == len(camvid.CLASS_NAMES) == len(camvid.PALETTE) == 11
    assert camvid.PALETTE.dtype == np.uint8 and camvid.PALETTE.shape == (11, 3)
    assert camvid.PALETTE[camvid.CLASS_NAMES.index("Pavement")].tolist() == [60, 40, 222]
    assert camvid.PALETTE[camvid.CLASS_NAMES.index("Bicyclist")].tolist() == [0, 128, 192]
    info = get_dataset("camvid")
    assert info.num_classes == 11 and info.read_label is camvid.read_label


@pytest.fixture
def small_copy(camvid_root, tmp_path):
    """A writable copy of three real training frames, with a SegNet list file."""
    root = tmp_path / "camvid"
    names = _list_file_names(camvid_root / "train.txt")[:3]
    for folder in ("train", "trainannot"):
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(camvid_root / folder / name, root / folder / name)
    lines = [f"/SegNet/CamVid/train/{n} /SegNet/CamVid/trainannot/{n}\n" for n in reversed(names)]
    (root / "train.txt").write_text("".join(lines))
    return root


def test_list_file_order_is_kept_and_folder_is_the_fallback(small_copy):
    listed = _list_file_names(small_copy / "train.txt")
    assert [s.image.name for s in camvid.list_samples(small_copy)] == listed
    (small_copy / "train.txt").unlink()
    assert [s.image.name for s in camvid.list_samples(small_copy)] == sorted(listed)


def test_missing_annotation_names_the_file(small_copy):
    name = _list_file_names(small_copy / "train.txt")[1]
    (small_copy / "trainannot" / name).unlink()
    with pytest.raises(ImageFileError, match=rf"trainannot/{name}: annotation missing"):
        camvid.list_samples(small_copy)


def test_listed_image_missing_names_the_file(small_copy):
    name = _list_file_names(small_copy / "train.txt")[0]
    (small_copy / "train" / name).unlink()
    with pytest.raises(ImageFileError, match=rf"train/{name}: image missing"):
        camvid.list_samples(small_copy)


def test_zero_byte_annotation_names_the_file(small_copy):
    name = _list_file_names(small_copy / "train.txt")[2]
    (small_copy / "trainannot" / name).write_bytes(b"")
    with pytest.raises(ImageFileError, match=rf"{name}: file is empty"):
        camvid.list_samples(small_copy)


def test_annotation_of_another_size_names_the_file(small_copy):
    name = _list_file_names(small_copy / "train.txt")[0]
    path = small_copy / "trainannot" / name
    write_png(path, read_unchanged(path)[:-1])
    with pytest.raises(ImageFileError, match=rf"{name}: annotation is \(359, 480\)"):
        camvid.list_samples(small_copy)


def test_out_of_range_value_names_the_file(small_copy):
    name = _list_file_names(small_copy / "train.txt")[0]
    path = small_copy / "trainannot" / name
    annotation = read_unchanged(path)
    annotation[0, :5] = 12
    write_png(path, annotation)
    with pytest.raises(
        ImageFileError, match=rf"{name}: values outside the CamVid annotation encoding .*: 12 in 5 px$"
    ):
        camvid.read_label(path)


def test_batches_through_the_training_pipeline(camvid_root):
    config = fast_config(
        dataset="camvid",
        data_dir=str(camvid_root),
        image_size=(64, 128),
        max_train_images=2,
        max_val_images=2,
    )
    check_training_batches(config, camvid.NUM_CLASSES, expected_counts=(2, 2))
