"""Synthetic street scenes (fcn/data/synthetic.py): the scenes, and the files in each dataset's real format."""

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn.data import synthetic
from fcn.imageio import read_png_size, read_rgb, read_unchanged

ROAD, VOID = synthetic.CAMVID_CLASSES.index("Road"), synthetic.VOID
KITTI = {"images_per_category": 8, "test_images_per_category": 2, "scale": 0.2, "seed": 3}
CAMVID = {"train": 3, "val": 2, "test": 2, "height": 48, "width": 64, "seed": 1}
CVC = {"train": 3, "val": 2, "height": 60, "width": 200, "seed": 2}
CITYSCAPES = {"train": 3, "val": 2, "height": 64, "width": 128, "seed": 5, "city_val": "synthburg"}
SEMANTICS = {"train": 4, "test": 2, "scale": 0.2, "seed": 6}
GT_MAGENTA, GT_RED, GT_BLACK, GT_BLUE = (255, 0, 255), (255, 0, 0), (0, 0, 0), (0, 0, 255)
HALF_KITTI = (187, 621)


@pytest.fixture(scope="module")
def kitti_root(tmp_path_factory):
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("kitti"), **KITTI)


@pytest.fixture(scope="module")
def camvid_root(tmp_path_factory):
    return synthetic.write_camvid(tmp_path_factory.mktemp("camvid"), **CAMVID)


@pytest.fixture(scope="module")
def cvc_root(tmp_path_factory):
    return synthetic.write_cvc_kitti(tmp_path_factory.mktemp("cvc"), **CVC)


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    return synthetic.write_cityscapes(tmp_path_factory.mktemp("cityscapes"), **CITYSCAPES)


@pytest.fixture(scope="module")
def semantics_root(tmp_path_factory):
    return synthetic.write_kitti_semantics(tmp_path_factory.mktemp("semantics"), **SEMANTICS)


@pytest.fixture(scope="module")
def half_scale_scenes():
    """20 scenes at half KITTI resolution (also shows rendering is fast enough to do this in a test)."""
    return [synthetic.render_scene(synthetic.scene_rng(0, "test", i), *HALF_KITTI) for i in range(20)]


def _files(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _colours(image):
    packed = np.unique(image.reshape(-1, 3).astype(np.int32) @ [65536, 256, 1])
    return {(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255) for v in packed}


def _kitti_training(root):
    """(category, index, road gt, lane gt or None) of every synthetic training frame."""
    for category in synthetic.KITTI_CATEGORIES:
        for index in range(KITTI["images_per_category"]):
            gt_dir = root / "training" / "gt_image_2"
            lane = gt_dir / f"{category}_lane_{index:06d}.png"
            yield (
                category,
                index,
                read_rgb(gt_dir / f"{category}_road_{index:06d}.png"),
                (read_rgb(lane) if category == "um" else None),
            )


# --- KITTI Road -------------------------------------------------------------------------------------------


def test_kitti_layout_has_exactly_the_official_files(kitti_root):
    expected = {"SYNTHETIC.md"}
    for category in ("um", "umm", "uu"):
        for index in range(KITTI["images_per_category"]):
            name = f"{category}_{index:06d}"
            expected |= {
                f"training/image_2/{name}.png",
                f"training/calib/{name}.txt",
                f"training/gt_image_2/{category}_road_{index:06d}.png",
            }
            if category == "um":
                expected.add(f"training/gt_image_2/um_lane_{index:06d}.png")
        for index in range(KITTI["test_images_per_category"]):
            expected |= {
                f"testing/image_2/{category}_{index:06d}.png",
                f"testing/calib/{category}_{index:06d}.txt",
            }
    assert kitti_root.name == "data_road"
    assert _files(kitti_root) == expected


def test_kitti_images_cycle_through_the_real_sizes(kitti_root):
    scaled = {(round(h * KITTI["scale"]), round(w * KITTI["scale"])) for w, h in synthetic.KITTI_ROAD_SIZES}
    sizes = [read_png_size(p) for p in sorted((kitti_root / "training" / "image_2").glob("*.png"))]
    assert set(sizes) == scaled
    assert len(scaled) >= 2
    assert read_png_size(kitti_root / "training" / "image_2" / "um_000005.png") == synthetic.kitti_road_size(
        5, 0.2
    )


def test_kitti_gt_has_its_image_size_and_only_devkit_colours(kitti_root):
    blue_files = 0
    for category, index, road, lane in _kitti_training(kitti_root):
        image_size = read_png_size(kitti_root / "training" / "image_2" / f"{category}_{index:06d}.png")
        for gt in (road, lane) if lane is not None else (road,):
            assert gt.shape == (*image_size, 3)
            colours = _colours(gt)
            assert colours <= {GT_MAGENTA, GT_RED, GT_BLACK, GT_BLUE}
            assert {GT_BLACK, GT_RED, GT_MAGENTA} <= colours
        blue_files += GT_BLUE in _colours(road)
    assert 0 < blue_files < 3 * KITTI["images_per_category"]  # blue occurs, but only now and then


def test_kitti_gt_marks_exactly_the_rendered_road_and_ego_lane(kitti_root):
    for category, index, road, lane in _kitti_training(kitti_root):
        scene = synthetic.render_kitti_road_scene(
            KITTI["seed"], "training", category, index, scale=KITTI["scale"]
        )
        image = read_rgb(kitti_root / "training" / "image_2" / f"{category}_{index:06d}.png")
        np.testing.assert_array_equal(image, scene.image)
        road_label, valid = scene.labels == ROAD, road[..., 0] > 0
        # The devkit reads road = blue > 0 and evaluated = red > 0.
        assert not np.any((road[..., 2] > 0) & ~road_label)
        np.testing.assert_array_equal(road[..., 2][valid] > 0, road_label[valid])
        if lane is not None:
            np.testing.assert_array_equal(lane[..., 0] > 0, valid)
            assert not np.any((lane[..., 2] > 0) & ~(road[..., 2] > 0))  # lane within road
            np.testing.assert_array_equal(lane[..., 2][valid] > 0, scene.ego_lane[valid])
            assert (lane == GT_MAGENTA).all(-1).sum() > 0


def test_kitti_road_gt_encodes_a_tiny_hand_worked_case():
    road = np.array([[True, True], [False, False]])
    valid = np.array([[True, False], [True, False]])
    expected_black = np.array([[GT_MAGENTA, GT_BLACK], [GT_RED, GT_BLACK]], np.uint8)
    expected_blue = np.array([[GT_MAGENTA, GT_BLUE], [GT_RED, GT_BLACK]], np.uint8)
    np.testing.assert_array_equal(synthetic.kitti_road_gt(road, valid), expected_black)
    np.testing.assert_array_equal(synthetic.kitti_road_gt(road, valid, mark_blue=True), expected_blue)


def _read_calib(path):
    matrices = {}
    for line in path.read_text().splitlines():
        key, values = line.split(":")
        matrices[key] = np.array([float(v) for v in values.split()])
    return matrices


def test_kitti_calib_has_the_kitti_format_and_matches_the_scene(kitti_root):
    calib = _read_calib(kitti_root / "training" / "calib" / "um_000001.txt")
    assert list(calib) == [
        "P0",
        "P1",
        "P2",
        "P3",
        "R0_rect",
        "Tr_velo_to_cam",
        "Tr_imu_to_velo",
        "Tr_cam_to_road",
    ]
    assert [v.size for v in calib.values()] == [12, 12, 12, 12, 9, 12, 12, 12]
    scene = synthetic.render_kitti_road_scene(KITTI["seed"], "training", "um", 1, scale=KITTI["scale"])
    height, width = scene.labels.shape
    p2 = calib["P2"].reshape(3, 4)
    np.testing.assert_allclose([p2[0, 0], p2[1, 1]], synthetic.KITTI_FOCAL_LENGTH * KITTI["scale"])
    np.testing.assert_allclose([p2[0, 2], p2[1, 2]], [width / 2, height / 2])
    # A road point far ahead maps (devkit: x = P2 R0_rect inv(Tr_cam_to_road) X) to the vanishing point.
    to_road = np.vstack([calib["Tr_cam_to_road"].reshape(3, 4), [0, 0, 0, 1]])
    camera = np.linalg.inv(to_road) @ [0.0, 0.0, 1e6, 1.0]
    x = p2 @ np.append(calib["R0_rect"].reshape(3, 3) @ camera[:3], 1.0)
    np.testing.assert_allclose(x[:2] / x[2], [scene.vanishing_col, scene.horizon_row], atol=0.1)
    assert to_road[1, 3] == pytest.approx(-synthetic.CAMERA_HEIGHT)


def test_kitti_writer_is_deterministic_and_frames_do_not_depend_on_the_count(tmp_path):
    small = {"test_images_per_category": 1, "scale": 0.1}
    a = synthetic.write_kitti_road(tmp_path / "a", images_per_category=2, seed=5, **small)
    b = synthetic.write_kitti_road(tmp_path / "b", images_per_category=2, seed=5, **small)
    c = synthetic.write_kitti_road(tmp_path / "c", images_per_category=2, seed=6, **small)
    fewer = synthetic.write_kitti_road(tmp_path / "d", images_per_category=1, seed=5, **small)
    assert _files(a) == _files(b) == _files(c)
    for name in sorted(_files(a)):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in sorted(_files(a)):
        if name.endswith(".png") and "image_2" in name:
            assert (a / name).read_bytes() != (c / name).read_bytes(), name
    for name in sorted(_files(fewer) - {"SYNTHETIC.md"}):
        assert (fewer / name).read_bytes() == (a / name).read_bytes(), name


def test_every_root_is_labelled_synthetic(kitti_root, camvid_root, cvc_root, cityscapes_root, semantics_root):
    for root, seed in (
        (kitti_root, KITTI["seed"]),
        (camvid_root, CAMVID["seed"]),
        (cvc_root, CVC["seed"]),
        (cityscapes_root, CITYSCAPES["seed"]),
        (semantics_root, SEMANTICS["seed"]),
    ):
        text = (root / "SYNTHETIC.md").read_text()
        assert "SYNTHETIC" in text and "fcn.data.synthetic" in text
        assert f"seed: {seed}" in text
        assert str(root.parent) not in text  # no paths: the same call writes the same bytes anywhere


# --- CamVid and CVC ---------------------------------------------------------------------------------------


def test_camvid_has_segnet_layout_lists_and_label_indices(camvid_root):
    names = set()
    for split in ("train", "val", "test"):
        images = sorted(p.name for p in (camvid_root / split).glob("*.png"))
        assert len(images) == CAMVID[split]
        assert images == sorted(p.name for p in (camvid_root / f"{split}annot").glob("*.png"))
        assert all(re.fullmatch(r"synth_\d{6}\.png", name) for name in images)
        names |= set(images)
        lines = (camvid_root / f"{split}.txt").read_text().splitlines()
        assert len(lines) == CAMVID[split]
        for line in lines:
            match = re.fullmatch(rf"/SegNet/CamVid/{split}/(\S+) /SegNet/CamVid/{split}annot/(\S+)", line)
            assert match and match.group(1) == match.group(2)
            assert (camvid_root / split / match.group(1)).is_file()
            assert (camvid_root / f"{split}annot" / match.group(2)).is_file()
    assert len(names) == CAMVID["train"] + CAMVID["val"] + CAMVID["test"]  # unique across splits


def test_camvid_annotations_are_the_rendered_labels(camvid_root):
    for index in range(CAMVID["val"]):
        name = f"synth_{100_000 + index:06d}.png"
        annotation = read_unchanged(camvid_root / "valannot" / name)
        assert annotation.dtype == np.uint8 and annotation.shape == (CAMVID["height"], CAMVID["width"])
        assert annotation.max() <= VOID
        scene = synthetic.render_scene(
            synthetic.scene_rng(CAMVID["seed"], "camvid", "val", index), CAMVID["height"], CAMVID["width"]
        )
        np.testing.assert_array_equal(annotation, scene.labels)
        np.testing.assert_array_equal(read_rgb(camvid_root / "val" / name), scene.image)


def test_cvc_layout(cvc_root):
    expected = {"SYNTHETIC.md"}
    for folder, count in (("Training_00", CVC["train"]), ("Validation_07", CVC["val"])):
        expected |= {f"{folder}/{kind}/{index:06d}.png" for kind in ("RGB", "GT") for index in range(count)}
    assert cvc_root.name == "kitti_semantic_cvc"
    assert _files(cvc_root) == expected


def test_cvc_gt_decodes_to_the_camvid_labels_mapped_to_cvc(cvc_root):
    colour_to_index = {colour: index for index, colour in enumerate(synthetic.CVC_COLOURS)}
    for index in range(CVC["train"]):
        gt = read_rgb(cvc_root / "Training_00" / "GT" / f"{index:06d}.png")
        assert _colours(gt) <= set(colour_to_index)
        decoded = np.zeros(gt.shape[:2], np.uint8)
        for colour, cvc_index in colour_to_index.items():
            decoded[(gt == colour).all(-1)] = cvc_index
        scene = synthetic.render_scene(
            synthetic.scene_rng(CVC["seed"], "cvc_kitti", "train", index), CVC["height"], CVC["width"]
        )
        np.testing.assert_array_equal(decoded, np.asarray(synthetic.CAMVID_TO_CVC)[scene.labels])


def test_class_tables_agree_by_name():
    same_class = {"Pavement": "Sidewalk", "Tree": "Vegetation", "SignSymbol": "Sign", "Bicyclist": "Cyclist"}
    assert len(synthetic.CAMVID_CLASSES) == len(synthetic.CVC_CLASSES) == synthetic.VOID == 11
    assert len(synthetic.CVC_COLOURS) == len(set(synthetic.CVC_COLOURS)) == 12
    assert sorted(synthetic.CAMVID_TO_CVC) == list(range(12)) and synthetic.CAMVID_TO_CVC[VOID] == VOID
    for camvid_index, name in enumerate(synthetic.CAMVID_CLASSES):
        assert synthetic.CVC_CLASSES[synthetic.CAMVID_TO_CVC[camvid_index]] == same_class.get(name, name)
    assert synthetic.CVC_COLOURS[synthetic.CVC_CLASSES.index("Sidewalk")] == (0, 0, 192)


# --- scenes -----------------------------------------------------------------------------------------------


def test_scene_arrays_and_camera(half_scale_scenes):
    for scene in half_scale_scenes:
        assert scene.image.shape == (*HALF_KITTI, 3) and scene.image.dtype == np.uint8
        assert scene.labels.shape == HALF_KITTI and scene.labels.dtype == np.uint8
        assert scene.ego_lane.dtype == bool and scene.ego_lane.any()
        assert not np.any(scene.ego_lane & (scene.labels != ROAD))
        assert 0.35 * HALF_KITTI[0] <= scene.horizon_row <= 0.5 * HALF_KITTI[0]
        assert (scene.labels[: int(scene.horizon_row)] != ROAD).all()  # no road above the horizon


def test_scenes_show_every_class_somewhere(half_scale_scenes):
    seen = set()
    for scene in half_scale_scenes:
        seen |= set(np.unique(scene.labels).tolist())
    assert seen == set(range(12))


def test_road_and_not_road_differ_but_are_not_flat(half_scale_scenes):
    distances = []
    for scene in half_scale_scenes:
        road = scene.labels == ROAD
        pixels_road, pixels_other = scene.image[road].astype(float), scene.image[~road].astype(float)
        assert pixels_road.std(axis=0).min() > 3 and pixels_other.std(axis=0).min() > 3
        distances.append(np.linalg.norm(pixels_road.mean(0) - pixels_other.mean(0)))
    assert min(distances) > 5 and np.mean(distances) > 20


def test_scene_is_a_function_of_its_generator():
    first = synthetic.render_scene(synthetic.scene_rng(7, "x", 0), 64, 160)
    again = synthetic.render_scene(synthetic.scene_rng(7, "x", 0), 64, 160)
    other = synthetic.render_scene(synthetic.scene_rng(7, "x", 1), 64, 160)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert not np.array_equal(first.image, other.image)


def _road_stats(style, count=8):
    """Mean road fraction of the image, and mean fraction of road pixels on a thin bright ridge (lane lines)."""
    widths, ridges = [], []
    for index in range(count):
        scene = synthetic.render_scene(synthetic.scene_rng(0, style, index), *HALF_KITTI, road_style=style)
        grey, road = scene.image.astype(float).mean(axis=2), scene.labels == ROAD
        # A ridge is brighter than the road 4 px to its left and right: lines, not shadow edges.
        centre, left, right = (grey[:, 4:-4], grey[:, :-8], grey[:, 8:])
        on_road = road[:, 4:-4] & road[:, :-8] & road[:, 8:]
        ridges.append(((centre - np.maximum(left, right) > 30) & on_road).sum() / on_road.sum())
        widths.append(road.mean())
    return np.mean(widths), np.mean(ridges)


def test_road_styles_differ_like_the_kitti_categories():
    marked, multi, unmarked = (_road_stats(style) for style in ("marked", "multi", "unmarked"))
    assert multi[0] > marked[0] > unmarked[0]  # umm: more lanes; uu: narrower lanes
    assert unmarked[1] < 0.2 * min(marked[1], multi[1])  # uu: no white lines


# --- arguments --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda out: synthetic.write_kitti_road(out, scale=0),
        lambda out: synthetic.write_kitti_road(out, scale=0.05),  # images under MIN_SIZE rows
        lambda out: synthetic.write_kitti_road(out, images_per_category=0),
        lambda out: synthetic.write_kitti_road(out, test_images_per_category=-1),
        lambda out: synthetic.write_kitti_road(out, seed=-1),
        lambda out: synthetic.write_kitti_road(out, seed=1.5),
        lambda out: synthetic.write_camvid(out, height=16),
        lambda out: synthetic.write_camvid(out, train=True),
        lambda out: synthetic.write_cvc_kitti(out, val=2.0),
        lambda out: synthetic.generate("pascal_voc", out),
        lambda out: synthetic.generate("cityscapes", out, height=8),
        lambda out: synthetic.write_cityscapes(out, width=100.0),
        lambda out: synthetic.write_cityscapes(out, train=0),
        lambda out: synthetic.write_cityscapes(out, val=-1),
        lambda out: synthetic.write_cityscapes(out, seed=-1),
        lambda out: synthetic.write_cityscapes(out, city_train="synth_town"),  # "_" splits the stem
        lambda out: synthetic.write_cityscapes(out, city_val=""),
        lambda out: synthetic.write_cityscapes(out, city_val="../up"),
        lambda out: synthetic.write_cityscapes(out, city_train="same", city_val="same"),
        lambda out: synthetic.write_kitti_semantics(out, scale=0),
        lambda out: synthetic.write_kitti_semantics(out, scale=0.08),  # images under MIN_SIZE rows
        lambda out: synthetic.write_kitti_semantics(out, train=0),
        lambda out: synthetic.write_kitti_semantics(out, test=-1),
        lambda out: synthetic.write_kitti_semantics(out, seed=1.0),
        lambda out: synthetic.write_kitti_semantics(out, train=1_000_001),
        lambda out: synthetic.render_scene(np.random.default_rng(0), 64, 64, road_style="gravel"),
        lambda out: synthetic.render_scene(np.random.default_rng(0), 64, 64, focal_length=0),
        lambda out: synthetic.render_kitti_road_scene(0, "training", "ux", 0),
    ],
)
def test_invalid_arguments_raise_value_error(tmp_path, call):
    with pytest.raises(ValueError):
        call(tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written before the check


def test_generate_dispatches_to_the_writers(tmp_path):
    root = synthetic.generate("cvc_kitti", tmp_path, train=1, val=0, height=40, width=96, seed=4)
    assert root == tmp_path / "kitti_semantic_cvc"
    assert _files(root) == {"SYNTHETIC.md", "Training_00/RGB/000000.png", "Training_00/GT/000000.png"}
    assert (root / "Validation_07" / "RGB").is_dir()  # empty split, but the layout is complete


def test_generate_dispatches_to_the_cityscapes_and_kitti_semantics_writers(tmp_path):
    cityscapes = synthetic.generate("cityscapes", tmp_path, train=1, val=0, height=32, width=64)
    semantics = synthetic.generate("kitti_semantics", tmp_path, train=1, test=0, scale=0.1)
    assert (cityscapes, semantics) == (tmp_path / "cityscapes", tmp_path / "data_semantics")
    assert len(_files(cityscapes)) == 1 + 4 and len(_files(semantics)) == 1 + 4
    assert (cityscapes / "gtFine" / "val" / "synthville").is_dir()  # empty split, complete layout
    assert (semantics / "testing" / "image_2").is_dir()


# --- Cityscapes and KITTI semantics -----------------------------------------------------------------------

# Label ids, names and colours as in ../shared/data/README.md (cityscapesscripts' labels.py): an independent
# reference for the generator's own table.
CITYSCAPES_REFERENCE = {
    0: ("unlabeled", (0, 0, 0)),
    7: ("road", (128, 64, 128)),
    8: ("sidewalk", (244, 35, 232)),
    11: ("building", (70, 70, 70)),
    13: ("fence", (190, 153, 153)),
    17: ("pole", (153, 153, 153)),
    20: ("traffic sign", (220, 220, 0)),
    21: ("vegetation", (107, 142, 35)),
    23: ("sky", (70, 130, 180)),
    24: ("person", (220, 20, 60)),
    25: ("rider", (255, 0, 0)),
    26: ("car", (0, 0, 142)),
}
CAMVID_AS_CITYSCAPES = {
    "Sky": "sky",
    "Building": "building",
    "Pole": "pole",
    "Road": "road",
    "Pavement": "sidewalk",
    "Tree": "vegetation",
    "SignSymbol": "traffic sign",
    "Fence": "fence",
    "Car": "car",
    "Pedestrian": "person",
    "Bicyclist": "rider",
}
THINGS = (24, 25, 26)  # person, rider, car: the drawn classes that have instances in Cityscapes
SEMANTICS_SHAPE = (round(375 * SEMANTICS["scale"]), round(1242 * SEMANTICS["scale"]))
CITIES = {"train": "synthtown", "val": CITYSCAPES["city_val"]}


def _cityscapes_frames(root):
    """(split, index, gtFine path without its _gtFine_<kind>.png suffix, image path) of every frame."""
    for split, city in CITIES.items():
        for index in range(CITYSCAPES[split]):
            stem = f"{city}_{index:06d}_000019"
            image = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            yield split, index, str(root / "gtFine" / split / city / stem), image


def _assert_colours_encode_ids(colours, label_ids):
    assert colours.shape == (*label_ids.shape, 3)
    for label_id in np.unique(label_ids):
        assert (colours[label_ids == label_id] == CITYSCAPES_REFERENCE[label_id][1]).all(), label_id


def test_cityscapes_table_agrees_with_the_official_one_by_name():
    mapping = synthetic.CAMVID_TO_CITYSCAPES_ID
    assert len(mapping) == len(set(mapping)) == 12 and mapping[VOID] == 0
    for camvid_index, name in enumerate(synthetic.CAMVID_CLASSES):
        assert CITYSCAPES_REFERENCE[mapping[camvid_index]][0] == CAMVID_AS_CITYSCAPES[name]
    assert synthetic.CITYSCAPES_COLOURS == {key: colour for key, (_, colour) in CITYSCAPES_REFERENCE.items()}


def test_instance_encodings_of_a_tiny_hand_worked_case():
    # Two cars, numbered in reading order of their first pixel; one person of three 8-connected pixels.
    label_ids = np.array([[7, 7, 7, 26], [26, 7, 7, 26], [24, 7, 24, 7], [7, 24, 7, 0]], np.uint8)
    cityscapes = [[7, 7, 7, 26000], [26001, 7, 7, 26000], [24000, 7, 24000, 7], [7, 24000, 7, 0]]
    car, person, road = 26 * 256, 24 * 256, 7 * 256
    kitti = [
        [road, road, road, car + 1],
        [car + 2, road, road, car + 1],
        [person + 1, road, person + 1, road],
        [road, person + 1, road, 0],
    ]
    for encode, expected in (
        (synthetic.cityscapes_instance_ids, cityscapes),
        (synthetic.kitti_instance_ids, kitti),
    ):
        encoded = encode(label_ids)
        assert encoded.dtype == np.uint16
        np.testing.assert_array_equal(encoded, expected)


def test_instances_past_the_encodable_number_become_crowd():
    cars = np.zeros((1, 600), np.uint8)
    cars[0, ::2] = 26  # 300 one-pixel cars
    np.testing.assert_array_equal(synthetic.cityscapes_instance_ids(cars)[0, ::2], 26000 + np.arange(300))
    kitti = synthetic.kitti_instance_ids(cars)[0, ::2]
    np.testing.assert_array_equal(kitti // 256, 26)
    np.testing.assert_array_equal(kitti % 256, np.r_[1:256, np.zeros(45, int)])


def test_cityscapes_layout_has_exactly_the_official_files(cityscapes_root):
    expected = {"SYNTHETIC.md"}
    for _, _, gt, image in _cityscapes_frames(cityscapes_root):
        expected.add(str(image.relative_to(cityscapes_root)))
        for kind in ("labelIds", "instanceIds", "color"):
            expected.add(str(Path(f"{gt}_gtFine_{kind}.png").relative_to(cityscapes_root)))
    assert cityscapes_root.name == "cityscapes"
    assert _files(cityscapes_root) == expected


def test_cityscapes_names_are_official_and_stems_match(cityscapes_root):
    for split, city in CITIES.items():
        images = sorted((cityscapes_root / "leftImg8bit" / split).glob("*/*.png"))
        assert len(images) == CITYSCAPES[split]
        for image in images:
            assert image.parent.name == city
            assert re.fullmatch(rf"{city}_\d{{6}}_\d{{6}}_leftImg8bit\.png", image.name)
        stems = {image.name.removesuffix("_leftImg8bit.png") for image in images}
        for kind in ("labelIds", "instanceIds", "color"):
            gt = (cityscapes_root / "gtFine" / split).glob(f"{city}/*_gtFine_{kind}.png")
            assert {path.name.removesuffix(f"_gtFine_{kind}.png") for path in gt} == stems


def test_cityscapes_label_ids_are_the_rendered_scene_mapped(cityscapes_root):
    mapping, shape = (
        np.asarray(synthetic.CAMVID_TO_CITYSCAPES_ID),
        (CITYSCAPES["height"], CITYSCAPES["width"]),
    )
    for split, index, gt, image in _cityscapes_frames(cityscapes_root):
        label_ids = read_unchanged(f"{gt}_gtFine_labelIds.png")
        assert label_ids.dtype == np.uint8 and label_ids.shape == shape
        assert set(np.unique(label_ids).tolist()) <= set(mapping.tolist())
        scene = synthetic.render_cityscapes_scene(
            CITYSCAPES["seed"], split, index, height=shape[0], width=shape[1]
        )
        np.testing.assert_array_equal(label_ids, mapping[scene.labels])
        np.testing.assert_array_equal(read_rgb(image), scene.image)


def test_cityscapes_instance_ids_agree_with_label_ids(cityscapes_root):
    instances = 0
    for _, _, gt, _ in _cityscapes_frames(cityscapes_root):
        label_ids = read_unchanged(f"{gt}_gtFine_labelIds.png")
        instance_ids = read_unchanged(f"{gt}_gtFine_instanceIds.png")
        assert instance_ids.dtype == np.uint16 and instance_ids.shape == label_ids.shape
        stuff = instance_ids < 1000
        np.testing.assert_array_equal(instance_ids[stuff], label_ids[stuff])
        np.testing.assert_array_equal(instance_ids[~stuff] // 1000, label_ids[~stuff])
        np.testing.assert_array_equal(~stuff, np.isin(label_ids, THINGS))  # every object has an instance
        for label_id in THINGS:
            numbers = np.unique(instance_ids[label_ids == label_id] % 1000)
            np.testing.assert_array_equal(numbers, np.arange(numbers.size))  # 0, 1, ... per class
            instances += numbers.size
    assert instances >= 3


def test_cityscapes_colour_maps_are_opaque_rgba_of_the_label_ids(cityscapes_root):
    for _, _, gt, _ in _cityscapes_frames(cityscapes_root):
        rgba = cv2.imread(f"{gt}_gtFine_color.png", cv2.IMREAD_UNCHANGED)  # as cityscapesscripts writes it
        assert rgba.dtype == np.uint8 and rgba.shape[2] == 4 and (rgba[..., 3] == 255).all()
        _assert_colours_encode_ids(
            read_rgb(f"{gt}_gtFine_color.png"), read_unchanged(f"{gt}_gtFine_labelIds.png")
        )


def test_kitti_semantics_layout_has_exactly_the_official_files(semantics_root):
    expected = {"SYNTHETIC.md"}
    for index in range(SEMANTICS["train"]):
        expected |= {
            f"training/{kind}/{index:06d}_10.png"
            for kind in ("image_2", "semantic", "semantic_rgb", "instance")
        }
    expected |= {f"testing/image_2/{index:06d}_10.png" for index in range(SEMANTICS["test"])}
    assert semantics_root.name == "data_semantics"
    assert _files(semantics_root) == expected


def test_kitti_semantics_files_encode_the_rendered_scene(semantics_root):
    mapping, training = np.asarray(synthetic.CAMVID_TO_CITYSCAPES_ID), semantics_root / "training"
    instances = 0
    for index in range(SEMANTICS["train"]):
        name = f"{index:06d}_10.png"
        semantic, instance = (
            read_unchanged(training / "semantic" / name),
            read_unchanged(training / "instance" / name),
        )
        assert semantic.dtype == np.uint8 and semantic.shape == SEMANTICS_SHAPE
        assert instance.dtype == np.uint16 and instance.shape == SEMANTICS_SHAPE
        scene = synthetic.render_kitti_semantics_scene(
            SEMANTICS["seed"], "training", index, scale=SEMANTICS["scale"]
        )
        np.testing.assert_array_equal(semantic, mapping[scene.labels])
        np.testing.assert_array_equal(read_rgb(training / "image_2" / name), scene.image)
        np.testing.assert_array_equal(instance // 256, semantic)  # KITTI's encoding, not Cityscapes'
        np.testing.assert_array_equal(instance % 256 > 0, np.isin(semantic, THINGS))
        _assert_colours_encode_ids(read_rgb(training / "semantic_rgb" / name), semantic)
        instances += sum(np.unique(instance[semantic == label_id]).size for label_id in THINGS)
    assert instances >= 3
    for index in range(SEMANTICS["test"]):
        scene = synthetic.render_kitti_semantics_scene(
            SEMANTICS["seed"], "testing", index, scale=SEMANTICS["scale"]
        )
        np.testing.assert_array_equal(
            read_rgb(semantics_root / "testing" / "image_2" / f"{index:06d}_10.png"), scene.image
        )


@pytest.mark.parametrize(
    "writer, small",
    [
        (synthetic.write_cityscapes, {"val": 1, "height": 32, "width": 64}),
        (synthetic.write_kitti_semantics, {"test": 1, "scale": 0.1}),
    ],
)
def test_cityscapes_and_semantics_writers_are_deterministic(tmp_path, writer, small):
    a, b = (writer(tmp_path / name, train=2, seed=5, **small) for name in ("a", "b"))
    other, fewer = (
        writer(tmp_path / "c", train=2, seed=6, **small),
        writer(tmp_path / "d", train=1, seed=5, **small),
    )
    assert _files(a) == _files(b) == _files(other)
    for name in sorted(_files(a)):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        if "leftImg8bit" in name or "image_2" in name:
            assert (a / name).read_bytes() != (other / name).read_bytes(), name
    for name in sorted(_files(fewer) - {"SYNTHETIC.md"}):
        assert (fewer / name).read_bytes() == (a / name).read_bytes(), name
