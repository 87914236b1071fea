"""One training-step measurement in a process of its own (bench_speed.py's "settings" section starts these).

    KERAS_BACKEND=jax .venv/bin/python benchmarks/train_step_worker.py --encoder vgg16 --image-size 160x576

Settings that only take effect at start-up (the Keras backend, oneDNN, thread pools) need a fresh process, and
a precision (--precision bfloat16: Keras' mixed_bfloat16) is best measured in one too. Imports Keras and fcn's
model only, so it runs under any Keras backend. Prints one JSON line:
{"backend", "precision", "images_per_second": {median, min, max}, "forward_images_per_second": {...}, ...}.
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
from fcn.precision import POLICIES


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="vgg16_mini")
    parser.add_argument("--image-size", default="160x576")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="jit_compile=True (TensorFlow; JAX always compiles)")
    parser.add_argument("--precision", choices=sorted(POLICIES), default="float32")
    parser.add_argument("--train-only", action="store_true",
                        help="time the training step only (forward_images_per_second is then null)")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.image_size.split("x"))
    keras.config.set_dtype_policy(POLICIES[args.precision])
    model = build_fcn8(2, encoder=args.encoder, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=MaskedSparseCrossEntropy(),
                  jit_compile=args.xla if keras.backend.backend() == "tensorflow" else "auto")
    model.optimizer.build(model.trainable_variables)  # else the first step is traced twice (fcn/train.py)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch_size, height, width, 3)).astype(np.float32)
    labels = rng.integers(0, 2, (args.batch_size, height, width)).astype(np.int32)
    model.train_on_batch(images, labels)  # tracing / compilation
    rates = _rates(lambda: model.train_on_batch(images, labels), args.repeats, args.batch_size)
    forward = None
    if not args.train_only:  # a forward pass is traced (compiled) on its own: skipped where nobody reads it
        model.predict_on_batch(images)  # tracing
        forward = _rates(lambda: model.predict_on_batch(images), args.repeats, args.batch_size)
    print(json.dumps({"backend": keras.backend.backend(), "encoder": args.encoder, "batch_size": args.batch_size,
                      "xla": args.xla, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
                      "precision": args.precision, "images_per_second": rates, "forward_images_per_second": forward}))


def _rates(call, repeats: int, batch_size: int) -> dict:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        rates.append(batch_size / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


if __name__ == "__main__":
    main()
