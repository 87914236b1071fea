"""Training images/s with 1 and 2 workers (strategy multi_worker), as separate processes on this machine.

    .venv/bin/python benchmarks/bench_scaling.py [--workers 1,2] [--per-worker-batch 2] [--images 32] [--epochs 6]
    .venv/bin/python benchmarks/bench_scaling.py --fast        # a few minutes: checks that it runs

For each number of workers N it starts N processes that train the same model on the same synthetic KITTI
Road frames through fcn.train.train, on Keras' JAX backend (what multi_worker uses), joined by a TF_CONFIG of
loopback ports; one worker is the same engine with a cluster of one. The per-worker batch is fixed, so the
global batch is N times it (weak scaling, as when machines are added). A callback times the training part of
each epoch (from its start to the start of validation); the first two epochs pay for compilation and are
left out. Prints a Markdown table: images/s is the global batch times the steps over the median epoch time.

On one machine the workers share its cores, so this measures what the collectives cost rather than a
speed-up; on a cluster, compare the "seconds" of each epoch in history.csv (they include validation).
"""

import argparse
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The first two epochs are not timed: the first compiles the steps, and on JAX the second compiles the
# training step once more (measured: 35 s, 16 s, then about 1 s per epoch in --fast mode).
UNTIMED_EPOCHS = 2
FAST = dict(workers="1,2", per_worker_batch=2, images=8, epochs=4, image_size="32x96")
FULL = dict(workers="1,2", per_worker_batch=2, images=32, epochs=6, image_size="64x192")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="tiny sizes, four epochs: checks the script runs")
    parser.add_argument("--workers", help=f"worker counts to measure, comma-separated (default {FULL['workers']})")
    parser.add_argument("--per-worker-batch", type=int, help=f"images per worker per step (default {FULL['per_worker_batch']})")
    parser.add_argument("--images", type=int, help=f"training images per epoch (default {FULL['images']})")
    parser.add_argument("--epochs", type=int, help=f"epochs, the first {UNTIMED_EPOCHS} untimed (default {FULL['epochs']})")
    parser.add_argument("--image-size", help=f"HEIGHTxWIDTH (default {FULL['image_size']})")
    parser.add_argument("--encoder", default="vgg16_mini")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed for each measurement")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG_JSON", "TIMES_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in (FAST if args.fast else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.epochs <= UNTIMED_EPOCHS:
        parser.error(f"--epochs must be more than {UNTIMED_EPOCHS}: the first {UNTIMED_EPOCHS} compile and are not timed")
    return args


def run_worker(config_path: str, times_path: str) -> None:
    """One worker: train as configured, writing the seconds of each epoch's training part to times_path."""
    import keras

    from fcn.train import TrainConfig, train

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start, self.seconds = 0.0, []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_test_begin(self, logs=None):  # validation starts right after the epoch's training steps
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    train(TrainConfig.load(config_path), verbose=0, extra_callbacks=[timer])
    Path(times_path).write_text(json.dumps(timer.seconds))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def measure(workers: int, data_dir: Path, scratch: Path, args) -> dict:
    """Start `workers` processes on one training and return the chief's timing."""
    from fcn.train import fast_config

    height, width = (int(v) for v in args.image_size.split("x"))
    global_batch = workers * args.per_worker_batch
    config = fast_config(data_dir=str(data_dir), run_dir=str(scratch / f"run-{workers}"), encoder=args.encoder,
                         image_size=(height, width), batch_size=global_batch, epochs=args.epochs,
                         max_train_images=args.images, max_val_images=2, strategy="multi_worker")
    config_path = scratch / f"config-{workers}.json"
    config_path.write_text(json.dumps(dataclasses.asdict(config)))
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(workers)]
    processes = []
    try:
        for index in range(workers):
            tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CONFIG": json.dumps(tf_config)}
            log = open(scratch / f"worker-{workers}-{index}.log", "w")
            processes.append(subprocess.Popen(
                [sys.executable, __file__, "--worker", str(config_path), str(scratch / f"times-{workers}-{index}.json")],
                stdout=log, stderr=subprocess.STDOUT, env=env))
            log.close()
        for index, process in enumerate(processes):
            if process.wait(timeout=args.timeout) != 0:
                log = (scratch / f"worker-{workers}-{index}.log").read_text()
                raise RuntimeError(f"worker {index} of {workers} failed:\n{log[-3000:]}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    seconds = json.loads((scratch / f"times-{workers}-0.json").read_text())
    steps = args.images // global_batch
    median = statistics.median(seconds[UNTIMED_EPOCHS:])
    return dict(workers=workers, global_batch=global_batch, steps=steps, seconds=median, epoch_seconds=seconds,
                images_per_second=steps * global_batch / median)


def markdown_table(rows: list[dict]) -> str:
    base = rows[0]["images_per_second"] / rows[0]["workers"]
    lines = ["| workers | global batch | steps/epoch | s/epoch (median) | images/s | speed-up | efficiency |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        speedup = row["images_per_second"] / rows[0]["images_per_second"]
        efficiency = row["images_per_second"] / (base * row["workers"])
        lines.append(f"| {row['workers']} | {row['global_batch']} | {row['steps']} | {row['seconds']:.2f} | "
                     f"{row['images_per_second']:.2f} | {speedup:.2f}x | {efficiency:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return run_worker(*args.worker)
    from fcn.data import synthetic

    counts = [int(v) for v in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="fcn-bench-scaling-") as scratch:
        scratch = Path(scratch)
        # 80% of the frames train; 2 validation frames are used, to keep each epoch's validation short.
        per_category = int((args.images + 2) / 0.8 / 3) + 2
        data_dir = synthetic.write_kitti_road(scratch / "data", images_per_category=per_category,
                                              test_images_per_category=1, scale=0.25, seed=0)
        rows = []
        for workers in counts:
            if args.images % (workers * args.per_worker_batch):
                raise ValueError(f"--images {args.images} must be a multiple of the global batch "
                                 f"{workers * args.per_worker_batch} ({workers} workers)")
            rows.append(measure(workers, data_dir, scratch, args))
            epochs = ", ".join(f"{s:.2f}" for s in rows[-1]["epoch_seconds"])
            print(f"{workers} worker(s): {rows[-1]['images_per_second']:.2f} images/s (training seconds of each "
                  f"epoch: {epochs})", flush=True)
    print(f"\n{args.encoder}, {args.image_size}, {args.per_worker_batch} images per worker per step, "
          f"{args.images} training images, median of the last {args.epochs - UNTIMED_EPOCHS} epochs, Keras "
          f"{_version('keras')} on JAX {_version('jax')}, {os.cpu_count()} CPU cores:\n")
    print(markdown_table(rows))


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "?"


if __name__ == "__main__":
    main()
