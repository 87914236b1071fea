"""One training-step measurement in a process of its own (bench_speed.py's "settings" section starts these).

    KERAS_BACKEND=jax .venv/bin/python benchmarks/train_step_worker.py --encoder vgg16 --image-size 160x576

Settings that only take effect at start-up (the Keras backend, oneDNN, thread pools) need a fresh process.
Imports Keras and fcn's model only, so it runs under any Keras backend. Prints one JSON line:
{"backend", "images_per_second": {median, min, max}, ...}.
"""

import argparse
import json
import os
import statistics
import time

import fcn  # noqa: F401 - first: TensorFlow (if it is the backend) is then imported quietly

# isort: split
import keras
import numpy as np

from fcn.losses import MaskedSparseCrossEntropy
from fcn.model import build_fcn8


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="vgg16_mini")
    parser.add_argument("--image-size", default="160x576")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="jit_compile=True (TensorFlow; JAX always compiles)")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.image_size.split("x"))
    model = build_fcn8(2, encoder=args.encoder, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=MaskedSparseCrossEntropy(),
                  jit_compile=args.xla if keras.backend.backend() == "tensorflow" else "auto")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch_size, height, width, 3)).astype(np.float32)
    labels = rng.integers(0, 2, (args.batch_size, height, width)).astype(np.int32)
    model.train_on_batch(images, labels)  # tracing / compilation
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        rates.append(args.batch_size / (time.perf_counter() - start))
    print(json.dumps({"backend": keras.backend.backend(), "encoder": args.encoder, "batch_size": args.batch_size,
                      "xla": args.xla, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
                      "images_per_second": {"median": statistics.median(rates), "min": min(rates),
                                            "max": max(rates)}}))


if __name__ == "__main__":
    main()
