"""`fcn train` as a real process, really killed (SIGKILL) at chosen and random moments, then rerun.

The kills land while a checkpoint is being written, while state.json, best.keras and history.csv are being
published, and at random times (tests/crash_harness.py announces each write so the test can strike there).
After every rerun the run must have resumed where it was, never restarted; at the end every epoch is in
the history exactly once, best.keras is the best epoch of the whole run and every model file loads.
"""

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fcn import modelfile
from fcn.data import synthetic

HARNESS = Path(__file__).with_name("crash_harness.py")
EPOCHS = 6
TRAIN_ARGS = ["train", "--dataset", "kitti_road", "--fast", "--image-size", "32x96", "--batch-size", "2",
              "--max-train-images", "4", "--max-val-images", "2"]


@pytest.fixture(scope="module")
def road_data(tmp_path_factory) -> Path:
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=3,
                                      test_images_per_category=1, scale=0.25, seed=5)


def _command(data_dir, run_dir, epochs=EPOCHS):
    return [sys.executable, str(HARNESS), *TRAIN_ARGS, "--data-dir", str(data_dir), "--run-dir", str(run_dir),
            "--epochs", str(epochs)]


def _run(command, kill_at=None, kill_after=None) -> tuple[int, list[str]]:
    """Run to the end, or SIGKILL it at the first line matching the regular expression `kill_at` or after
    `kill_after` seconds."""
    # The announced write that is struck at waits long enough for the kill to land inside it, even on a busy
    # machine; the writes before it do not wait.
    env = {**os.environ, "HARNESS_PAUSE": "0.6", "HARNESS_PAUSE_AT": kill_at or "^$"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        if kill_after is not None:
            try:
                out, _ = process.communicate(timeout=kill_after)
                return process.returncode, out.splitlines()
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if kill_at is not None and re.search(kill_at, line.rstrip("\n")):
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    return process.returncode, lines


def _committed_epochs(run_dir: Path) -> int:
    state = run_dir / "state.json"
    return json.loads(state.read_text())["epochs_done"] if state.exists() else 0


def _history_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def _temporary_files(run_dir: Path) -> list[Path]:
    return [*run_dir.glob(".*.tmp*"), *run_dir.glob("checkpoint/.*.tmp*")]


def _check_consistent(run_dir: Path) -> None:
    """What must hold after any kill: state, history and model files agree and load."""
    if not (run_dir / "state.json").exists():
        return
    state = json.loads((run_dir / "state.json").read_text())
    for name in ("best.keras", "final.keras"):
        if (run_dir / name).exists():
            assert modelfile.load_model(run_dir / name).output_shape[-1] == 2, name
    assert (run_dir / "checkpoint" / f"epoch-{state['epochs_done']:04d}.keras").is_file()
    assert [row["epoch"] for row in state["history"]] == list(range(1, state["epochs_done"] + 1))


# Where each rerun is killed: during a checkpoint save (before the first commit), at the commit itself,
# while best.keras, history.csv and a checkpoint are published, then at random moments.
KILLS = [
    dict(kill_at=r"^HARNESS save .*checkpoint"),
    dict(kill_at=r"^HARNESS publish .*/state\.json$"),
    dict(kill_at=r"^HARNESS publish .*/best\.keras$"),
    dict(kill_at=r"^HARNESS publish .*/history\.csv$"),
    dict(kill_at=r"^HARNESS publish .*/checkpoint/epoch-"),
    dict(kill_after=random.Random(0).uniform(8, 14)),
    dict(kill_after=random.Random(1).uniform(8, 14)),
]


@pytest.mark.slow
def test_killed_runs_resume_and_end_as_one_clean_run(road_data, tmp_path):
    run_dir = tmp_path / "run"
    command = _command(road_data, run_dir)
    for kill in KILLS:
        committed = _committed_epochs(run_dir)
        earlier = json.loads((run_dir / "state.json").read_text())["history"] if committed else []
        code, lines = _run(command, **kill)
        output = "\n".join(lines)
        assert "Traceback" not in output, output
        trained = [line for line in lines if line.startswith("Epoch ")]
        if trained:  # the first epoch trained is the one after the last committed one: never a restart
            assert trained[0] == f"Epoch {committed + 1}/{EPOCHS}", output
            assert not committed or f"resuming after epoch {committed} of {EPOCHS}" in output, output
        if committed:
            assert json.loads((run_dir / "state.json").read_text())["history"][:committed] == earlier
        _check_consistent(run_dir)
        if code == 0:
            break
        assert code == -signal.SIGKILL, output
        if "kill_at" in kill:  # it really died half-way through a write: the temporary file is still there
            assert _temporary_files(run_dir), output

    code, lines = _run(command)
    assert code == 0, "\n".join(lines)
    assert not _temporary_files(run_dir)  # cleaned up by the reruns
    rows = _history_rows(run_dir)
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    _check_best_is_best_of_whole_run(run_dir, rows)
    final = modelfile.load_model(run_dir / "final.keras")
    last = modelfile.load_model(run_dir / "checkpoint" / f"epoch-{EPOCHS:04d}.keras")
    for a, b in zip(final.get_weights(), last.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    # Rerunning a finished run says so and changes nothing; asking for more epochs continues it.
    code, lines = _run(command)
    assert code == 0 and any("finished, 6 epochs" in line for line in lines)
    assert _history_rows(run_dir) == rows
    code, lines = _run(_command(road_data, run_dir, epochs=EPOCHS + 1))
    assert code == 0 and any(f"resuming after epoch {EPOCHS} of {EPOCHS + 1}" in line for line in lines)
    assert [int(row["epoch"]) for row in _history_rows(run_dir)] == list(range(1, EPOCHS + 2))
    assert _history_rows(run_dir)[:EPOCHS] == rows


def _check_best_is_best_of_whole_run(run_dir: Path, rows: list[dict]) -> None:
    from fcn import predict
    from fcn.train import TrainConfig, build_datasets

    scores = [float(row["val_maxf"]) for row in rows]
    best_epoch = int(np.argmax(scores)) + 1
    assert json.loads((run_dir / "state.json").read_text())["best_epoch"] == best_epoch
    # best.keras reproduces the best epoch's validation MaxF: it is that epoch's model.
    config = TrainConfig.load(run_dir / "config.json")
    _, _, _, val = build_datasets(config)
    best = modelfile.load_model(run_dir / "best.keras")
    maxf = predict.evaluate_road(best, val, config.image_size, pooled=True)["urban_road"]["MaxF"]
    assert maxf == pytest.approx(scores[best_epoch - 1], abs=1e-9)
