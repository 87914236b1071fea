"""KITTI Road in bird's-eye view: the devkit's own BEV arrays and scores, an independent projection, bad calibs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_metrics_kitti_road import TOLERANCE, assert_scores_match

from fcn import bev, imageio, metrics

BEV_CASES = ("case_blur", "case_shift")


def frames(kitti_road_root) -> list[str]:
    return sorted(path.stem for path in (kitti_road_root / "training" / "image_2").glob("*.png"))


def frame_lookup(kitti_road_root, frame: str) -> bev.BevLookup:
    training = kitti_road_root / "training"
    return bev.bev_lookup(training / "calib" / f"{frame}.txt", imageio.read_png_size(training / "image_2" / f"{frame}.png"))


@pytest.fixture(scope="module")
def lookups(kitti_road_root) -> dict[str, bev.BevLookup]:
    return {frame: frame_lookup(kitti_road_root, frame) for frame in frames(kitti_road_root)}


def lookup_of(lookups, file_name: str) -> bev.BevLookup:
    return lookups[bev.calib_path("", file_name).stem]


# --- the transform: the devkit's arrays, element for element -----------------------------------------------


def test_lookup_table_matches_devkit(lookups, kitti_road_bev_oracles):
    assert len(lookups) == 12
    for frame, lookup in lookups.items():
        row = imageio.read_unchanged(kitti_road_bev_oracles / "lut_bev" / f"{frame}_row.png")
        col = imageio.read_unchanged(kitti_road_bev_oracles / "lut_bev" / f"{frame}_col.png")
        assert row.dtype == np.uint16 and row.shape == bev.BEV_SHAPE
        np.testing.assert_array_equal(np.where(lookup.valid, lookup.rows + 1, 0), row, err_msg=frame)
        np.testing.assert_array_equal(np.where(lookup.valid, lookup.cols + 1, 0), col, err_msg=frame)


def test_valid_map_matches_devkit(lookups, kitti_road_bev_oracles):
    checks = json.loads((kitti_road_bev_oracles / "checks.json").read_text())["frames"]
    for frame, lookup in lookups.items():
        valid = imageio.read_unchanged(kitti_road_bev_oracles / "valid_bev" / f"{frame}.png")
        np.testing.assert_array_equal(np.where(lookup.valid, 255, 0).astype(np.uint8), valid, err_msg=frame)
        assert int(lookup.valid.sum()) == checks[frame]["cells_with_source_pixel"]


def test_all_white_image_transforms_to_the_valid_map(lookups, kitti_road_bev_oracles):
    # The devkit's valid_bev is the transform of an all-255 image; to_bev must give it, zeros elsewhere.
    frame = "umm_000003"
    white = np.full((375, 1242), 255, np.uint8)
    expected = imageio.read_unchanged(kitti_road_bev_oracles / "valid_bev" / f"{frame}.png")
    np.testing.assert_array_equal(bev.to_bev(white, lookups[frame]), expected)


def test_gt_bev_matches_devkit(lookups, kitti_road_root, kitti_road_bev_oracles):
    names = sorted(path.name for path in (kitti_road_bev_oracles / "gt_bev").glob("*.png"))
    assert len(names) == 16
    for name in names:
        gt_bev = bev.to_bev(imageio.read_rgb(kitti_road_root / "training" / "gt_image_2" / name), lookup_of(lookups, name))
        expected = imageio.read_rgb(kitti_road_bev_oracles / "gt_bev" / name)
        assert gt_bev.dtype == np.uint8 and gt_bev.shape == (*bev.BEV_SHAPE, 3)
        np.testing.assert_array_equal(gt_bev, expected, err_msg=name)


@pytest.mark.parametrize("case", BEV_CASES)
def test_results_bev_match_devkit(case, lookups, kitti_road_oracles, kitti_road_bev_oracles):
    result_dir = kitti_road_bev_oracles / case / "results_bev"
    for path in sorted(result_dir.glob("*.png")):
        confidence = imageio.read_unchanged(kitti_road_oracles / case / path.name)
        np.testing.assert_array_equal(
            bev.to_bev(confidence, lookup_of(lookups, path.name)), imageio.read_unchanged(path), err_msg=path.name
        )


def test_projection_matches_an_independent_one(kitti_road_root):
    # The full 3D chain with Y = 0 written out (not the 3x3 shortcut), float32 centres, 1-based truncation.
    calib_file = kitti_road_root / "training" / "calib" / "uu_000001.txt"
    calib = bev.read_calib(calib_file)
    rectify, road = np.eye(4), np.eye(4)
    rectify[:3, :3], road[:3] = calib["R0_rect"], calib["Tr_cam_to_road"]
    lookup = bev.bev_lookup(calib_file, (375, 1242))
    rng = np.random.default_rng(0)
    for row, col in rng.integers(0, [800, 400], size=(200, 2)):
        x = float(np.float32(-10 + 0.025 + 0.05 * col))
        z = float(np.float32(46 - 0.025 - 0.05 * row))
        u, v, w = calib["P2"] @ rectify @ np.linalg.solve(road, [x, 0.0, z, 1.0])
        inside = 1 <= v / w <= 375 and 1 <= u / w <= 1242
        expected = (int(np.floor(v / w)) - 1, int(np.floor(u / w)) - 1) if inside else (-1, -1)
        assert (lookup.rows[row, col], lookup.cols[row, col]) == expected


def test_cell_centres_are_float32_on_the_benchmark_grid():
    x, z = bev.cell_centres()
    assert x.dtype == z.dtype == np.float32 and x.shape == z.shape == (800, 400)
    assert x[0, 0] == np.float32(-9.975) and x[0, -1] == np.float32(9.975)
    assert z[0, 0] == np.float32(45.975) and z[-1, 0] == np.float32(6.025)


def test_to_bev_keeps_dtype_and_channels(lookups):
    lookup = lookups["um_000000"]
    rgb = np.zeros((375, 1242, 3), np.uint8)
    rgb[..., 1] = 7
    out = bev.to_bev(rgb, lookup)
    assert out.shape == (800, 400, 3) and out.dtype == np.uint8
    assert (out[lookup.valid][:, 1] == 7).all() and (out[~lookup.valid] == 0).all()
    with pytest.raises(ValueError, match="smaller than the image"):
        bev.to_bev(rgb[:100], lookup)


# --- the metric in BEV ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BEV_CASES)
def test_bev_scores_of_stored_maps_match_devkit(case, kitti_road_bev_oracles):
    expected = json.loads((kitti_road_bev_oracles / case / "expected_bev.json").read_text())
    for category_expected in expected["categories"].values():
        pos_total, neg_total = np.zeros(256, np.int64), np.zeros(256, np.int64)
        for name in category_expected["files"]:
            road, valid = metrics.road_gt_masks(imageio.read_rgb(kitti_road_bev_oracles / "gt_bev" / name))
            valid_map = imageio.read_unchanged(kitti_road_bev_oracles / "valid_bev" / bev.calib_path("", name).with_suffix(".png").name) > 0
            confidence = imageio.read_unchanged(kitti_road_bev_oracles / case / "results_bev" / name)
            pos, neg = metrics.confidence_histograms(confidence, road, valid & valid_map)
            pos_total, neg_total = pos_total + pos, neg_total + neg
        scores = metrics.road_scores(pos_total, neg_total)
        assert_scores_match(scores, category_expected)
        assert metrics.road_percent_strings(scores) == category_expected["printed_percent"]


def test_cells_without_source_pixel_are_never_counted(lookups):
    # An all-road gt (valid everywhere in the image) still counts only the cells the camera sees.
    lookup = lookups["uu_000003"]
    gt = np.zeros((375, 1242, 3), np.uint8)
    gt[...] = (255, 0, 255)
    gt[:, :600] = (255, 0, 0)  # left half not road
    confidence = np.full((375, 1242), 200, np.uint8)
    pos, neg = metrics.bev_histograms(gt, confidence, lookup)
    assert pos.sum() + neg.sum() == lookup.valid.sum() and pos[200] == pos.sum() and neg[200] == neg.sum()
    assert pos.sum() == (lookup.valid & (lookup.cols >= 600)).sum()


@pytest.fixture(scope="module", params=BEV_CASES)
def bev_end_to_end(request, kitti_road_root, kitti_road_oracles, kitti_road_bev_oracles):
    """(expected_bev.json, scores of the perspective maps through our transform and metric)."""
    expected = json.loads((kitti_road_bev_oracles / request.param / "expected_bev.json").read_text())
    training = kitti_road_root / "training"
    scores = metrics.evaluate_kitti_road_bev(training / "gt_image_2", kitti_road_oracles / request.param,
                                             training / "calib")
    return expected, scores


def test_end_to_end_bev_scores_match_devkit(bev_end_to_end):
    expected, scores = bev_end_to_end
    assert list(scores) == list(expected["categories"])
    for category, category_expected in expected["categories"].items():
        assert_scores_match(scores[category], category_expected)
        assert metrics.road_percent_strings(scores[category]) == category_expected["printed_percent"]
    table = metrics.format_kitti_road_table(scores, "bird's-eye view")
    assert table.splitlines()[0] == "KITTI Road, bird's-eye view (percent)"
    um_road = next(line for line in table.splitlines() if line.startswith("um_road "))
    assert um_road.split()[1:] == list(expected["categories"]["um_road"]["printed_percent"].values())


def test_bev_and_perspective_numbers_differ(bev_end_to_end, kitti_road_oracles):
    # docs/evaluation.md's point: BEV weights the road by metric area, so its numbers are not the perspective ones.
    expected, scores = bev_end_to_end
    perspective = json.loads((kitti_road_oracles / expected["case"] / "expected.json").read_text())
    assert abs(scores["um_road"]["MaxF"] - perspective["categories"]["um_road"]["MaxF"]) > 10 * TOLERANCE


# --- calib files ---------------------------------------------------------------------------------------------


def test_calib_path_drops_the_type():
    assert bev.calib_path("c", "um_road_000004.png") == Path("c/um_000004.txt")
    assert bev.calib_path("c", "um_lane_000004.png") == Path("c/um_000004.txt")
    assert bev.calib_path("c", "uu_000017.png") == Path("c/uu_000017.txt")
    with pytest.raises(ValueError, match="not a KITTI Road file name"):
        bev.calib_path("c", "frame_1.png")


def broken_calib(tmp_path, kitti_road_root, edit) -> Path:
    text = (kitti_road_root / "training" / "calib" / "um_000000.txt").read_text()
    path = tmp_path / "um_000000.txt"
    path.write_text(edit(text))
    return path


def replace_line(key: str, values: str):
    def edit(text):
        return "".join(f"{key}: {values}\n" if line.startswith(key + ":") else line + "\n"
                       for line in text.splitlines())
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("Tr_cam_to_road", "Tr_cam_to_rood"), r"calib file has no Tr_cam_to_road"),
    (replace_line("P2", "7.2e+02 0 6.0e+02 4.4e+01 0 7.2e+02 x 0 0 0 1 0"), r"P2 is not a list of numbers"),
    (replace_line("R0_rect", "1 0 0 0 1 0 0 0"), r"R0_rect needs 9 finite numbers, got 8"),
    (replace_line("R0_rect", "1 0 0 0 1 0 0 0 nan"), r"R0_rect needs 9 finite numbers, got 9"),
])
def test_malformed_calib_is_named(tmp_path, kitti_road_root, edit, message):
    path = broken_calib(tmp_path, kitti_road_root, edit)
    with pytest.raises(ValueError, match=rf"^{str(path)}: {message}"):
        bev.bev_lookup(path, (375, 1242))


# The road plane 100 m below the camera: even its far edge (46 m) projects below the image.
ROAD_FAR_BELOW = "1 0 0 0 0 1 0 -100 0 0 1 0"
# Turned round: the grid lies behind the camera.
ROAD_BEHIND = "-1 0 0 0 0 1 0 -1.6 0 0 -1 0"


@pytest.mark.parametrize("tr_cam_to_road, message", [
    (ROAD_FAR_BELOW, "no BEV cell .* projects into the 1242x375"),
    (ROAD_BEHIND, "lies behind the camera"),
])
def test_road_plane_out_of_view_is_named(tmp_path, kitti_road_root, tr_cam_to_road, message):
    path = broken_calib(tmp_path, kitti_road_root, replace_line("Tr_cam_to_road", tr_cam_to_road))
    with pytest.raises(ValueError, match=rf"^{str(path)}: the road plane is out of view: .*{message}"):
        bev.bev_lookup(path, (375, 1242))


def test_missing_calib_files_are_listed(tmp_path):
    (tmp_path / "um_000000.txt").write_text("")
    with pytest.raises(FileNotFoundError) as error:
        bev.check_calib_files(["um_road_000000.png", "um_lane_000001.png", "uu_road_000002.png"], tmp_path)
    assert str(error.value) == (f"{tmp_path / 'um_000001.txt'}: calib file not found (2 of 3 calib files missing in "
                                f"{tmp_path}: um_000001.txt, uu_000002.txt)")
    with pytest.raises(FileNotFoundError, match="calib folder not found"):
        bev.check_calib_files(["um_road_000000.png"], tmp_path / "nowhere")


# --- the command line, as a person runs it ------------------------------------------------------------------


def run_fcn(*args) -> subprocess.CompletedProcess:
    fcn_command = Path(sys.executable).parent / "fcn"
    return subprocess.run([str(fcn_command), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def bev_copy(kitti_road_root, kitti_road_oracles, tmp_path):
    """(gt dir, results dir, calib dir): copies of the real gt and calib and of the case_blur maps, to break."""
    training = kitti_road_root / "training"
    folders = [tmp_path / "gt_image_2", tmp_path / "results", tmp_path / "calib"]
    for source, target in zip([training / "gt_image_2", kitti_road_oracles / "case_blur", training / "calib"], folders, strict=True):
        shutil.copytree(source, target)
    return folders


@pytest.mark.slow
def test_cli_prints_bev_beside_perspective(kitti_road_root, kitti_road_oracles, kitti_road_bev_oracles):
    training = kitti_road_root / "training"
    args = ["evaluate", "kitti-road", "--gt-dir", training / "gt_image_2", "--results-dir",
            kitti_road_oracles / "case_blur", "--bev", "--calib-dir", training / "calib"]
    expected = json.loads((kitti_road_bev_oracles / "case_blur" / "expected_bev.json").read_text())["categories"]
    table = run_fcn(*args)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "KITTI Road, perspective view (percent)" in lines and "KITTI Road, bird's-eye view (percent)" in lines
    bev_rows = lines[lines.index("KITTI Road, bird's-eye view (percent)"):]
    for category, category_expected in expected.items():
        row = next(line for line in bev_rows if line.startswith(category + " "))
        assert row.split()[1:] == [category_expected["printed_percent"][key] for key in metrics.KITTI_ROAD_PRINTED]
    as_json = run_fcn(*args, "--json")
    assert as_json.returncode == 0, as_json.stderr
    scores = json.loads(as_json.stdout)
    assert list(scores) == ["perspective", "bev"]
    for category, category_expected in expected.items():
        for key in ("MaxF", "AvgPrec", "PRE_wp", "REC_wp", "FPR_wp", "FNR_wp", "BestThresh"):
            assert scores["bev"][category][key] == pytest.approx(category_expected[key], abs=TOLERANCE)


@pytest.mark.slow
def test_cli_bev_needs_calib_dir(kitti_road_root, kitti_road_oracles):
    finished = run_fcn("evaluate", "kitti-road", "--gt-dir", kitti_road_root / "training" / "gt_image_2",
                       "--results-dir", kitti_road_oracles / "case_blur", "--bev")
    assert finished.returncode == 2 and "--bev needs --calib-dir" in finished.stderr


@pytest.mark.slow
def test_cli_refuses_missing_calib(bev_copy):
    gt_dir, results_dir, calib_dir = bev_copy
    (calib_dir / "umm_000003.txt").unlink()
    finished = run_fcn("evaluate", "kitti-road", "--gt-dir", gt_dir, "--results-dir", results_dir,
                       "--bev", "--calib-dir", calib_dir)
    assert finished.returncode == 1 and finished.stdout == ""
    assert finished.stderr.splitlines() == [
        f"error: {calib_dir / 'umm_000003.txt'}: calib file not found (1 of 12 calib files missing in {calib_dir}: "
        "umm_000003.txt)"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    (replace_line("P2", "1 2 3"), "P2 needs 12 finite numbers, got 3"),
    (replace_line("Tr_cam_to_road", ROAD_FAR_BELOW), "the road plane is out of view"),
])
def test_cli_refuses_bad_calib(bev_copy, edit, message):
    gt_dir, results_dir, calib_dir = bev_copy
    path = calib_dir / "uu_000004.txt"
    path.write_text(edit(path.read_text()))
    finished = run_fcn("evaluate", "kitti-road", "--gt-dir", gt_dir, "--results-dir", results_dir, "--json",
                       "--bev", "--calib-dir", calib_dir)
    assert finished.returncode == 1 and finished.stdout == ""
    [line] = finished.stderr.splitlines()
    assert line.startswith(f"error: {path}: {message}")
