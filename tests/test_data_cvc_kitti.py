"""CVC "KITTI semantic" reader, on real CamVid frames re-encoded into the CVC layout and colour map.

No real copy of the CVC data exists (see ../shared/data/README.md), so the fixtures here are built from real
CamVid images and annotations: each CamVid index is mapped to its CVC index and painted in the CVC colour.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from conftest import check_training_batches

from fcn.data import camvid, cvc_kitti, get_dataset, synthetic
from fcn.imageio import ImageFileError, read_rgb, read_unchanged, write_png
from fcn.train import fast_config

# Written out from the README, independently of the reader's table.
README_COLOURS = [
    (128, 128, 128), (128, 0, 0), (128, 64, 128), (0, 0, 192), (64, 64, 128), (128, 128, 0),
    (192, 192, 128), (64, 0, 128), (192, 128, 128), (64, 64, 0), (0, 128, 192), (0, 0, 0),
]  # fmt: skip
README_CAMVID_TO_CVC = {0: 0, 1: 1, 2: 6, 3: 2, 4: 3, 5: 5, 6: 8, 7: 4, 8: 7, 9: 9, 10: 10, 11: 11}
_CAMVID_TO_CVC = np.array([README_CAMVID_TO_CVC[i] for i in range(12)])


def _expected_ids(camvid_annotation):
    cvc = _CAMVID_TO_CVC[camvid_annotation]
    return np.where(cvc == 11, 255, cvc).astype(np.uint8)


@pytest.fixture
def cvc_root(camvid_root, tmp_path):
    """3 training and 2 validation frames in the CVC layout; returns (root, {gt path: expected ids})."""
    root, expected = tmp_path / "kitti_semantic_cvc", {}
    frames = {
        "Training_00": camvid.list_samples(camvid_root, "train")[:3],
        "Validation_07": camvid.list_samples(camvid_root, "val")[:2],
    }
    colours = np.array(README_COLOURS, np.uint8)
    for folder, samples in frames.items():
        for index, sample in enumerate(samples):
            annotation = read_unchanged(sample.label)
            cvc = _CAMVID_TO_CVC[annotation]
            write_png(root / folder / "RGB" / f"{index:06d}.png", read_rgb(sample.image))
            gt = write_png(root / folder / "GT" / f"{index:06d}.png", colours[cvc])
            expected[gt] = _expected_ids(annotation)
    return root, expected


def test_reads_back_the_mapped_camvid_labels(cvc_root):
    root, expected = cvc_root
    train, val = cvc_kitti.list_train_val(root)
    assert [s.name for s in train] == ["000000", "000001", "000002"] and [s.name for s in val] == [
        "000000",
        "000001",
    ]
    assert all(s.image.parent == root / "Training_00" / "RGB" for s in train)
    assert all(s.label.parent == root / "Validation_07" / "GT" for s in val)
    for sample in train + val:
        labels = cvc_kitti.read_label(sample.label)
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, expected[sample.label])


def test_unknown_colour_is_an_error_naming_the_file_and_colours(cvc_root):
    root, _ = cvc_root
    gt_path = root / "Training_00" / "GT" / "000001.png"
    gt = read_rgb(gt_path)
    gt[10:12, 20:27] = (1, 2, 3)  # 14 pixels
    gt[100, 100] = (128, 64, 129)  # one off Road: no near match
    write_png(gt_path, gt)
    with pytest.raises(ImageFileError) as error:
        cvc_kitti.read_label(gt_path)
    assert str(error.value) == (
        f"{gt_path}: colours outside the CVC colour map (11 classes and void black): "
        "(1, 2, 3) in 14 px, (128, 64, 129) in 1 px"
    )


def test_decoding_hand_worked():
    gt = np.array([README_COLOURS], np.uint8)  # (1, 12, 3): every class, then void
    assert cvc_kitti.decode_cvc_colours(gt).tolist() == [list(range(11)) + [255]]
    # CamVid's Pavement colour is not CVC's Sidewalk, and white is nothing.
    with pytest.raises(ValueError, match=r"\(60, 40, 222\) in 1 px, \(255, 255, 255\) in 1 px"):
        cvc_kitti.decode_cvc_colours(np.array([[[60, 40, 222], [255, 255, 255]]], np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        cvc_kitti.decode_cvc_colours(gt[..., 0])


def test_colour_table_matches_the_readme_and_is_defined_once():
    assert list(cvc_kitti.COLOURS) == README_COLOURS
    assert cvc_kitti.PALETTE.tolist() == [list(c) for c in README_COLOURS[:11]]
    assert cvc_kitti.PALETTE.dtype == np.uint8 and cvc_kitti.NUM_CLASSES == len(cvc_kitti.CLASS_NAMES) == 11
    assert synthetic.CVC_COLOURS is cvc_kitti.COLOURS and synthetic.CVC_CLASSES is cvc_kitti.CLASS_NAMES
    assert dict(enumerate(synthetic.CAMVID_TO_CVC)) == README_CAMVID_TO_CVC
    assert get_dataset("cvc_kitti").num_classes == 11


def test_missing_ground_truth_names_the_file(cvc_root):
    root, _ = cvc_root
    (root / "Validation_07" / "GT" / "000001.png").unlink()
    with pytest.raises(ImageFileError, match=r"Validation_07/GT/000001\.png: ground truth missing"):
        cvc_kitti.list_samples(root, "val")


def test_ground_truth_of_another_size_names_the_file(cvc_root):
    root, _ = cvc_root
    gt_path = root / "Training_00" / "GT" / "000002.png"
    write_png(gt_path, read_rgb(gt_path)[:, :-2])
    with pytest.raises(ImageFileError, match=r"GT/000002\.png: ground truth is \(360, 478\)"):
        cvc_kitti.list_samples(root, "train")


def test_bad_split_and_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        cvc_kitti.list_samples(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="Training_00/RGB: no PNG images"):
        cvc_kitti.list_samples(tmp_path, "train")


def test_batches_through_the_training_pipeline(cvc_root):
    root, _ = cvc_root
    config = fast_config(
        dataset="cvc_kitti", data_dir=str(root), image_size=(64, 128), max_train_images=2, max_val_images=2
    )
    check_training_batches(config, cvc_kitti.NUM_CLASSES, expected_counts=(2, 2))
