"""Every label reader refuses values or colours outside its dataset's encoding, naming the file and them.

Small label files are written here with known foreign pixels, so the expected message parts (values and pixel
counts) come from what was painted, not from the code under test. The real files must all still pass.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from fcn.data import camvid, cityscapes, cvc_kitti, kitti_road, kitti_semantics, label_check, pipeline
from fcn.imageio import ImageFileError, write_png

# The encodings, written out from ../shared/data/README.md, independently of the readers' tables.
KITTI_ROAD_GT = {"black": (0, 0, 0), "red": (255, 0, 0), "magenta": (255, 0, 255), "blue": (0, 0, 255)}
CVC_ROAD, CVC_VOID = (128, 64, 128), (0, 0, 0)
CAMVID_PAVEMENT = (60, 40, 222)  # a CamVid colour that is not in the CVC map


def paint(canvas: np.ndarray, foreign: dict) -> np.ndarray:
    """Write each foreign value (or colour) into as many pixels of row 0, 1, ... as asked."""
    canvas = canvas.copy()
    for row, (value, count) in enumerate(foreign.items()):
        canvas[row, :count] = value
    return canvas


def reader_error(read_label, path) -> str:
    with pytest.raises(ImageFileError) as error:
        read_label(path)
    return str(error.value)


# --- the shared check ----------------------------------------------------------------------------------------


def test_check_known_lists_the_most_frequent_first_with_counts():
    values = np.array([[5, 7, 7, 9], [1, 9, 9, 2]])
    known = np.isin(values, [1, 2])
    with pytest.raises(ValueError) as error:
        label_check.check_known(values, known, "values outside 1..2")
    assert str(error.value) == "values outside 1..2: 9 in 3 px, 7 in 2 px, 5 in 1 px"


def test_check_known_shortens_long_lists_and_counts_all_pixels():
    values = np.array([[10, 11, 12, 13, 14, 14, 0]])
    with pytest.raises(ValueError) as error:
        label_check.check_known(values, values == 0, "ids")
    assert str(error.value) == "ids: 14 in 2 px, 10 in 1 px, 11 in 1 px and 2 more (6 px in all)"


def test_check_known_spells_colours_and_passes_known_arrays():
    colours = np.array([[[1, 2, 3], [0, 0, 0]]], np.uint8)
    with pytest.raises(ValueError, match=r"^colours: \(1, 2, 3\) in 1 px$"):
        label_check.check_known(colours, np.array([[False, True]]), "colours")
    label_check.check_known(colours, np.ones((1, 2), bool), "colours")  # no error


def test_naming_file_prefixes_the_path_once(tmp_path):
    with pytest.raises(ImageFileError, match=rf"^{tmp_path / 'a.png'}: bad$"):
        with label_check.naming_file(tmp_path / "a.png"):
            raise ValueError("bad")
    with pytest.raises(ImageFileError, match=r"^b\.png: already named$"):
        with label_check.naming_file(tmp_path / "a.png"):
            raise ImageFileError("b.png: already named")


# --- KITTI Road ----------------------------------------------------------------------------------------------


def kitti_road_gt() -> np.ndarray:
    """(4, 8, 3): one row of each of the four gt colours."""
    return np.repeat(np.array(list(KITTI_ROAD_GT.values()), np.uint8)[:, None], 8, axis=1)


def test_kitti_road_reads_its_four_colours(tmp_path):
    path = write_png(tmp_path / "um_road_000000.png", kitti_road_gt())
    expected = np.repeat(
        np.array([255, 0, 1, 255], np.uint8)[:, None], 8, axis=1
    )  # black, red, magenta, blue
    np.testing.assert_array_equal(kitti_road.read_label(path), expected)
    np.testing.assert_array_equal(kitti_road.read_gt(path), kitti_road_gt())


@pytest.mark.parametrize("read", [kitti_road.read_label, kitti_road.read_gt], ids=["read_label", "read_gt"])
def test_kitti_road_foreign_colours_name_the_file(tmp_path, read):
    # Green (a lane-marking colour of other tools) and a grey in-between colour (a bilinear resize).
    gt = paint(kitti_road_gt(), {(0, 255, 0): 5, (128, 0, 128): 2})
    path = write_png(tmp_path / "uu_road_000001.png", gt)
    message = reader_error(read, path)
    assert message == (
        f"{path}: colours outside the KITTI Road gt encoding (black, red, magenta, blue): "
        "(0, 255, 0) in 5 px, (128, 0, 128) in 2 px"
    )


def test_kitti_road_foreign_colour_in_the_array_mapping():
    gt = paint(kitti_road_gt(), {(255, 0, 254): 1})
    with pytest.raises(ValueError, match=r"\(255, 0, 254\) in 1 px"):
        kitti_road.label_ids_from_gt(gt)


def test_kitti_road_training_pipeline_stops_on_a_foreign_colour(tmp_path):
    image = write_png(tmp_path / "image_2" / "um_000000.png", np.zeros((4, 8, 3), np.uint8))
    label = write_png(
        tmp_path / "gt_image_2" / "um_road_000000.png", paint(kitti_road_gt(), {(0, 255, 0): 3})
    )
    ds = pipeline.make_dataset([image], [label], kitti_road.read_label, (4, 8), batch_size=1)
    with pytest.raises(
        tf.errors.OpError, match=r"um_road_000000\.png: colours outside .*\(0, 255, 0\) in 3 px"
    ):
        list(ds)


@pytest.mark.slow
@pytest.mark.parametrize("root_fixture", ["kitti_road_root", "kitti_road_half_root"])
def test_every_real_kitti_road_gt_file_passes(request, root_fixture):
    gt_paths = sorted((request.getfixturevalue(root_fixture) / "training" / "gt_image_2").glob("*.png"))
    assert gt_paths
    for path in gt_paths:
        assert set(np.unique(kitti_road.read_label(path)).tolist()) <= {0, 1, 255}


# --- CamVid ---------------------------------------------------------------------------------------------------


def test_camvid_foreign_values_name_the_file(tmp_path):
    annotation = paint(np.tile(np.arange(12, dtype=np.uint8), (3, 1)), {12: 4, 255: 1})
    path = write_png(tmp_path / "0001TP_006690.png", annotation)
    assert reader_error(camvid.read_label, path) == (
        f"{path}: values outside the CamVid annotation encoding (0..10 classes, 11 void): 12 in 4 px, 255 in 1 px"
    )


def test_every_real_camvid_annotation_passes(camvid_root):
    paths = sorted(camvid_root.glob("*annot/*.png"))
    assert paths
    for path in paths:
        assert set(np.unique(camvid.read_label(path)).tolist()) <= set(range(11)) | {255}


# --- CVC KITTI semantic ---------------------------------------------------------------------------------------


def test_cvc_foreign_colours_name_the_file(tmp_path):
    gt = paint(np.full((3, 6, 3), CVC_ROAD, np.uint8), {(1, 2, 3): 2, CAMVID_PAVEMENT: 1})
    gt[2] = CVC_VOID
    path = write_png(tmp_path / "Training_00" / "GT" / "000000.png", gt)
    assert reader_error(cvc_kitti.read_label, path) == (
        f"{path}: colours outside the CVC colour map (11 classes and void black): "
        "(1, 2, 3) in 2 px, (60, 40, 222) in 1 px"
    )


# --- Cityscapes label ids (Cityscapes and KITTI semantics) -------------------------------------------------


def test_kitti_semantics_foreign_ids_name_the_file(tmp_path):
    # 34..255 are not Cityscapes label ids (0..33).
    path = write_png(tmp_path / "000000_10.png", paint(np.full((3, 5), 7, np.uint8), {40: 2, 34: 1}))
    assert reader_error(kitti_semantics.read_label, path) == (
        f"{path}: label ids outside the Cityscapes label table: 40 in 2 px, 34 in 1 px"
    )


def test_cityscapes_foreign_ids_name_the_file(tmp_path):
    path = write_png(
        tmp_path / "x_000000_000019_gtFine_labelIds.png", paint(np.zeros((2, 4), np.uint8), {99: 3})
    )
    assert reader_error(cityscapes.read_label, path) == (
        f"{path}: label ids outside the Cityscapes label table: 99 in 3 px"
    )


def test_cityscapes_16_bit_instance_map_read_as_ids_names_the_values(tmp_path):
    # An *_instanceIds.png (car 26 instance 1 = 26001) put where labelIds belong.
    instances = paint(np.full((2, 6), 7, np.uint16), {26001: 4, 26002: 2})
    path = write_png(tmp_path / "x_000000_000019_gtFine_labelIds.png", instances)
    assert reader_error(cityscapes.read_label, path) == (
        f"{path}: label ids outside the Cityscapes label table: 26001 in 4 px, 26002 in 2 px"
    )


@pytest.mark.parametrize(
    "reader, pattern",
    [
        (cityscapes.read_label, "cityscapes*/gtFine/*/*/*_labelIds.png"),
        (kitti_semantics.read_label, "kitti_semantics*/training/semantic/*.png"),
    ],
    ids=["cityscapes", "kitti_semantics"],
)
def test_every_real_label_id_file_passes(shared_data, reader, pattern):
    paths = sorted(shared_data.glob(pattern))
    assert paths
    for path in paths:
        assert set(np.unique(reader(path)).tolist()) <= set(range(19)) | {255}
