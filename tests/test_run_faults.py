"""Faults of real use, met by real processes: a second process on a run folder, and writes that fail.

A write fails here the way it fails on a full disk: the process' files are limited in size (RLIMIT_FSIZE,
with SIGXFSZ ignored, so the write returns EFBIG, "File too large"). The limit is set by the child itself
at a point the test chooses (tests/crash_harness.py HARNESS_FSIZE: after a given file is published), or
from the start (preexec_fn). Every failure must be one line naming the file, leave every earlier file as it
was and no temporary file, and the rerun without the limit must resume as after a kill.
"""

import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fcn import modelfile
from fcn.data import synthetic
from fcn.runs import RunFolder, RunInUseError

HARNESS = Path(__file__).with_name("crash_harness.py")
TINY = ["--dataset", "kitti_road", "--fast", "--image-size", "32x96", "--batch-size", "2", "--max-train-images",
        "4", "--max-val-images", "2"]
TOO_LARGE = "cannot write (File too large)"


@pytest.fixture(scope="module")
def road_data(tmp_path_factory) -> Path:
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=3,
                                      test_images_per_category=1, scale=0.25, seed=5)


def _fcn(*args, harness: bool = True) -> list[str]:
    return [sys.executable, *([str(HARNESS)] if harness else ["-m", "fcn"]), *map(str, args)]


def _train(data_dir, run_dir, epochs, harness=True) -> list[str]:
    return _fcn("train", *TINY, "--data-dir", data_dir, "--run-dir", run_dir, "--epochs", epochs, harness=harness)


def _env(**harness) -> dict:
    return {**os.environ, "HARNESS_PAUSE": "0", **{f"HARNESS_{key.upper()}": value for key, value in harness.items()}}


def _file_limit(size: int):
    def limit():  # in the child, before it runs Python: its writes past `size` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return limit


def _run(command, env=None, preexec_fn=None) -> subprocess.CompletedProcess:
    # Pipes, not files: a file-size limit must not fall on the test's own record of the output.
    return subprocess.run(command, capture_output=True, text=True, env=env or _env(), preexec_fn=preexec_fn,
                          timeout=600)


def _one_line_error(result) -> str:
    """Exit code 1 and one error line, the last (a progress bar may come before it), no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("predict:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def _snapshot(folder: Path) -> dict:
    """Every file under a folder (hidden ones too) with its size, modification time and inode."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


def _state(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def _epochs(run_dir: Path) -> list[int]:
    return [row["epoch"] for row in _state(run_dir)["history"]]


def _start_held(command, hold: Path) -> subprocess.Popen:
    """Start `command` under the harness and return once it writes its first file in the run folder, held
    there (the folder locked) until `hold` exists."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=_env(hold=str(hold)))
    for line in process.stdout:
        if line.startswith("HARNESS "):
            return process
    raise AssertionError(f"no write announced (exit {process.wait()})")


# A second process on one run folder.


@pytest.mark.slow
def test_a_second_process_is_refused_at_once_and_a_killed_one_leaves_no_lock(road_data, tmp_path):
    from fcn.train import fast_config, train

    run_dir, hold = tmp_path / "run", tmp_path / "go"
    first = _start_held(_train(road_data, run_dir, 2), hold)
    try:
        before = _snapshot(run_dir)
        second = _run(_train(road_data, run_dir, 2, harness=False))
        line = _one_line_error(second)
        assert line.startswith(f"error: {run_dir}: in use by another fcn process (pid {first.pid} on "
                               f"{socket.gethostname()})"), line
        # A notebook's train(...) is refused the same way; neither touched a file.
        config = fast_config(data_dir=str(road_data), run_dir=str(run_dir), image_size=(32, 96), epochs=2,
                             max_train_images=4, max_val_images=2)
        with pytest.raises(RunInUseError, match=f"pid {first.pid}"):
            train(config, verbose=0)
        assert _snapshot(run_dir) == before
        hold.touch()
        output, _ = first.communicate(timeout=600)
        assert first.returncode == 0, output[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert _epochs(run_dir) == [1, 2]
    assert not (run_dir / ".lock").exists()

    # Killed while it holds the folder: the kernel drops the lock, and the rerun resumes at once.
    hold.unlink()
    third = _start_held(_train(road_data, run_dir, 3), hold)
    assert modelfile.load_model(run_dir / "best.keras").output_shape[-1] == 2  # readers are not held up
    third.send_signal(signal.SIGKILL)
    third.communicate(timeout=60)
    assert (run_dir / ".lock").exists()  # left by the kill, yet no one holds it
    again = _run(_train(road_data, run_dir, 3, harness=False))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming after epoch 2 of 3" in again.stdout
    assert _epochs(run_dir) == [1, 2, 3] and not (run_dir / ".lock").exists()


@pytest.mark.slow
def test_the_lock_is_held_by_one_holder_and_removed_with_a_folder_it_created(tmp_path):
    run = RunFolder(tmp_path / "new")
    other = [sys.executable, "-c", "import sys; from fcn.runs import RunFolder\n"
             "with RunFolder(sys.argv[1]).lock(): pass", str(run.path)]
    with run.lock() as created:
        assert created and run.lock_file.read_text().split() == [str(os.getpid()), socket.gethostname()]
        refused = subprocess.run(other, capture_output=True, text=True, timeout=120)
        assert "in use by another fcn process" in refused.stderr
        with pytest.raises(RunInUseError, match="in use by this process"), run.lock():
            pass
    assert not run.path.exists()  # created for the lock and left empty: gone with it
    assert subprocess.run(other, capture_output=True, timeout=120).returncode == 0
    # A folder that was there stays, without the lock file; a run's files stay with the folder.
    run.path.mkdir()
    with run.lock() as created:
        assert not created
        (run.path / "state.json").write_text("{}")
    assert sorted(p.name for p in run.path.iterdir()) == ["state.json"]


def test_a_folder_removed_under_its_lock_is_locked_afresh(tmp_path):
    # A failed first epoch removes the folder it created while holding it (RunFolder.discard); the next
    # holder must lock the new folder's file, not the removed one.
    run = RunFolder(tmp_path / "run")
    with run.lock() as created:
        run.discard(created)
        assert not run.path.exists()
    with run.lock() as created:
        assert created and run.lock_file.is_file()


# Writes that fail.


@pytest.mark.slow
def test_failed_writes_stop_with_one_line_and_the_rerun_resumes(road_data, tmp_path):
    run_dir = tmp_path / "run"
    # (the limit is set when this file is published for the n-th time, to so many bytes; the file whose
    # write then fails; the epochs committed after it)
    faults = [("history.csv 1 1000000", "checkpoint/epoch-0002.keras", 1),  # after epoch 1: a checkpoint
              ("config.json 1 100", "state.json", 1),  # epoch 2's commit record itself
              ("state.json 1 100", "history.csv", 2)]  # after epoch 2's commit: what derives from it
    for fsize, failing, committed in faults:
        earlier = {name: (run_dir / name).read_bytes() for name in ("state.json", "history.csv")
                   if (run_dir / name).exists()}
        result = _run(_train(road_data, run_dir, 3), env=_env(fsize=fsize))
        assert _one_line_error(result) == f"error: {run_dir / failing}: {TOO_LARGE}"
        assert _epochs(run_dir) == list(range(1, committed + 1))
        assert not _temporary_files(run_dir), _temporary_files(run_dir)
        if failing != "checkpoint/epoch-0002.keras":  # the first run wrote epoch 1 itself
            assert (run_dir / failing).read_bytes() == earlier[failing]
        assert modelfile.load_model(run_dir / "best.keras").output_shape[-1] == 2
    # And at a random announced write of epoch 3 or 4 (seeded): wherever it lands, the same promise.
    at = random.Random(0).randint(2, 9)
    result = _run(_train(road_data, run_dir, 4), env=_env(fsize=f"* {at} 100"))
    if result.returncode:
        last = result.stderr.strip().splitlines()[-1]  # TensorBoard's C++ writer may log its own failure first
        assert result.returncode == 1 and last.startswith(f"error: {run_dir}/") and last.endswith(TOO_LARGE), last
        assert "Traceback" not in result.stderr
    assert not _temporary_files(run_dir), _temporary_files(run_dir)
    result = _run(_train(road_data, run_dir, 4, harness=False))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming after epoch" in result.stdout or "finished, 4 epochs" in result.stdout
    assert _epochs(run_dir) == [1, 2, 3, 4]
    assert [line.split(",")[0] for line in (run_dir / "history.csv").read_text().splitlines()[1:]] == ["1", "2", "3", "4"]
    assert sorted(p.name for p in (run_dir / "checkpoint").iterdir()) == ["epoch-0004.keras"]
    assert not _temporary_files(run_dir)


@pytest.mark.slow
def test_a_first_checkpoint_that_cannot_be_written_leaves_no_run(road_data, tmp_path):
    run_dir = tmp_path / "run"
    # From the start, no file may grow past 1 MB: the data and the model fit in memory, the checkpoint not.
    result = _run(_train(road_data, run_dir, 1, harness=False), preexec_fn=_file_limit(1 << 20))
    assert _one_line_error(result) == f"error: {run_dir / 'checkpoint' / 'epoch-0001.keras'}: {TOO_LARGE}"
    assert not run_dir.exists()  # nor its lock file: nothing looks like a run


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from fcn.model import build_fcn8

    info = modelfile.model_info("kitti_road", ("not road", "road"), (32, 96), "vgg16_mini", road_class=1)
    return modelfile.save_model(build_fcn8(2, encoder="vgg16_mini", weights=None),
                                tmp_path_factory.mktemp("model") / "model.keras", info)


@pytest.mark.slow
def test_predict_stops_at_the_result_it_cannot_write(road_data, model_file, tmp_path):
    images, out = road_data / "testing" / "image_2", tmp_path / "out"
    out.mkdir()
    earlier = {name: f"an earlier result {name}".encode() for name in ("um_road_000000.png", "umm_road_000000.png")}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    # The first result is written, then files are limited to 10 bytes: the second one cannot be.
    result = _run(_fcn("predict", "--model", model_file, "--input", images, "--output", out),
                  env=_env(fsize=".png 1 10"))
    assert _one_line_error(result) == f"error: {out / 'umm_road_000000.png'}: {TOO_LARGE}"
    assert (out / "um_road_000000.png").read_bytes() != earlier["um_road_000000.png"]  # the one written
    assert (out / "umm_road_000000.png").read_bytes() == earlier["umm_road_000000.png"]
    assert not _temporary_files(out)


@pytest.mark.slow
def test_a_failed_export_leaves_the_earlier_export_whole(model_file, tmp_path):
    output = tmp_path / "model.tflite"
    output.write_bytes(b"an earlier export")
    sidecar = output.with_name("model.tflite.json")
    sidecar.write_text('{"an earlier": "description"}')
    # The new description is published first; then files are limited, and the model itself cannot be written.
    result = _run(_fcn("export", "--model", model_file, "--format", "tflite", "--output", output),
                  env=_env(fsize="model.tflite.json 1 1000"))
    assert _one_line_error(result) == f"error: {output}: {TOO_LARGE}"
    assert output.read_bytes() == b"an earlier export"
    assert sidecar.read_text() == '{"an earlier": "description"}'
    assert not _temporary_files(tmp_path)


@pytest.mark.slow
def test_data_prepare_names_the_file_it_cannot_write_and_the_rerun_finishes(tmp_path):
    road = synthetic.write_kitti_road(tmp_path / "road", images_per_category=1, test_images_per_category=1,
                                      scale=0.1)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "data_road.zip", "w") as archive:  # stored: its members are larger than 2 KB
        for path in sorted(p for p in road.rglob("*") if p.is_file()):
            archive.write(path, "data_road/" + path.relative_to(road).as_posix())
    dest = tmp_path / "data"
    command = _fcn("data", "prepare", "kitti_road", "--dest", dest, "--mirror", mirror)
    # The download cannot be written: the part fetched so far stays for the next run.
    result = _run(command, preexec_fn=_file_limit(2048))
    assert _one_line_error(result) == f"error: {dest / 'kitti_road' / 'data_road.zip.part'}: {TOO_LARGE}"
    # Downloaded, then files are limited: unpacking fails, and leaves nothing half-unpacked.
    result = _run(command, env=_env(fsize="data_road.zip 1 2048"))
    line = _one_line_error(result)
    assert line.startswith(f"error: {dest / 'kitti_road' / 'data_road'}/") and line.endswith(TOO_LARGE), line
    assert sorted(p.name for p in (dest / "kitti_road").iterdir()) == ["data_road.zip"]
    # With room again: unpacked, counted (a synthetic archive has fewer frames than the official one).
    result = _run(command)
    assert "is not a complete kitti_road: training has 3 frames, the official archives 289" in _one_line_error(result)
    assert (dest / "kitti_road" / "data_road" / "training" / "image_2").is_dir()
    assert not list(dest.glob("*.extracting"))


def test_a_best_model_that_cannot_be_copied_leaves_the_earlier_one(tmp_path, monkeypatch):
    # Where hard links fail, best.keras is a copy: on a full disk it fails, and the earlier one stays.
    from fcn import runs

    source, target = tmp_path / "epoch-0002.keras", tmp_path / "best.keras"
    source.write_bytes(np.zeros(4096, np.uint8).tobytes())
    target.write_bytes(b"the earlier best")

    def no_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
    try:
        with pytest.raises(OSError, match=f"^{target}: {TOO_LARGE.replace('(', '[(]').replace(')', '[)]')}$"):
            runs._link_atomic(source, target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert target.read_bytes() == b"the earlier best" and sorted(tmp_path.iterdir()) == [target, source]


def test_a_video_cut_short_by_a_failed_write_is_not_published(tmp_path):
    # OpenCV's writer reports nothing when its writes fail: the finished file is checked before it is renamed.
    from fcn import video

    output = tmp_path / "out.mp4"
    output.write_bytes(b"an earlier video")
    frames = np.random.default_rng(0).integers(0, 255, (30, 96, 128, 3), np.uint8)  # noise: compresses badly
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OSError, match=f"^{output}: cannot write .the video came out incomplete"):
            with video._VideoWriter(output, 10.0) as writer:
                for frame in frames:
                    writer.write(frame)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert output.read_bytes() == b"an earlier video" and sorted(tmp_path.iterdir()) == [output]
    with video._VideoWriter(output, 10.0) as writer:  # with room: a whole video
        for frame in frames:
            writer.write(frame)
    assert video.is_complete_mp4(output) and not video.is_complete_mp4(_cut(output))


def _cut(path: Path) -> Path:
    cut = path.with_name("cut.mp4")
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut
