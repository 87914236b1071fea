"""Cityscapes label table and reader: against the README, cityscapesscripts and the real files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import copy
import shutil

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official_eval
from cityscapesscripts.helpers import labels as official_labels
from conftest import check_training_batches

from fcn.data import cityscapes, cityscapes_labels, get_dataset
from fcn.imageio import ImageFileError, read_unchanged, write_png
from fcn.train import fast_config

README_TRAIN_TO_ID = (
    "0:7 1:8 2:11 3:12 4:13 5:17 6:19 7:20 8:21 9:22 10:23 11:24 12:25 13:26 14:27 15:28 16:31 17:32 18:33"
)
TINY_STEM = "frankfurt_000000_000294"


def test_table_matches_the_readme_train_id_list():
    expected = dict(pair.split(":") for pair in README_TRAIN_TO_ID.split())
    expected = {int(k): int(v) for k, v in expected.items()}
    trained = {label.train_id: label.id for label in cityscapes_labels.LABELS if label.train_id != 255}
    assert trained == expected
    assert [label.id for label in cityscapes_labels.LABELS] == list(range(34))
    assert cityscapes_labels.NUM_CLASSES == len(cityscapes_labels.CLASS_NAMES) == 19
    assert cityscapes_labels.PALETTE.shape == (19, 3) and cityscapes_labels.PALETTE.dtype == np.uint8


def test_table_matches_cityscapesscripts():
    official = {label.id: label for label in official_labels.labels if label.id >= 0}
    assert set(official) == {label.id for label in cityscapes_labels.LABELS}
    for label in cityscapes_labels.LABELS:
        reference = official[label.id]
        assert (label.name, label.train_id, label.category, label.colour) == (
            reference.name,
            reference.trainId,
            reference.category,
            reference.color,
        )
    for train_id, name in enumerate(cityscapes_labels.CLASS_NAMES):
        reference = official_labels.name2label[name]
        assert reference.trainId == train_id and not reference.ignoreInEval
        category = cityscapes_labels.train_ids_to_categories(np.array([train_id], np.uint8))[0]
        assert category == reference.categoryId - 1  # catId 0 is void
        assert cityscapes_labels.CATEGORIES[category] == reference.category


def test_categories_of_each_train_id():
    categories = cityscapes_labels.train_ids_to_categories(np.array(list(range(19)) + [255], np.uint8))
    names = [cityscapes_labels.CATEGORIES[c] for c in categories[:-1]]
    assert (
        names
        == ["flat"] * 2
        + ["construction"] * 3
        + ["object"] * 3
        + ["nature"] * 2
        + ["sky"]
        + ["human"] * 2
        + ["vehicle"] * 6
    )
    assert categories[-1] == 255


def test_mappings_hand_worked():
    ids = np.array([[7, 0, 33, 9], [24, 4, 18, 31]], np.uint8)
    assert cityscapes_labels.label_ids_to_train_ids(ids).tolist() == [[0, 255, 18, 255], [11, 255, 255, 16]]
    train_ids = np.array(list(range(19)) + [255], np.uint8)
    back = cityscapes_labels.train_ids_to_label_ids(train_ids)
    assert back.tolist() == [int(v.split(":")[1]) for v in README_TRAIN_TO_ID.split()] + [0]
    np.testing.assert_array_equal(cityscapes_labels.label_ids_to_train_ids(back), train_ids)
    with pytest.raises(
        ValueError, match=r"label ids outside the Cityscapes label table: 34 in 1 px, 200 in 1 px"
    ):
        cityscapes_labels.label_ids_to_train_ids(np.array([[34, 7, 200]], np.uint8))
    with pytest.raises(ValueError, match=r"train ids outside the Cityscapes label table: 19 in 1 px"):
        cityscapes_labels.train_ids_to_label_ids(np.array([19], np.uint8))
    with pytest.raises(ValueError, match="integers"):
        cityscapes_labels.label_ids_to_train_ids(np.array([7.0]))


def test_train_frames_with_images(cityscapes_root):
    samples = cityscapes.list_samples(cityscapes_root, "train")
    images = sorted((cityscapes_root / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))
    assert [s.image for s in samples] == images
    for sample in samples:
        assert sample.label.name == f"{sample.name}_gtFine_labelIds.png" and sample.label.exists()
        assert sample.label.parent == cityscapes_root / "gtFine" / "train" / sample.city


def test_val_has_labels_but_no_images(cityscapes_root):
    labels = cityscapes.list_label_files(cityscapes_root, "val")
    assert labels == sorted((cityscapes_root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/val: no"):
        cityscapes.list_samples(cityscapes_root, "val")
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/val: no"):
        get_dataset("cityscapes").list_train_val(cityscapes_root, 0.2, 0)


def test_real_label_maps_map_into_train_ids(cityscapes_root):
    paths = [s.label for s in cityscapes.list_samples(cityscapes_root, "train")][::3]
    paths += cityscapes.list_label_files(cityscapes_root, "val")[::5]
    for path in paths:
        ids = read_unchanged(path)
        train_ids = cityscapes.read_label(path)
        assert train_ids.shape == ids.shape == (1024, 2048) and train_ids.dtype == np.uint8
        assert set(np.unique(train_ids).tolist()) <= set(range(19)) | {255}
        np.testing.assert_array_equal(train_ids == 0, ids == 7)  # road
        np.testing.assert_array_equal(
            train_ids == 255, np.isin(ids, [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30])
        )


def test_tiny_label_train_ids_nearly_agree(cityscapes_tiny_root):
    (sample,) = cityscapes.list_samples(cityscapes_tiny_root, "val")
    ours = cityscapes.read_label(sample.label)
    theirs = read_unchanged(sample.label.with_name(f"{TINY_STEM}_gtFine_labelTrainIds.png"))
    agreement = np.mean(ours == theirs)
    assert 0.995 <= agreement < 1.0  # the fixture's labelTrainIds is known to differ on 77 pixels
    categories = cityscapes.read_label(sample.label, categories=True)
    np.testing.assert_array_equal(categories, cityscapes_labels.train_ids_to_categories(ours))
    assert set(np.unique(categories).tolist()) <= set(range(7)) | {255}


def test_result_file_scores_perfectly_with_the_official_script(cityscapes_tiny_root, tmp_path):
    (sample,) = cityscapes.list_samples(cityscapes_tiny_root, "val")
    results = tmp_path / "results"
    written = cityscapes.write_result(
        results / cityscapes.result_name(sample.name), cityscapes.read_label(sample.label)
    )
    assert written.name == f"{TINY_STEM}_labelIds.png" and read_unchanged(written).dtype == np.uint8
    args = copy.copy(official_eval.args)
    args.predictionPath, args.predictionWalk = str(results), None
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, False
    prediction = official_eval.getPrediction(args, str(sample.label))
    assert prediction == str(written)
    scores = official_eval.evaluateImgLists([prediction], [str(sample.label)], args)
    present = [s for s in scores["classScores"].values() if not np.isnan(s)]
    assert len(present) >= 5 and all(s == 1.0 for s in present)


def test_write_result_checks_name_and_shape(tmp_path):
    with pytest.raises(ValueError, match="result names must be"):
        cityscapes.write_result(tmp_path / "prediction.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        cityscapes.write_result(tmp_path / f"{TINY_STEM}.png", np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="not a Cityscapes frame name"):
        cityscapes.result_name("frame_1")


@pytest.fixture
def tiny_copy(cityscapes_tiny_root, tmp_path):
    root = tmp_path / "cityscapes"
    shutil.copytree(cityscapes_tiny_root, root)
    return root, root / "gtFine" / "val" / "frankfurt" / f"{TINY_STEM}_gtFine_labelIds.png"


def test_missing_label_names_the_file(tiny_copy):
    root, label = tiny_copy
    label.unlink()
    with pytest.raises(ImageFileError, match=rf"{TINY_STEM}_gtFine_labelIds\.png: ground truth missing"):
        cityscapes.list_samples(root, "val")


def test_label_of_another_size_names_the_file(tiny_copy):
    root, label = tiny_copy
    write_png(label, read_unchanged(label)[:, :100])
    with pytest.raises(
        ImageFileError, match=rf"{TINY_STEM}_gtFine_labelIds\.png: ground truth is \(128, 100\)"
    ):
        cityscapes.list_samples(root, "val")


def test_unknown_label_id_names_the_file(tiny_copy):
    _, label = tiny_copy
    ids = read_unchanged(label)
    ids[5, 5] = 99
    write_png(label, ids)
    with pytest.raises(
        ImageFileError, match=rf"{TINY_STEM}_gtFine_labelIds\.png: label ids outside .*: 99 in 1 px"
    ):
        cityscapes.read_label(label)


def test_batches_through_the_training_pipeline(cityscapes_root, cityscapes_tiny_root, tmp_path):
    # The shared val split has no images: pair the real train frames with the tiny fixture's val frame.
    root = tmp_path / "cityscapes"
    for folder in ("leftImg8bit", "gtFine"):
        (root / folder).mkdir(parents=True)
        (root / folder / "train").symlink_to(cityscapes_root / folder / "train")
        (root / folder / "val").symlink_to(cityscapes_tiny_root / folder / "val")
    config = fast_config(
        dataset="cityscapes", data_dir=str(root), image_size=(64, 128), max_train_images=2, max_val_images=2
    )
    check_training_batches(config, cityscapes.NUM_CLASSES, expected_counts=(2, 1))
