"""KITTI Road metric: the official devkit's numbers, an independent reference, and hand-worked tiny cases."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fcn import imageio, metrics

ORACLE_CASES = ("case_blur", "case_shift", "case_random")
FRACTIONS = ("MaxF", "AvgPrec", "PRE_wp", "REC_wp", "FPR_wp", "FNR_wp", "BestThresh")
TOLERANCE = 1e-6  # what the oracle README asks of a reimplementation

# gt colours (RGB) of KITTI Road gt_image_2, one letter each for tiny hand-drawn layouts:
# M road, R not road, K black (don't care), B blue (road outside the evaluation area).
GT_COLOURS = {"M": (255, 0, 255), "R": (255, 0, 0), "K": (0, 0, 0), "B": (0, 0, 255)}


def gt_image(rows: list[str]) -> np.ndarray:
    """(H, W, 3) uint8 RGB gt from rows of letters: M road, R not road, K don't care, B blue."""
    return np.array([[GT_COLOURS[letter] for letter in row] for row in rows], dtype=np.uint8)


def write_kitti_road_files(root, gt_images: dict, results: dict):
    """Write gt and result PNGs (by file name) under root; returns (gt_dir, results_dir)."""
    gt_dir, results_dir = root / "gt_image_2", root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    for name, image in gt_images.items():
        imageio.write_png(gt_dir / name, image)
    for name, confidence in results.items():
        imageio.write_png(results_dir / name, confidence)
    return gt_dir, results_dir


def reference_scores(pos_hist, neg_hist) -> dict:
    """Float64 from the oracle README's definition, predicted road iff v >= k, without the devkit's epsilons."""
    total_pos, total_neg = int(pos_hist.sum()), int(neg_hist.sum())
    fn = np.concatenate(([0], np.cumsum(pos_hist)[:-1]))  # road with v < k
    fp = np.cumsum(neg_hist[::-1])[::-1]  # not road with v >= k
    tp = total_pos - fn
    found = tp > 0
    recall, precision = tp[found] / total_pos, tp[found] / (tp[found] + fp[found])
    f_measure = 2 * precision * recall / (precision + recall)
    k = int(np.argmax(f_measure))
    return {
        "MaxF": f_measure[k],
        "AvgPrec": np.mean([precision[recall >= level].max() for level in np.arange(0, 1.1, 0.1)]),
        "PRE_wp": precision[k],
        "REC_wp": recall[k],
        "FPR_wp": fp[k] / total_neg,
        "FNR_wp": fn[k] / total_pos,
        "BestThresh": k / 255,
        "BestThresh_k": k,
        "counts": {
            "totalPosNum": total_pos,
            "totalNegNum": total_neg,
            "TP_wp": int(tp[k]),
            "FP_wp": int(fp[k]),
            "FN_wp": int(fn[k]),
            "TN_wp": total_neg - int(fp[k]),
        },
    }


def assert_scores_match(ours: dict, expected: dict) -> None:
    for key in FRACTIONS:
        assert ours[key] == pytest.approx(expected[key], abs=TOLERANCE), key
    assert ours["BestThresh_k"] == expected["BestThresh_k"]
    assert ours["counts"] == expected["counts"]


@pytest.fixture(scope="module", params=ORACLE_CASES)
def oracle(request, kitti_road_root, kitti_road_oracles):
    """(expected.json, our scores, gt dir, case dir) for one oracle case, evaluated once per module."""
    case_dir = kitti_road_oracles / request.param
    expected = json.loads((case_dir / "expected.json").read_text())
    gt_dir = kitti_road_root / "training" / "gt_image_2"
    return expected, metrics.evaluate_kitti_road(gt_dir, case_dir), gt_dir, case_dir


# --- the official devkit's numbers --------------------------------------------------------------------------


def test_oracle_scores_match_devkit(oracle):
    expected, scores, _, _ = oracle
    assert list(scores) == list(expected["categories"])
    for category, category_expected in expected["categories"].items():
        assert_scores_match(scores[category], category_expected)


def test_oracle_printed_percent_matches_devkit(oracle):
    expected, scores, _, _ = oracle
    for category, category_expected in expected["categories"].items():
        assert metrics.road_percent_strings(scores[category]) == category_expected["printed_percent"]


def test_oracle_table_shows_devkit_strings(oracle):
    expected, scores, _, _ = oracle
    table = metrics.format_kitti_road_table(scores)
    for category, category_expected in expected["categories"].items():
        row = next(line for line in table.splitlines() if line.startswith(category + " "))
        assert row.split()[1:] == [
            category_expected["printed_percent"][key] for key in metrics.KITTI_ROAD_PRINTED
        ]


def test_oracle_matches_plain_integer_thresholds(oracle):
    # The devkit compares float32 v/255 with float64 k/255; this shows that still means "v >= k".
    expected, _, gt_dir, case_dir = oracle
    for category_expected in expected["categories"].values():
        pos_total, neg_total = np.zeros(256, np.int64), np.zeros(256, np.int64)
        for name in category_expected["files"]:
            road, valid = metrics.road_gt_masks(imageio.read_rgb(gt_dir / name))
            pos_hist, neg_hist = metrics.confidence_histograms(
                imageio.read_unchanged(case_dir / name), road, valid
            )
            pos_total, neg_total = pos_total + pos_hist, neg_total + neg_hist
        assert_scores_match(reference_scores(pos_total, neg_total), category_expected)


def test_devkit_float32_confidence_never_falls_below_its_threshold():
    # float32(v/255) rounds up for every v in 1..254 (v/255 repeats v's 8 bits), so no value drops a bin.
    confidences = np.clip(np.arange(256).astype("f4") / 255, 0.0, 1.0)
    assert (confidences >= np.array(range(0, 256)) / 255.0).all()


def test_case_random_predicts_everything(kitti_road_root, kitti_road_oracles):
    gt_dir = kitti_road_root / "training" / "gt_image_2"
    for category_scores in metrics.evaluate_kitti_road(gt_dir, kitti_road_oracles / "case_random").values():
        assert category_scores["BestThresh_k"] == 0
        assert category_scores["REC_wp"] == 1.0 and category_scores["FPR_wp"] == 1.0
        assert category_scores["counts"]["TN_wp"] == 0


def test_case_shift_binary_map_takes_first_threshold(kitti_road_root, kitti_road_oracles):
    gt_dir = kitti_road_root / "training" / "gt_image_2"
    for category_scores in metrics.evaluate_kitti_road(gt_dir, kitti_road_oracles / "case_shift").values():
        assert category_scores["BestThresh_k"] == 1
        assert category_scores["BestThresh"] == 1 / 255


# --- hand-worked tiny cases ---------------------------------------------------------------------------------

# P = 3 road, N = 3 not road. Road confidences 255, 128, 0; not road 100, 20, 10. Over k:
#   k = 0        TP 3, FP 3: precision 1/2, recall 1,   F 2/3
#   k = 1..10    TP 2, FP 3: precision 2/5, recall 2/3, F 1/2
#   k = 11..20   TP 2, FP 2: precision 1/2, recall 2/3, F 4/7
#   k = 21..100  TP 2, FP 1: precision 2/3, recall 2/3, F 2/3
#   k = 101..128 TP 2, FP 0: precision 1,   recall 2/3, F 4/5  <- MaxF, first at k = 101
#   k = 129..255 TP 1, FP 0: precision 1,   recall 1/3, F 1/2
# AvgPrec: recall levels 0..0.6 (7 of them) reach precision 1, levels 0.7..1 (4) only 1/2: (7 + 2) / 11.
TINY_GT = ["MMR", "MRR"]
TINY_CONFIDENCE = np.array([[255, 128, 100], [0, 20, 10]], dtype=np.uint8)
TINY_EXPECTED = {
    "MaxF": 4 / 5,
    "AvgPrec": 9 / 11,
    "PRE_wp": 1.0,
    "REC_wp": 2 / 3,
    "FPR_wp": 0.0,
    "FNR_wp": 1 / 3,
    "BestThresh": 101 / 255,
    "BestThresh_k": 101,
    "counts": {"totalPosNum": 3, "totalNegNum": 3, "TP_wp": 2, "FP_wp": 0, "FN_wp": 1, "TN_wp": 3},
}


def tiny_histograms():
    road, valid = metrics.road_gt_masks(gt_image(TINY_GT))
    return metrics.confidence_histograms(TINY_CONFIDENCE, road, valid)


def test_road_gt_masks_follow_devkit_rule():
    road, valid = metrics.road_gt_masks(gt_image(["MRKB"]))
    np.testing.assert_array_equal(road, [[True, False, False, True]])
    np.testing.assert_array_equal(valid, [[True, True, False, False]])


def test_confidence_histograms_count_road_and_not_road():
    pos_hist, neg_hist = tiny_histograms()
    assert pos_hist.dtype == neg_hist.dtype == np.int64 and pos_hist.shape == neg_hist.shape == (256,)
    assert np.flatnonzero(pos_hist).tolist() == [0, 128, 255] and pos_hist.sum() == 3
    assert np.flatnonzero(neg_hist).tolist() == [10, 20, 100] and neg_hist.sum() == 3


def test_road_scores_hand_worked():
    assert_scores_match(metrics.road_scores(*tiny_histograms()), TINY_EXPECTED)


def test_dont_care_and_blue_pixels_are_never_counted():
    # A don't-care and a blue column, with confidences that would change every count if they were counted.
    gt = gt_image([row + "KB" for row in TINY_GT])
    confidence = np.hstack([TINY_CONFIDENCE, np.array([[0, 255], [255, 0]], dtype=np.uint8)])
    pos_hist, neg_hist = metrics.confidence_histograms(confidence, *metrics.road_gt_masks(gt))
    tiny_pos, tiny_neg = tiny_histograms()
    np.testing.assert_array_equal(pos_hist, tiny_pos)
    np.testing.assert_array_equal(neg_hist, tiny_neg)


def test_perfect_binary_map():
    road, valid = metrics.road_gt_masks(gt_image(TINY_GT))
    scores = metrics.road_scores(
        *metrics.confidence_histograms(np.where(road, 255, 0).astype(np.uint8), road, valid)
    )
    assert scores["MaxF"] == pytest.approx(1.0) and scores["AvgPrec"] == pytest.approx(1.0)
    assert scores["BestThresh_k"] == 1 and scores["FPR_wp"] == 0.0 and scores["FNR_wp"] == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_road_scores_match_reference_on_random_histograms(seed):
    rng = np.random.default_rng(seed)
    pos_hist, neg_hist = rng.integers(0, 1000, size=(2, 256)) * (rng.random((2, 256)) < 0.3)
    assert_scores_match(metrics.road_scores(pos_hist, neg_hist), reference_scores(pos_hist, neg_hist))


def test_road_scores_rejects_bad_histograms():
    with pytest.raises(ValueError, match="no valid road"):
        metrics.road_scores(np.zeros(256, int), np.ones(256, int))
    with pytest.raises(ValueError, match="256"):
        metrics.road_scores(np.ones(255, int), np.ones(255, int))


# --- reading files -------------------------------------------------------------------------------------------


def test_evaluate_files_matches_hand_worked(tmp_path):
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path,
        {"um_road_000000.png": gt_image(TINY_GT), "um_road_000001.png": gt_image(["KB", "MR"])},
        {"um_road_000000.png": TINY_CONFIDENCE, "um_road_000001.png": np.array([[1, 2], [255, 0]], np.uint8)},
    )
    scores = metrics.evaluate_kitti_road(gt_dir, results_dir)
    assert list(scores) == ["um_road"]  # the other categories have no gt here
    # The second image adds a road pixel at 255 (found at every k) and a non-road one at 0 (a false positive
    # only at k = 0): MaxF stays at k = 101, now with TP 3 of P = 4 and no FP.
    assert scores["um_road"]["MaxF"] == pytest.approx(2 * 1 * 3 / 4 / (1 + 3 / 4))
    assert scores["um_road"]["counts"]["totalPosNum"] == 4 and scores["um_road"]["counts"]["totalNegNum"] == 4


def test_lane_category_is_scored_only_with_lane_results(tmp_path):
    # um_lane is the ego-lane benchmark: a road model writes no lane maps, so its absence is no gap.
    gt = gt_image(TINY_GT)
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path,
        {"um_lane_000000.png": gt, "uu_road_000000.png": gt},
        {"uu_road_000000.png": TINY_CONFIDENCE},
    )
    scores = metrics.evaluate_kitti_road(gt_dir, results_dir, progress=True)
    assert list(scores) == ["uu_road"]
    assert_scores_match(scores["uu_road"], TINY_EXPECTED)
    imageio.write_png(results_dir / "um_lane_000000.png", TINY_CONFIDENCE)
    assert list(metrics.evaluate_kitti_road(gt_dir, results_dir)) == ["um_lane", "uu_road"]


def test_missing_result_in_partial_category_is_named(tmp_path):
    gt = gt_image(TINY_GT)
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path,
        {"umm_road_000000.png": gt, "umm_road_000001.png": gt, "umm_road_000002.png": gt},
        {"umm_road_000001.png": TINY_CONFIDENCE},
    )
    with pytest.raises(imageio.ImageFileError) as error:
        metrics.evaluate_kitti_road(gt_dir, results_dir)
    message = str(error.value)
    assert message.startswith(f"{results_dir}: 2 of 3 result files missing (umm_road 2 of 3)")
    assert "umm_road_000000.png, umm_road_000002.png" in message and "umm_road_000001" not in message
    assert "\n" not in message


def test_missing_road_category_is_an_error(tmp_path):
    gt = gt_image(TINY_GT)
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path,
        {"um_road_000000.png": gt, "uu_road_000000.png": gt, "uu_road_000001.png": gt},
        {"um_road_000000.png": TINY_CONFIDENCE},
    )
    with pytest.raises(
        imageio.ImageFileError,
        match=r"2 of 3 result files missing \(uu_road 2 of 2\): uu_road_000000\.png, uu_road_000001\.png",
    ):
        metrics.evaluate_kitti_road(gt_dir, results_dir)


def test_asked_category_without_results_or_gt_is_an_error(tmp_path):
    gt = gt_image(TINY_GT)
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path,
        {"um_lane_000000.png": gt, "um_road_000000.png": gt},
        {"um_road_000000.png": TINY_CONFIDENCE},
    )
    with pytest.raises(imageio.ImageFileError, match=r"1 of 1 result files missing \(um_lane 1 of 1\)"):
        metrics.evaluate_kitti_road(gt_dir, results_dir, categories=["um_lane"])
    with pytest.raises(ValueError, match=r"no gt files for categories \['uu_road'\]"):
        metrics.evaluate_kitti_road(gt_dir, results_dir, categories=["um_road", "uu_road"])


def test_many_missing_results_are_counted_and_the_first_few_named(tmp_path):
    gt = gt_image(TINY_GT)
    names = [f"umm_road_{index:06d}.png" for index in range(9)]
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path, dict.fromkeys(names, gt), {names[0]: TINY_CONFIDENCE}
    )
    with pytest.raises(imageio.ImageFileError) as error:
        metrics.evaluate_kitti_road(gt_dir, results_dir)
    message = str(error.value)
    assert "8 of 9 result files missing (umm_road 8 of 9)" in message
    assert ", ".join(names[1:6]) + " and 3 more" in message and names[6] not in message


@pytest.fixture
def oracle_copy(kitti_road_root, kitti_road_oracles, tmp_path):
    """(gt dir, results dir): copies of the real gt and of the case_blur result maps, to break."""
    gt_dir, results_dir = tmp_path / "gt_image_2", tmp_path / "results"
    shutil.copytree(kitti_road_root / "training" / "gt_image_2", gt_dir)
    shutil.copytree(kitti_road_oracles / "case_blur", results_dir)
    return gt_dir, results_dir


def test_real_results_with_one_file_and_one_category_missing(oracle_copy):
    gt_dir, results_dir = oracle_copy
    removed = ["um_road_000003.png"] + sorted(path.name for path in results_dir.glob("uu_road_*.png"))
    for name in removed:
        (results_dir / name).unlink()
    with pytest.raises(imageio.ImageFileError) as error:
        metrics.evaluate_kitti_road(gt_dir, results_dir)
    message = str(error.value)
    assert f"{len(removed)} of 16 result files missing (um_road 1 of 4, uu_road 4 of 4)" in message
    assert ", ".join(removed) in message


def test_gt_with_foreign_colours_is_named_in_evaluation(oracle_copy):
    gt_dir, results_dir = oracle_copy
    gt_path = gt_dir / "umm_road_000001.png"
    gt = imageio.read_rgb(gt_path)
    gt[10:13, 20:24] = (0, 255, 0)  # 12 px of a colour the gt never holds
    gt[50, 60] = (128, 128, 128)
    imageio.write_png(gt_path, gt)
    with pytest.raises(imageio.ImageFileError) as error:
        metrics.evaluate_kitti_road(gt_dir, results_dir)
    message = str(error.value)
    assert message.startswith(f"{gt_path}: colours outside the KITTI Road gt encoding")
    assert "(0, 255, 0) in 12 px, (128, 128, 128) in 1 px" in message


def test_road_gt_masks_reject_foreign_colours():
    gt = gt_image(TINY_GT)
    gt[0, 0] = (255, 255, 255)
    with pytest.raises(ValueError, match=r"outside the KITTI Road gt encoding .*: \(255, 255, 255\) in 1 px"):
        metrics.road_gt_masks(gt)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB"):
        metrics.road_gt_masks(gt[..., 0])


def test_result_of_wrong_size_is_named(tmp_path):
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path, {"um_road_000000.png": gt_image(TINY_GT)}, {"um_road_000000.png": TINY_CONFIDENCE[:, :2]}
    )
    with pytest.raises(imageio.ImageFileError, match=r"um_road_000000\.png: size 2x2 .* differs from its gt"):
        metrics.evaluate_kitti_road(gt_dir, results_dir)


@pytest.mark.parametrize(
    "result",
    [np.repeat(TINY_CONFIDENCE[..., None], 3, axis=2), TINY_CONFIDENCE.astype(np.uint16) * 257],
    ids=["colour", "16-bit"],
)
def test_result_not_8_bit_single_channel_is_named(tmp_path, result):
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path, {"um_road_000000.png": gt_image(TINY_GT)}, {"um_road_000000.png": result}
    )
    with pytest.raises(
        imageio.ImageFileError, match=r"um_road_000000\.png: expected an 8-bit single-channel"
    ):
        metrics.evaluate_kitti_road(gt_dir, results_dir)


def test_empty_result_file_is_named(tmp_path):
    gt_dir, results_dir = write_kitti_road_files(tmp_path, {"um_road_000000.png": gt_image(TINY_GT)}, {})
    (results_dir / "um_road_000000.png").write_bytes(b"")
    with pytest.raises(imageio.ImageFileError, match=r"um_road_000000\.png: file is empty"):
        metrics.evaluate_kitti_road(gt_dir, results_dir)


def test_empty_or_missing_folders_are_named(tmp_path):
    gt_dir, results_dir = write_kitti_road_files(tmp_path, {"um_road_000000.png": gt_image(TINY_GT)}, {})
    with pytest.raises(ValueError, match=rf"^{re.escape(str(results_dir))}: results folder is empty"):
        metrics.evaluate_kitti_road(gt_dir, results_dir)
    imageio.write_png(results_dir / "um_road_000000.png", TINY_CONFIDENCE)
    with pytest.raises(
        FileNotFoundError, match=rf"^{re.escape(str(tmp_path / 'nowhere'))}: gt folder not found"
    ):
        metrics.evaluate_kitti_road(tmp_path / "nowhere", results_dir)
    with pytest.raises(FileNotFoundError, match="results folder not found"):
        metrics.evaluate_kitti_road(gt_dir, tmp_path / "nowhere")
    no_gt = tmp_path / "no_gt"
    no_gt.mkdir()
    with pytest.raises(ValueError, match=rf"^{re.escape(str(no_gt))}: no KITTI Road gt files"):
        metrics.evaluate_kitti_road(no_gt, results_dir)


def test_unknown_category_raises(tmp_path):
    gt_dir, results_dir = write_kitti_road_files(
        tmp_path, {"um_road_000000.png": gt_image(TINY_GT)}, {"um_road_000000.png": TINY_CONFIDENCE}
    )
    with pytest.raises(ValueError, match="unknown KITTI Road categories"):
        metrics.evaluate_kitti_road(gt_dir, results_dir, categories=["um_roads"])


# --- the command line, as a person runs it ------------------------------------------------------------------


def run_fcn(*args) -> subprocess.CompletedProcess:
    fcn_command = Path(sys.executable).parent / "fcn"  # the console script of the environment under test
    return subprocess.run([str(fcn_command), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_refuses_incomplete_results(oracle_copy):
    gt_dir, results_dir = oracle_copy
    (results_dir / "umm_road_000004.png").unlink()
    finished = run_fcn("evaluate", "kitti-road", "--gt-dir", gt_dir, "--results-dir", results_dir)
    assert finished.returncode == 1 and finished.stdout == ""
    assert finished.stderr.splitlines() == [
        f"error: {results_dir}: 1 of 16 result files missing (umm_road 1 of 4): umm_road_000004.png; "
        f"every gt file in {gt_dir} needs a result of the same name"
    ]


@pytest.mark.slow
def test_cli_names_a_gt_file_with_foreign_colours(oracle_copy):
    gt_dir, results_dir = oracle_copy
    gt_path = gt_dir / "uu_road_000000.png"
    gt = imageio.read_rgb(gt_path)
    gt[0, :7] = (0, 255, 0)
    imageio.write_png(gt_path, gt)
    finished = run_fcn("evaluate", "kitti-road", "--gt-dir", gt_dir, "--results-dir", results_dir, "--json")
    assert finished.returncode == 1 and finished.stdout == ""
    [line] = finished.stderr.splitlines()
    assert line.startswith(f"error: {gt_path}: colours outside") and line.endswith("(0, 255, 0) in 7 px")
