"""Training on several workers (fcn/distribute.py), with real `fcn train` processes on this machine.

Two workers (CPU, loopback ports, TF_CONFIG, Keras' JAX backend) train the tiny vgg16_mini model on
synthetic KITTI Road with a global batch of 4 (2 images per worker); worker 1 is SIGKILLed during the second
epoch, the chief must then stop by itself within a bounded time, and both are started again. Beside them one worker trains with a batch of 4 on the same data, stopped
after the first epoch and continued the same way (a restart draws dropout's masks afresh, so both runs
restart at the same point). Checked: (a) both end with the same weights, (b) only the chief wrote in the run
folder, (c) the chief stopped with one line naming the lost worker and the restart resumed after the last
committed epoch.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fcn import cli, distribute, modelfile
from fcn.data import synthetic
from fcn.train import TrainConfig, build_datasets, fast_config, train

AUDIT = Path(__file__).with_name("write_audit.py")
EPOCHS = 2
TRAIN_ARGS = ["train", "--dataset", "kitti_road", "--fast", "--image-size", "32x96", "--batch-size", "4",
              "--max-train-images", "8", "--max-val-images", "2"]
# Float32 sums over a batch split in two (two partial gradients, then an all-reduce) round differently from
# one sum over it; Adam divides near-zero gradients by their own size, which turns that into differences in
# a handful of weights. Measured, as a share of the largest weight (0.88): 1.3e-7 to 2.4e-7 here (4 steps),
# 3.2e-6 after 6 steps without a restart. The bound: 1e-5 of the largest weight.
TOLERANCE = 1e-5
RUN_FILES = {"config.json", "state.json", "history.csv", "best.keras", "final.keras", "checkpoint", "logs"}


@pytest.fixture(scope="module")
def road_data(tmp_path_factory) -> Path:
    # 9 training and 3 validation frames; 8 and 2 are used, so every batch of 4 is full.
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=4,
                                      test_images_per_category=1, scale=0.25, seed=5)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _launch(args, env, log: Path, audit: Path | None = None, run_dir: Path | None = None) -> subprocess.Popen:
    if audit is not None:
        env = {**env, "WRITE_AUDIT_LOG": str(audit), "WRITE_AUDIT_DIR": str(run_dir)}
    with open(log, "w") as out:  # a file, not a pipe: nobody has to keep reading it for the worker to go on
        return subprocess.Popen([sys.executable, "-u", *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def _start_workers(data_dir: Path, run_dir: Path, root: Path, attempt: int, env: dict) -> list[subprocess.Popen]:
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        workers.append(_launch([str(AUDIT), *_train_args(data_dir, run_dir, EPOCHS), "--strategy", "multi_worker"],
                               {**env, "TF_CONFIG": tf_config}, root / f"worker{index}-{attempt}.log",
                               audit=root / f"writes{index}-{attempt}.txt", run_dir=run_dir))
    return workers


def _train_args(data_dir: Path, run_dir: Path, epochs: int) -> list[str]:
    return [*TRAIN_ARGS, "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--epochs", str(epochs)]


def _wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{log.name}: no line {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _committed_epochs(run_dir: Path) -> int:
    state = run_dir / "state.json"
    return json.loads(state.read_text())["epochs_done"] if state.exists() else 0


@pytest.fixture(scope="module")
def runs(road_data, tmp_path_factory):
    """Both trainings, run side by side (about two minutes on two CPU cores)."""
    root = tmp_path_factory.mktemp("distributed")
    # Compiled steps are cached on disk, so the restarted processes do not compile them again.
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_COMPILATION_CACHE_DIR": str(root / "jax-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    env.pop("TF_CONFIG", None)
    one, two = root / "one", root / "two"
    processes = []
    try:
        single = _launch(["-m", "fcn", *_train_args(road_data, one, 1)], env, root / "one-1.log")
        workers = _start_workers(road_data, two, root, 1, env)
        processes += [single, *workers]
        _wait_for_line(root / "worker0-1.log", f"Epoch 2/{EPOCHS}", workers[0], timeout=300)
        workers[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        # The chief cannot finish the epoch without the lost worker's half of each batch: it must stop by
        # itself, within JAX's heartbeat timeout at the latest (fcn/distribute.py), not wait forever.
        chief_code = workers[0].wait(timeout=distribute.HEARTBEAT_SECONDS + 60)
        chief_seconds = time.monotonic() - killed
        committed_after_kill = _committed_epochs(two)
        codes_before = [process.wait(timeout=300) for process in (single, *workers)]
        single_again = _launch(["-m", "fcn", *_train_args(road_data, one, EPOCHS)], env, root / "one-2.log")
        workers_again = _start_workers(road_data, two, root, 2, env)
        processes += [single_again, *workers_again]
        codes_after = [process.wait(timeout=300) for process in (single_again, *workers_again)]
        yield dict(root=root, one=one, two=two, codes_before=codes_before, codes_after=codes_after,
                   committed_after_kill=committed_after_kill, chief_code=chief_code, chief_seconds=chief_seconds,
                   chief_pids={workers[0].pid, workers_again[0].pid})
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def _logs(runs, *names: str) -> str:
    return "\n".join(f"--- {name}\n{(runs['root'] / name).read_text()[-4000:]}" for name in names)


def _check_finished(runs) -> None:
    logs = _logs(runs, "one-2.log", "worker0-2.log", "worker1-2.log")
    assert runs["codes_after"] == [0, 0, 0], logs
    assert runs["codes_before"][0] == 0, _logs(runs, "one-1.log")


@pytest.mark.slow
def test_two_workers_end_with_the_weights_of_one_worker(runs):
    _check_finished(runs)
    one = modelfile.load_model(runs["one"] / "final.keras")
    two = modelfile.load_model(runs["two"] / "final.keras")
    scale = max(float(np.max(np.abs(w))) for w in one.get_weights())
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(one.get_weights(), two.get_weights(), strict=True))
    print(f"largest weight difference {worst:.2e}, {worst / scale:.2e} of the largest weight {scale:.3f}")
    assert worst <= TOLERANCE * scale
    history = [json.loads((runs[name] / "state.json").read_text())["history"] for name in ("one", "two")]
    for key in ("loss", "val_loss", "val_maxf"):
        np.testing.assert_allclose([row[key] for row in history[1]], [row[key] for row in history[0]], rtol=1e-4)


@pytest.mark.slow
def test_only_the_chief_writes_in_the_run_folder(runs):
    _check_finished(runs)
    root = runs["root"]
    for attempt in (1, 2):
        assert (root / f"writes1-{attempt}.txt").read_text() == "", f"worker 1 wrote in the run folder ({attempt})"
        chief = (root / f"writes0-{attempt}.txt").read_text()
        assert "state.json" in chief and "checkpoint" in chief, chief  # the record does see the chief's writes
    # TensorBoard writes from C++, out of the audit's sight; its file names end in <host>.<pid>.<n>.v2.
    events = list((runs["two"] / "logs").rglob("events.out.tfevents.*"))
    assert events and {int(path.name.split(".")[-3]) for path in events} <= runs["chief_pids"], events
    assert {path.name for path in runs["two"].iterdir()} == RUN_FILES
    assert [path.name for path in (runs["two"] / "checkpoint").iterdir()] == [f"epoch-{EPOCHS:04d}.keras"]


@pytest.mark.slow
def test_a_killed_worker_and_its_restarted_peers_resume_after_the_last_committed_epoch(runs):
    _check_finished(runs)
    assert runs["committed_after_kill"] == 1, _logs(runs, "worker0-1.log")
    # Worker 1 was killed; the chief stopped by itself, with one line saying which worker was lost.
    assert runs["codes_before"][2] == -signal.SIGKILL and runs["chief_code"] == 1, _logs(runs, "worker0-1.log")
    last = (runs["root"] / "worker0-1.log").read_text().strip().splitlines()[-1]
    assert last.startswith("error: worker 1 of 2 (127.0.0.1:") and "was lost (" in last, last
    assert "start every worker again to resume" in last
    print(f"the chief stopped {runs['chief_seconds']:.1f} s after worker 1 was killed")
    for index in (0, 1):
        lines = (runs["root"] / f"worker{index}-2.log").read_text().splitlines()
        assert any(f"resuming after epoch 1 of {EPOCHS}" in line for line in lines), lines[-40:]
        assert [line for line in lines if line.startswith("Epoch ")][0] == f"Epoch 2/{EPOCHS}"
        assert not any("Traceback" in line for line in lines)
    state = json.loads((runs["two"] / "state.json").read_text())
    assert [row["epoch"] for row in state["history"]] == list(range(1, EPOCHS + 1))


# Checks without a cluster (TensorFlow backend, in this process).


def test_tf_config_names_the_workers_and_this_one():
    workers = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert distribute.cluster_from_tf_config(json.dumps(workers)) == distribute.Cluster(("a:1", "b:2"), 1)
    chief = {"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}
    assert distribute.cluster_from_tf_config(json.dumps(chief)).is_chief
    for bad, message in [(None, "needs TF_CONFIG"), ("{", "not a cluster"),
                         (json.dumps({**workers, "task": {"type": "worker", "index": 2}}), "not one of the 2"),
                         (json.dumps({**workers, "task": {"type": "ps", "index": 0}}), "not a cluster")]:
        with pytest.raises(ValueError, match=message):
            distribute.cluster_from_tf_config(bad)


def test_strategy_is_checked_before_any_work():
    with pytest.raises(ValueError, match="unknown strategy 'horovod'"):
        TrainConfig(strategy="horovod")
    assert TrainConfig(strategy="multi_worker").strategy == "multi_worker"  # a notebook's STRATEGY parameter
    required = ["train", "--data-dir", "d", "--run-dir", "r"]
    assert cli.build_parser().parse_args([*required, "--strategy", "mirrored"]).strategy == "mirrored"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([*required, "--strategy", "horovod"])
    # Keras 3 cannot train under tf.distribute.MultiWorkerMirroredStrategy: the message says what to do.
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
        distribute.make_placement("multi_worker")


def test_each_worker_gets_its_slice_of_the_same_global_batches(road_data):
    config = fast_config(data_dir=str(road_data), image_size=(32, 96), batch_size=4, max_train_images=7,
                         max_val_images=2, epochs=2, seed=3)
    global_batches = [images.numpy() for images, _ in build_datasets(config)[0]]
    full = [batch for batch in global_batches if len(batch) == 4]
    assert len(full) == 2 and len(global_batches) == 4  # two epochs of 7: a batch of 4 and a last one of 3
    slices = [list(distribute.Placement("multi_worker", num_workers=2, worker_index=index)
                   .shard_batches(build_datasets(config)[0], 4, len(full))) for index in (0, 1)]
    for step, batch in enumerate(full):
        joined = np.concatenate([slices[0][step][0].numpy(), slices[1][step][0].numpy()])
        np.testing.assert_array_equal(joined, batch)


@pytest.mark.slow
def test_mirrored_run_resumes_under_the_default_strategy(road_data, tmp_path):
    settings = dict(data_dir=str(road_data), run_dir=str(tmp_path / "run"), image_size=(32, 96),
                    max_train_images=4, max_val_images=2)
    _, history = train(fast_config(strategy="mirrored", epochs=1, **settings), verbose=0)
    assert len(history["loss"]) == 1
    _, history = train(fast_config(strategy="default", epochs=2, **settings), verbose=0)
    assert len(history["loss"]) == 2 and json.loads((tmp_path / "run" / "config.json").read_text())["strategy"] == "default"


def test_a_lost_peer_is_named_in_one_line_and_other_errors_keep_their_own():
    cluster = distribute.Cluster(("10.0.0.1:1234", "10.0.0.2:1234"), 0)
    gloo = RuntimeError("UNKNOWN: Gloo all-reduce failed: [external/gloo/gloo/transport/tcp/pair.cc:538] Read "
                        "error [10.0.0.1]:61114: Connection reset by peer\nmore")
    assert distribute.lost_worker_message(gloo, cluster) == (
        "worker 1 of 2 (10.0.0.2:1234) was lost (Connection reset by peer); the run folder keeps its last "
        "committed epoch: start every worker again to resume")
    chief_lost = distribute.lost_worker_message(gloo, distribute.Cluster(cluster.addresses, 1))
    assert chief_lost.startswith("worker 0 of 2 (10.0.0.1:1234, the chief) was lost")
    assert distribute.lost_worker_message(ValueError("runs/x: in use by another fcn process"), cluster) == \
        "runs/x: in use by another fcn process"
