"""Bad input met during training, failed starts, resumed data order and option checks, as a person meets them."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fcn import modelfile
from fcn._quiet_tensorflow import is_startup_noise
from fcn.data import synthetic
from fcn.imageio import read_rgb, write_png
from fcn.train import TrainConfig, build_datasets, fast_config, train

TINY = ["--fast", "--image-size", "32x96", "--batch-size", "2", "--max-train-images", "4", "--max-val-images", "2"]


@pytest.fixture
def road_data(tmp_path) -> Path:
    return synthetic.write_kitti_road(tmp_path / "data", images_per_category=3, test_images_per_category=1,
                                      scale=0.25, seed=2)


def _train_command(data_dir, run_dir, epochs=1) -> list[str]:
    return [sys.executable, "-m", "fcn.cli", "train", *TINY, "--data-dir", str(data_dir), "--run-dir", str(run_dir),
            "--epochs", str(epochs)]


def _run(command) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _first_training_image(data_dir: Path) -> Path:
    config = fast_config(data_dir=str(data_dir), max_train_images=4, max_val_images=2)
    return build_datasets(config)[2][0].image


def _assert_one_line_error(result, *expected: str) -> str:
    """Exit code 1 (not a crash, not SIGABRT) and exactly one stderr line, naming what is expected."""
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_corrupt_image_met_during_fit_is_one_line_and_leaves_no_run(road_data, tmp_path):
    image = _first_training_image(road_data)
    image.write_bytes(image.read_bytes()[:300])  # the header survives, so only decoding finds it
    result = _run(_train_command(road_data, tmp_path / "run"))
    _assert_one_line_error(result, str(image), "cannot decode")
    assert result.returncode != -signal.SIGABRT
    assert not (tmp_path / "run").exists()  # a run that failed before its first epoch leaves nothing


@pytest.mark.slow
def test_foreign_label_colour_met_during_fit_names_file_and_colour(road_data, tmp_path):
    gt = next((road_data / "training" / "gt_image_2").glob("um_road_*.png"))
    labels = read_rgb(gt)
    labels[0, 0] = (0, 255, 0)  # green means nothing in KITTI Road ground truth
    write_png(gt, labels)
    # All frames take part so the bad one is certainly read.
    result = _run([*_train_command(road_data, tmp_path / "run"), "--max-train-images", "99", "--max-val-images", "99"])
    _assert_one_line_error(result, gt.name, "(0, 255, 0)")


@pytest.mark.slow
def test_bad_file_in_a_later_epoch_leaves_the_run_resumable(road_data, tmp_path):
    run_dir = tmp_path / "run"
    assert _run(_train_command(road_data, run_dir, epochs=1)).returncode == 0
    image = _first_training_image(road_data)
    good = image.read_bytes()
    image.write_bytes(b"")
    result = _run(_train_command(road_data, run_dir, epochs=2))
    _assert_one_line_error(result, str(image), "empty")
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 1
    image.write_bytes(good)
    result = _run(_train_command(road_data, run_dir, epochs=2))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming after epoch 1 of 2" in result.stdout
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == 2
    assert not [line for line in result.stderr.splitlines() if is_startup_noise(line) and line.strip()]


@pytest.mark.slow
def test_time_budget_stops_cleanly_and_is_recorded(road_data, tmp_path):
    run_dir = tmp_path / "run"
    # The first epoch (with its graph tracing) takes longer than this budget: the run stops after it.
    result = _run([*_train_command(road_data, run_dir, epochs=50), "--minutes", "0.02"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "another epoch would overrun the budget of 0.02 minutes" in result.stdout
    state = json.loads((run_dir / "state.json").read_text())
    assert state["stopped_by_budget"] and state["epochs_done"] < 50
    assert state["seconds"] == pytest.approx(sum(row["seconds"] for row in state["history"]), abs=0.01)
    assert json.loads((run_dir / "config.json").read_text())["minutes"] == 0.02
    for name in ("best.keras", "final.keras"):
        assert modelfile.load_model(run_dir / name).output_shape[-1] == 2
    # The same command again: finished. More minutes: the run goes on from where it stopped.
    again = _run([*_train_command(road_data, run_dir, epochs=50), "--minutes", "0.02"])
    assert again.returncode == 0 and "finished" in again.stdout
    done = state["epochs_done"]
    more = _run([*_train_command(road_data, run_dir, epochs=done + 1), "--minutes", "30"])
    assert more.returncode == 0 and f"resuming after epoch {done} of {done + 1}" in more.stdout
    assert json.loads((run_dir / "state.json").read_text())["epochs_done"] == done + 1


@pytest.mark.slow
def test_failed_start_in_an_existing_folder_removes_only_what_it_wrote(road_data, tmp_path):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("a person's file")
    image = _first_training_image(road_data)
    image.write_bytes(image.read_bytes()[:300])  # found only when decoded, inside fit
    config = fast_config(data_dir=str(road_data), run_dir=str(run_dir), image_size=(32, 96), epochs=1,
                         max_train_images=4, max_val_images=2)
    with pytest.raises(ValueError, match="cannot decode"):
        train(config, verbose=0)
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]


def test_a_resumed_epoch_sees_the_data_it_would_have_seen(road_data):
    config = fast_config(data_dir=str(road_data), image_size=(32, 96), epochs=4, max_train_images=4,
                         max_val_images=2)
    steps = 2  # 4 images, batch 2
    uninterrupted = [batch for batch, _ in zip(build_datasets(config)[0], range(4 * steps), strict=False)]
    resumed = list(build_datasets(config, first_epoch=2)[0])
    assert len(resumed) == 2 * steps
    for (images, labels), (expected_images, expected_labels) in zip(resumed, uninterrupted[2 * steps:], strict=True):
        np.testing.assert_array_equal(labels.numpy(), expected_labels.numpy())
        np.testing.assert_allclose(images.numpy(), expected_images.numpy(), atol=1e-4)
    # Each epoch has its own order and augmentation.
    assert not np.allclose(uninterrupted[0][0].numpy(), uninterrupted[steps][0].numpy())


@pytest.mark.parametrize("setting, value, message", [
    ("learning_rate", 0.0, "learning_rate"),
    ("learning_rate", float("nan"), "learning_rate"),
    ("batch_size", 0, "batch_size"),
    ("epochs", 0, "epochs"),
    ("max_train_images", 0, "max_train_images"),
    ("val_fraction", 1.0, "val_fraction"),
    ("image_size", (16, 64), "image_size"),
    ("dataset", "kitti", "unknown dataset"),
    ("encoder", "resnet", "unknown encoder"),
])
def test_settings_are_checked_before_any_work(setting, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{setting: value})


def test_paths_are_checked_when_training_starts(road_data, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        train(fast_config(data_dir=str(road_data), run_dir=str(a_file)))
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        train(fast_config(data_dir=str(road_data), run_dir=str(tmp_path / "r"), encoder="vgg16",
                          weights=str(tmp_path / "none.h5")))
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_changed_setting_is_refused_not_mixed_into_the_run(road_data, tmp_path):
    config = fast_config(data_dir=str(road_data), run_dir=str(tmp_path / "run"), image_size=(32, 96), epochs=1,
                         max_train_images=4, max_val_images=2)
    train(config, verbose=0)
    shutil.copy(tmp_path / "run" / "history.csv", tmp_path / "history.before")
    changed = fast_config(**{**config.__dict__, "learning_rate": 0.01, "epochs": 2})
    with pytest.raises(ValueError, match=r"learning_rate 0\.001 -> 0\.01"):
        train(changed, verbose=0)
    assert (tmp_path / "run" / "history.csv").read_text() == (tmp_path / "history.before").read_text()


@pytest.mark.parametrize("command", [
    ["demo", "--figures-dir", "{file}"],
    ["demo", "--run-dir", "{file}"],
    ["synth", "--out-dir", "{file}"],
])
def test_output_locations_are_checked_before_any_work(command, tmp_path, capsys):
    from fcn import cli

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert cli.main([part.replace("{file}", str(a_file)) for part in command]) == 1
    error = capsys.readouterr().err.strip()
    assert error == f"error: {a_file}: output path is a file, not a folder"
    assert not (tmp_path / "runs").exists() and a_file.read_text() == ""
