"""benchmarks/accuracy.py end to end in its fast mode (synthetic data in the real layouts), as a command."""

import csv
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

SCORE_COLUMN = {"kitti_road": "val_maxf", "camvid": "val_miou", "kitti_semantics": "val_miou"}


def _benchmark(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "accuracy.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def fast_runs(tmp_path_factory):
    """dataset -> (out folder, finished process, its JSON record): each dataset's fast run, made once for the
    tests here (the record is read at once: a later rerun in the same folder rewrites the file)."""
    runs = {}

    def run(dataset):
        if dataset not in runs:
            out = tmp_path_factory.mktemp(dataset)
            result = _benchmark("--dataset", dataset, "--fast", "--minutes", 5, "--out", out,
                                "--figures-dir", out / "fig", "--set", "learning_rate=0.003")
            assert result.returncode == 0, result.stderr[-3000:]
            runs[dataset] = out, result, json.loads((out / f"{dataset}-cpu.json").read_text())
        return runs[dataset]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(SCORE_COLUMN))
def test_accuracy_benchmark_runs_and_reports(dataset, fast_runs):
    out, result, record = fast_runs(dataset)
    assert record["recipe"]["learning_rate"] == 0.003  # --set reached the recipe
    # Charts of the run: curves always; per-class IoU and confusion matrix where there are classes.
    charts = {"curves"} if dataset == "kitti_road" else {"curves", "class_iou", "confusion"}
    expected = [str(out / "fig" / f"{dataset}-cpu_{c}.png") for c in charts]
    assert sorted(record["figures"]) == sorted([*expected, str(out / "fig" / f"{dataset}_time_to_accuracy.png")])
    assert all(open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for path in record["figures"])
    # The schedule was planned after epoch 2 and capped by the fast mode's 3 epochs.
    assert record["dataset"] == dataset and record["synthetic"] and record["epochs"] == 3
    assert record["schedule_epochs"] == 3 and record["precision"] in ("float32", "bfloat16")
    assert record["encoder"] == "mobilenet_v2" and record["image_size"] == [64, 96]
    assert 0 < record["minutes"] <= 5 and "cores" in record["machine"]
    # The reported value is the best epoch's validation score, recomputed from best.keras.
    with open(out / f"{dataset}-cpu" / "history.csv") as f:
        scores = [float(row[SCORE_COLUMN[dataset]]) for row in csv.DictReader(f)]
    # (A bfloat16 run scored its epochs with bfloat16 arithmetic; its model file is the float32 model.)
    assert record["value"] == pytest.approx(max(scores), abs=1e-9 if record["precision"] == "float32" else 2e-3)
    # Time to accuracy: per epoch the minutes so far and the score; the first minute at each threshold.
    assert [point["score"] for point in record["curve"]] == pytest.approx(scores)
    minutes = [point["minutes"] for point in record["curve"]]
    assert minutes == sorted(minutes) and minutes[-1] == pytest.approx(record["minutes"], abs=0.01)
    thresholds = {"kitti_road": ["0.9", "0.93", "0.95"], "camvid": ["0.55", "0.6", "0.65"],
                  "kitti_semantics": ["0.35", "0.4"]}[dataset]
    assert list(record["time_to"]) == thresholds
    for threshold, minute in record["time_to"].items():
        reached = [p["minutes"] for p in record["curve"] if p["score"] >= float(threshold)]
        assert minute == (reached[0] if reached else None)
    # The held-out frames were in neither split, and were scored on their own.
    held_out = {"kitti_road": 12, "camvid": 2, "kitti_semantics": 4}[dataset]
    assert record["held_out"]["frames"] == held_out and 0 <= record["held_out"]["value"] <= 1
    config = json.loads((out / f"{dataset}-cpu" / "config.json").read_text())
    assert len(config["exclude_frames"]) == held_out
    row = result.stdout.strip().splitlines()[-1]
    assert row.startswith(f"| {dataset} (synthetic) |") and f"{100 * record['value']:.1f}" in row


@pytest.mark.slow
def test_accuracy_benchmark_scores_an_eval_folder(fast_runs, tmp_path):
    """Rerun on the finished KITTI Road run, the benchmark trains no more and scores another folder."""
    from fcn.data import synthetic

    out, _, first = fast_runs("kitti_road")
    history = (out / "kitti_road-cpu" / "history.csv").read_text()
    held_out = synthetic.write_kitti_road(tmp_path / "held_out", images_per_category=1, test_images_per_category=0,
                                          scale=0.25, seed=9) / "training"
    result = _benchmark("--dataset", "kitti_road", "--fast", "--minutes", 5, "--out", out, "--eval-dir", held_out,
                        "--tta-flip", "--tta-scales", "1,1.5", "--figures-dir", "", "--set", "learning_rate=0.003")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "kitti_road-cpu.json").read_text())
    # Nothing was trained again: the same epochs, the same best model.
    assert "Epoch " not in result.stdout and (out / "kitti_road-cpu" / "history.csv").read_text() == history
    assert (record["epochs"], record["best_epoch"], record["curve"]) == (first["epochs"], first["best_epoch"],
                                                                          first["curve"])
    assert record["evaluated_on"] == str(held_out)
    # Exactly the folder's three frames were scored: one per category.
    assert set(record["scores"]["categories"]) == {"um_road", "umm_road", "uu_road", "urban_road"}
    # The test-time-augmented scores are fcn.predict's with the same settings, beside the plain ones.
    from fcn import modelfile, predict
    from fcn.data import get_dataset, list_eval_folder

    assert record["tta"]["scales"] == [1.0, 1.5] and record["tta"]["flip"] is True
    model = modelfile.load_model(out / "kitti_road-cpu" / "best.keras")
    samples = list_eval_folder(get_dataset("kitti_road"), held_out)
    road = get_dataset("kitti_road").road_class
    expected = predict.evaluate_road(model, samples, tuple(record["image_size"]), road_id=road, pooled=True,
                                     tta_scales=(1.0, 1.5), tta_flip=True)
    assert record["tta"]["value"] == pytest.approx(expected["urban_road"]["MaxF"], abs=1e-9)
    plain = predict.evaluate_road(model, samples, tuple(record["image_size"]), road_id=road, pooled=True)
    assert record["value"] == pytest.approx(plain["urban_road"]["MaxF"], abs=1e-9)
    assert f"({100 * record['tta']['value']:.1f} with TTA)" in result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_accuracy_benchmark_refuses_bad_tta_scales():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "accuracy.py"), "--dataset",
                             "kitti_road", "--fast", "--tta-scales", "1,-2"], capture_output=True, text=True,
                            timeout=120, cwd=REPO_ROOT)
    # The same parsing, and the same one-line refusal, as `fcn evaluate --tta-scales` (fcn.cli.add_tta_arguments).
    assert result.returncode == 2 and "argument --tta-scales: scales must be numbers above 0" in result.stderr
    assert "got '-2'" in result.stderr


def test_set_takes_training_settings_by_name_with_json_values():
    import argparse

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import accuracy

    assert accuracy.parse_setting("scale_range=[0.5, 2.0]") == ("scale_range", [0.5, 2.0])
    assert accuracy.parse_setting("optimizer=sgd") == ("optimizer", "sgd")
    assert accuracy.parse_setting("epochs=25") == ("epochs", 25)
    for bad in ("epochs", "no_such_setting=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="TrainConfig field"):
            accuracy.parse_setting(bad)


@pytest.mark.parametrize(("dataset", "half", "frames"), [("kitti_road", "kitti_road_half/data_road", 12),
                                                         ("kitti_semantics", "kitti_semantics", 4),
                                                         ("camvid", "camvid", 31)])
def test_held_out_frames_are_found_in_the_shared_data(shared_data, dataset, half, frames):
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import accuracy
    from PIL import Image

    from fcn.train import TrainConfig

    names = accuracy.held_out_frames(dataset, fast=False)
    config = TrainConfig(dataset=dataset, data_dir=str(shared_data / half), exclude_frames=names,
                         **{k: v for k, v in accuracy.RECIPES[dataset].items() if k != "precision"})
    samples, where = accuracy.list_held_out(config, names, fast=False)
    assert sorted(s.image.name for s in samples) == sorted(names) and len(samples) == frames
    if dataset in accuracy.FULL_RESOLUTION_DIRS:  # scored at full resolution, with their labels
        assert where.endswith("(full resolution)")
        assert all(Image.open(s.image).size == (1242, 375) for s in samples)
    # ... and they are in neither the training nor the validation split of the run.
    train, val = accuracy.list_split(config)
    assert not {s.image.name for s in train + val} & set(names)
