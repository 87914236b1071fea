"""benchmarks/bench_speed.py end to end in its fast mode, as a command, and its TF1-style baseline feed."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_speed  # noqa: E402

from fcn import precision  # noqa: E402
from fcn.data import kitti_road, synthetic  # noqa: E402


@pytest.mark.slow
def test_speed_benchmark_runs_every_section(tmp_path):
    out = tmp_path / "speed.json"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_speed.py"), "--fast", "--no-xla",
                             "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert set(record["tables"]) == set(bench_speed.SECTIONS)
    for rate in (record["ceiling"]["conv3x3"], record["ceiling"]["matmul"]):
        assert 0 < rate["min"] <= rate["median"] <= rate["max"]
    (row,) = record["encoders"]
    assert row["encoder"] == "vgg16_mini" and row["gflop_per_full_image"] > row["gflop_per_image"] > 0
    assert row["train"]["median"] > 0 and row["forward"]["median"] > 0
    assert record["pipeline"]["cached"]["median"] > 0 and record["pipeline"]["uncached"]["median"] > 0
    (baseline,) = record["baseline"]
    assert baseline["ratio"] == pytest.approx(baseline["fcn"]["median"] / baseline["tf1_style"]["median"])
    assert baseline["tf1_feed_alone"]["median"] > 0 and 0 < baseline["tf1_input_share"]
    tflite = record["tflite"]
    assert [row["format"] for row in tflite["rows"]] == ["keras float32", "tflite float32", "tflite fp16", "tflite int8"]
    keras_row, float_row, half_row, int8_row = tflite["rows"]
    # float32 TFLite scores exactly what Keras scores; the quantised files are smaller.
    assert float_row["scores"] == pytest.approx(keras_row["scores"], abs=1e-3)
    assert int8_row["bytes"] < half_row["bytes"] < float_row["bytes"]
    assert "urban_road" in keras_row["scores"]
    settings = record["settings_rows"]
    assert [row["setting"] for row in settings] == [name for name, _, _ in bench_speed.SETTINGS]
    # Each setting reached its own process: the backend, XLA flag and batch that the worker reports.
    assert [row["backend"] for row in settings] == ["tensorflow"] * 6 + ["jax"]
    assert [row["xla"] for row in settings] == [False, True, False, False, True, False, False]
    assert [row["batch_size"] for row in settings] == [2, 2, 2, 2, 2, 4, 2]
    assert settings[2]["onednn"] == "0" and all(row["images_per_second"]["median"] > 0 for row in settings)
    # bfloat16 against float32, each in its own worker, and each against its own precision's ceiling.
    float_row, bfloat_row = record["precision_rows"]
    assert (float_row["encoder"], float_row["precision"]) == ("vgg16_mini", "float32")
    assert float_row["images_per_second"]["median"] > 0 and float_row["forward_images_per_second"]["median"] > 0
    # The defaults' worker is float32's row too (one worker fewer); the other settings time the training step only.
    assert float_row["images_per_second"] == settings[0]["images_per_second"]
    assert all(row["forward_images_per_second"] is None for row in settings[1:])
    if precision.has_native_bfloat16():
        assert bfloat_row["precision"] == "bfloat16" and bfloat_row["images_per_second"]["median"] > 0
        assert record["ceiling"]["bfloat16"]["conv3x3"]["median"] > 0
    else:
        assert bfloat_row["skipped"] == record["ceiling"]["bfloat16"] == bench_speed.NO_BFLOAT16
    assert "| vgg16_mini | bfloat16 |" in record["tables"]["settings"]
    (video,) = record["video"]
    assert video["encoder"] == "vgg16_mini" and video["keras"] > 0 and video["tflite_int8"] > 0
    for table in record["tables"].values():
        assert table in result.stdout


def test_tf1_style_batches_resize_labels_with_nearest_neighbour(tmp_path):
    root = synthetic.write_kitti_road(tmp_path, seed=0, images_per_category=1, test_images_per_category=0,
                                      scale=0.25)
    samples = kitti_road.list_samples(root, "training")
    images, labels = next(bench_speed.tf1_style_batches(samples, kitti_road.read_label, (48, 80), 2))
    assert images.shape == (2, 48, 80, 3) and images.dtype == np.float32 and labels.shape == (2, 48, 80)
    # Only label values that exist in the files: no blends of road and not-road at the edges.
    file_values = set(np.unique(np.concatenate([np.unique(kitti_road.read_label(s.label)) for s in samples])))
    assert set(np.unique(labels)) <= file_values and len(np.unique(labels)) >= 2


@pytest.mark.slow
def test_a_stopped_run_keeps_the_sections_it_finished(tmp_path, monkeypatch):
    """Each section's table is printed and the JSON rewritten as the section ends (the first full run was
    killed for memory after an hour and left nothing)."""
    out = tmp_path / "speed.json"

    def broken(*args):
        raise RuntimeError("stopped here")

    monkeypatch.setattr(bench_speed, "measure_pipeline", broken)
    with pytest.raises(RuntimeError, match="stopped here"):
        bench_speed.main(["--fast", "--no-xla", "--sections", "ceiling,encoders,pipeline", "--json", str(out)])
    record = json.loads(out.read_text())
    assert set(record["tables"]) == {"ceiling", "encoders"} and record["encoders"][0]["encoder"] == "vgg16_mini"


def test_without_native_bfloat16_nothing_is_timed_in_it(monkeypatch):
    monkeypatch.setattr(precision, "has_native_bfloat16", lambda flags=None: False)
    ceiling = bench_speed.measure_ceiling((1, 8, 8, 8), 16, repeats=1)
    assert ceiling["bfloat16"] == bench_speed.NO_BFLOAT16 and ceiling["conv3x3"]["median"] > 0
    assert "not timed" in bench_speed.ceiling_table(ceiling)
    started = []

    def worker(command, **kwargs):  # a float32 worker's answer; a bfloat16 one must not be started
        started.append(command[command.index("--precision") + 1])
        rate = {"median": 2.0, "min": 1.0, "max": 3.0}
        line = json.dumps({"precision": "float32", "images_per_second": rate, "forward_images_per_second": rate})
        return subprocess.CompletedProcess(command, 0, stdout=line + "\n", stderr="")

    monkeypatch.setattr(bench_speed.subprocess, "run", worker)
    rows = bench_speed.measure_precisions(["vgg16_mini"], (32, 32), 1, 1)
    assert started == ["float32"]
    assert rows[1] == {"encoder": "vgg16_mini", "precision": "bfloat16", "skipped": bench_speed.NO_BFLOAT16}
    assert bench_speed.NO_BFLOAT16 in bench_speed.precision_table(rows, ceiling)
    # A float32 result measured already (the settings section's defaults) is used, not timed again.
    started.clear()
    measured = {"precision": "float32", "images_per_second": {"median": 5.0, "min": 4.0, "max": 6.0},
                "forward_images_per_second": {"median": 9.0, "min": 8.0, "max": 9.5}}
    rows = bench_speed.measure_precisions(["vgg16_mini"], (32, 32), 1, 1, {"vgg16_mini": measured})
    assert started == [] and rows[0]["images_per_second"]["median"] == 5.0 and rows[0]["gflop_per_image"] > 0
