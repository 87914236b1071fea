"""Prediction and training throughput of FCN-8 encoders, side by side in one process.

    .venv/bin/python benchmarks/bench_speed.py [--image-size 160x576] [--repeats 5]

Prints a Markdown table: median images per second over `repeats` timed calls (after one warm-up call that
pays for tracing/compilation), for each encoder with and without XLA (`jit_compile`).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from fcn.cli import parse_image_size
from fcn.losses import MaskedSparseCrossEntropy
from fcn.model import build_fcn8


def _median_rate(step, images_per_call, repeats):
    step()  # warm-up: tracing and XLA compilation are not throughput
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return images_per_call / statistics.median(times)


def measure(encoder, jit_compile, image_size, batch_size, repeats):
    """(predict img/s, train img/s) for one configuration."""
    model = build_fcn8(2, encoder=encoder, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=MaskedSparseCrossEntropy(), jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch_size, *image_size, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 2, (batch_size, *image_size)).astype(np.int32))
    predict = _median_rate(lambda: model.predict_on_batch(images), batch_size, repeats)
    train = _median_rate(lambda: model.train_on_batch(images, labels), batch_size, repeats)
    return predict, train


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=parse_image_size, default=(160, 576))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--encoders", default="vgg16,vgg16_mini")
    args = parser.parse_args()
    print(f"image size {args.image_size[0]}x{args.image_size[1]}, batch {args.batch_size}, "
          f"median of {args.repeats}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}")
    print("| encoder | XLA | predict img/s | train img/s |\n| --- | --- | ---: | ---: |")
    for encoder in args.encoders.split(","):
        for jit_compile in (False, True):
            predict, train = measure(encoder, jit_compile, args.image_size, args.batch_size, args.repeats)
            print(f"| {encoder} | {'yes' if jit_compile else 'no'} | {predict:.2f} | {train:.2f} |", flush=True)


if __name__ == "__main__":
    main()
