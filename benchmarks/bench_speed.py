"""Training and inference speed against this machine's own limit, side by side in one process.

    .venv/bin/python benchmarks/bench_speed.py [--repeats 5] [--encoders vgg16,vgg16_mini,mobilenet_v2,...]
    .venv/bin/python benchmarks/bench_speed.py --fast          # seconds, tiny sizes (what CI runs)

Sections (--sections picks some):
  ceiling   sustained GFLOP/s of a large 3x3 convolution and a large matrix product: the machine's limit, in
            float32 and, where the CPU has native bfloat16 (fcn/precision.py), in bfloat16
  encoders  per encoder: forward and training-step images/s at the training size, forward at full KITTI size
            (375x1242), FLOPs per image (fcn/flops.py) and the achieved GFLOP/s as a share of the ceiling
  pipeline  the tf.data input pipeline alone (decode + augment + resize + batch), with and without the
            in-memory cache, against what a training step consumes
  baseline  the same model fed as the original TF1 project fed it (a Python generator reading and resizing
            each batch with OpenCV, no prefetch, no cache) into model.fit, against fcn's training path
  tflite    a trained model (--model, a run's best.keras) through TFLite float32, float16 and int8
            (calibrated on training images): latency per image against Keras float32, and the validation
            metric of each (MaxF per KITTI Road category, or mIoU) on the run's validation split
  settings  the training step of one encoder under the settings the field tunes, each in a fresh process
            (benchmarks/train_step_worker.py): XLA, oneDNN on/off, thread pools, batch size, Keras' JAX
            backend; images/s and the share of the convolution ceiling. Then every encoder in bfloat16
            (Keras' mixed_bfloat16) against float32, forward and training step, each against the ceiling of its
            own precision; a CPU without native bfloat16 is reported as such, not timed through emulation
  video     `fcn video` end to end (decode an mp4 -> network at the training size -> overlay -> encode) on a
            synthetic drive at KITTI's full size, per light encoder, Keras float32 and TFLite int8: frames/s
Every figure is the median of --repeats timed calls (after one warm-up that pays for tracing/compilation),
with the spread (min-max) beside it. Prints Markdown tables and writes --json.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fcn  # noqa: F401 - first: TensorFlow is then imported without its start-up notices

# isort: split
import cv2
import keras
import numpy as np
import tensorflow as tf

from fcn import export, flops, modelfile, precision, predict, tflite_runner, video
from fcn.cli import parse_image_size
from fcn.data import get_dataset, synthetic
from fcn.imageio import write_bytes_atomic
from fcn.losses import MaskedSparseCrossEntropy
from fcn.model import build_fcn8
from fcn.train import TrainConfig, build_datasets, list_split

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FCN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
KITTI_FULL_SIZE = (375, 1242)
SECTIONS = ("ceiling", "encoders", "pipeline", "baseline", "tflite", "settings", "video")
# (name, environment, worker flags): what TensorFlow and Keras let a person tune for a CPU training step.
SETTINGS = (
    ("TensorFlow, defaults", {}, []),
    ("TensorFlow, XLA", {}, ["--xla"]),
    ("TensorFlow, oneDNN off", {"TF_ENABLE_ONEDNN_OPTS": "0"}, []),
    ("TensorFlow, 1 inter-op thread", {"TF_NUM_INTEROP_THREADS": "1"}, []),
    ("TensorFlow, XLA, 1 inter-op thread", {"TF_NUM_INTEROP_THREADS": "1"}, ["--xla"]),
    ("TensorFlow, batch x2", {}, ["--batch-scale", "2"]),
    ("JAX backend (always compiled)", {"KERAS_BACKEND": "jax"}, []),
)
# The ceiling's kernels run this many times in a row per timed call (see measure_ceiling).
CEILING_CHAIN = 4
NO_BFLOAT16 = "no native bfloat16 on this CPU: not timed (it would be emulated, slower than float32)"
VIDEO_ENCODERS = "vgg16_mini,mobilenet_v2,mobilenet_v3_large"
# --fast: every section on tiny sizes, so CI proves the script runs end to end. Its worker processes compile
# with XLA's optimisation passes off (worker_environment): on a few tiny steps those passes cost more than they
# save (the XLA and JAX workers' compiles were most of the section's time), and nobody reads fast-mode speeds.
FAST = dict(image_size=(64, 192), full_size=(96, 320), encoders="vgg16_mini", repeats=2, batch_size=2,
            conv=(1, 32, 64, 64), matmul=256, steps=3, max_val_images=2, video_encoders="vgg16_mini",
            video_frames=6, settings_encoder="vgg16_mini",
            worker_environment={"XLA_FLAGS": "--xla_backend_optimization_level=0"})
FULL = dict(image_size=(160, 576), full_size=KITTI_FULL_SIZE, encoders="vgg16,vgg16_mini,mobilenet_v2,mobilenet_v3_large",
            repeats=5, batch_size=4, conv=(4, 64, 128, 256), matmul=4096, steps=12, video_encoders=VIDEO_ENCODERS,
            video_frames=90, settings_encoder="vgg16", worker_environment={})


def timed(call, repeats: int) -> dict:
    """Seconds per call: median, min and max of `repeats` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def per_second(seconds: dict, amount: float) -> dict:
    """Seconds per call -> amount per second (the fastest call gives the max)."""
    return {"median": amount / seconds["median"], "min": amount / seconds["max"], "max": amount / seconds["min"]}


def spread(rate: dict, digits: int = 2) -> str:
    return f"{rate['median']:.{digits}f} ({rate['min']:.{digits}f}-{rate['max']:.{digits}f})"


# ----------------------------------------------------------------------------------------------------
# The ceiling.


def measure_ceiling(conv_shape, matmul_size, repeats, chain=CEILING_CHAIN) -> dict:
    """Sustained GFLOP/s of a large 3x3 convolution (channels in = out) and of a square matrix product, in float32
    and, on a CPU with native bfloat16, in bfloat16 ("bfloat16": {conv3x3, matmul}, or a note why not).

    Each timed call runs `chain` of them back to back inside one graph, each on the last one's output, and
    returns only a sum: a single op per call measured its output's copy and the executor's start-up too, and
    its median swung between half and all of the machine's peak from one call to the next. The weights are
    scaled to keep the activations near 1 (denormal numbers would slow the arithmetic down).
    """
    result = {**_ceiling_in(tf.float32, conv_shape, matmul_size, repeats, chain),
              "conv_shape": list(conv_shape), "matmul_size": matmul_size, "chain": chain}
    result["bfloat16"] = (_ceiling_in(tf.bfloat16, conv_shape, matmul_size, repeats, chain)
                          if precision.has_native_bfloat16() else NO_BFLOAT16)
    return result


def _ceiling_in(dtype, conv_shape, matmul_size, repeats, chain) -> dict:
    rng = np.random.default_rng(0)
    batch, height, width, channels = conv_shape
    images = tf.cast(rng.standard_normal(conv_shape, np.float32), dtype)
    kernel = tf.cast((rng.standard_normal((3, 3, channels, channels)) / np.sqrt(9 * channels)).astype(np.float32),
                     dtype)
    a = tf.cast(rng.standard_normal((matmul_size, matmul_size), np.float32), dtype)
    b = tf.cast((rng.standard_normal((matmul_size, matmul_size)) / np.sqrt(matmul_size)).astype(np.float32), dtype)

    @tf.function
    def convolutions():
        x = images
        for _ in range(chain):
            x = tf.nn.conv2d(x, kernel, 1, "SAME")
        return tf.reduce_sum(tf.cast(x, tf.float32))

    @tf.function
    def products():
        x = a
        for _ in range(chain):
            x = tf.linalg.matmul(x, b)
        return tf.reduce_sum(tf.cast(x, tf.float32))

    conv_flops = chain * 2 * batch * height * width * 9 * channels * channels
    matmul_flops = chain * 2 * matmul_size**3
    return {"conv3x3": per_second(timed(lambda: convolutions().numpy(), repeats), conv_flops / 1e9),
            "matmul": per_second(timed(lambda: products().numpy(), repeats), matmul_flops / 1e9)}


# ----------------------------------------------------------------------------------------------------
# Encoders.


def _random_batch(batch_size, image_size, num_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.uniform(0, 255, (batch_size, *image_size, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, num_classes, (batch_size, *image_size)).astype(np.int32))
    return images, labels


def compiled_model(encoder, jit_compile=False):
    model = build_fcn8(2, encoder=encoder, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=MaskedSparseCrossEntropy(), jit_compile=jit_compile)
    model.optimizer.build(model.trainable_variables)  # else the first step is traced twice (fcn/train.py)
    return model


def measure_encoder(encoder, image_size, full_size, batch_size, repeats, jit_compile) -> dict:
    """Forward and training-step images/s, FLOPs per image and the achieved GFLOP/s of one encoder."""
    model = compiled_model(encoder, jit_compile)
    images, labels = _random_batch(batch_size, image_size)
    full_images, _ = _random_batch(1, full_size)
    forward_flops = flops.count_flops(build_fcn8(2, encoder=encoder, weights=None, input_shape=(*image_size, 3)))
    full_flops = flops.count_flops(build_fcn8(2, encoder=encoder, weights=None, input_shape=(*full_size, 3)))
    forward = per_second(timed(lambda: model.predict_on_batch(images), repeats), batch_size)
    train = per_second(timed(lambda: model.train_on_batch(images, labels), repeats), batch_size)
    full = per_second(timed(lambda: model.predict_on_batch(full_images), max(1, repeats // 2)), 1)
    return {"encoder": encoder, "xla": jit_compile, "gflop_per_image": forward_flops / 1e9,
            "gflop_per_full_image": full_flops / 1e9, "forward": forward, "train": train, "forward_full": full,
            "forward_gflops": forward["median"] * forward_flops / 1e9,
            "train_gflops": train["median"] * flops.TRAINING_STEP_FORWARDS * forward_flops / 1e9}


# ----------------------------------------------------------------------------------------------------
# Input pipeline, and the TF1-style baseline.


def bench_data(fast: bool, work_dir: Path) -> tuple[str, Path]:
    """(dataset, root): the shared KITTI Road copy, or synthetic KITTI Road in fast mode or without it."""
    root = SHARED_DATA / "kitti_road_half" / "data_road"
    if fast or not root.is_dir():
        root = synthetic.write_kitti_road(work_dir / "synthetic", seed=0, images_per_category=4,
                                          test_images_per_category=1, scale=0.25)
    return "kitti_road", root


def pipeline_config(dataset, root, image_size, batch_size, cache, encoder="vgg16_mini", jit_compile=False):
    return TrainConfig(dataset=dataset, data_dir=str(root), run_dir=str(root.parent / "unused-run"), encoder=encoder,
                       weights=None, image_size=image_size, batch_size=batch_size, epochs=1000,
                       cache_decoded="on" if cache else "off", jit_compile=jit_compile)


def measure_pipeline(dataset, root, image_size, batch_size, steps, repeats) -> dict:
    """Images/s the training input pipeline delivers, without and with the decoded-image cache."""
    results = {}
    for cache in (False, True):
        train_ds, _, train_samples, _ = build_datasets(pipeline_config(dataset, root, image_size, batch_size, cache))
        batches = iter(train_ds)
        # The first epoch fills the cache: take a whole epoch before timing.
        for _ in range(-(-len(train_samples) // batch_size)):
            next(batches)
        results["cached" if cache else "uncached"] = per_second(
            timed(lambda batches=batches: [next(batches) for _ in range(steps)], repeats), steps * batch_size)
    return results


def tf1_style_batches(samples, read_label, image_size, batch_size, seed=0):
    """Batches as the original TF1 project made them: read and resize with OpenCV in Python, one by one."""
    rng = np.random.default_rng(seed)
    height, width = image_size
    while True:
        order = rng.permutation(len(samples))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chosen = [samples[i] for i in order[start:start + batch_size]]
            images = [cv2.resize(cv2.imread(str(s.image))[..., ::-1], (width, height)) for s in chosen]
            labels = [cv2.resize(read_label(s.label), (width, height), interpolation=cv2.INTER_NEAREST)
                      for s in chosen]
            yield np.asarray(images, np.float32), np.asarray(labels, np.int32)


class _StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def fit_rates(model, data, skip_steps, steps, repeats, batch_size) -> list[float]:
    """Images/s of one model.fit call over `repeats` chunks of `steps` steps, after `skip_steps` warm-up steps."""
    times = _StepTimes()
    model.fit(data, steps_per_epoch=skip_steps + repeats * steps, epochs=1, verbose=0, callbacks=[times],
              shuffle=False)
    ends = times.ends[skip_steps - 1:]
    return [steps * batch_size / (ends[(i + 1) * steps] - ends[i * steps]) for i in range(repeats)]


def measure_baseline(dataset, root, encoder, image_size, batch_size, steps, repeats, jit_compile) -> dict:
    """Training images/s of fcn's path (tf.data, cache, prefetch) and of the TF1-style generator, same model.

    fcn's first epoch fills the decoded-image cache; it is left out with the tracing step, as a long run
    amortises it.
    """
    config = pipeline_config(dataset, root, image_size, batch_size, cache=True, encoder=encoder,
                             jit_compile=jit_compile)
    train_ds, _, train_samples, _ = build_datasets(config)
    first_epoch = -(-len(train_samples) // batch_size)
    generator = tf1_style_batches(train_samples, get_dataset(dataset).read_label, image_size, batch_size)
    fcn_rates = fit_rates(compiled_model(encoder, jit_compile), train_ds, first_epoch, steps, repeats, batch_size)
    plain_rates = fit_rates(compiled_model(encoder), generator, 1, steps, repeats, batch_size)
    # The generator alone: how much of a TF1-style step its input costs, the most any input pipeline can save.
    feed = per_second(timed(lambda: [next(generator) for _ in range(steps)], repeats), steps * batch_size)
    return {"encoder": encoder, "xla": jit_compile, "fcn": _summary(fcn_rates), "tf1_style": _summary(plain_rates),
            "ratio": statistics.median(fcn_rates) / statistics.median(plain_rates), "tf1_feed_alone": feed,
            "tf1_input_share": statistics.median(plain_rates) / feed["median"]}


def _summary(rates) -> dict:
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


# ----------------------------------------------------------------------------------------------------
# TFLite.


def measure_tflite(model_path, work_dir: Path, repeats, max_val_images=None) -> dict:
    """Latency and validation metric of a trained .keras model and of its TFLite exports."""
    info = modelfile.read_info(model_path)
    config = TrainConfig(**json.loads((Path(model_path).parent / "config.json").read_text()))
    dataset = get_dataset(info["dataset"])
    image_size = tuple(info["image_size"])
    train, val = list_split(config)  # the run's own split
    val = val[:max_val_images]
    keras_model = modelfile.load_model(model_path)
    image = export.network_input(val[0].image, image_size)
    rows = [{"format": "keras float32", "bytes": Path(model_path).stat().st_size,
             "latency_ms": _milliseconds(timed(lambda: keras_model.predict_on_batch(image), repeats)),
             **_validation_scores(keras_model, val, dataset, image_size)}]
    calibration = export.spread([s.image for s in train], export.CALIBRATION_IMAGES)
    for quantize in export.QUANTIZATIONS:
        path = work_dir / f"model-{quantize}.tflite"
        export.export_tflite(keras_model, path, image_size, quantize, calibration if quantize == "int8" else None)
        exported = tflite_runner.TFLiteModel(path, num_threads=os.cpu_count())
        rows.append({"format": f"tflite {'float32' if quantize == 'none' else quantize}",
                     "bytes": path.stat().st_size,
                     "latency_ms": _milliseconds(timed(lambda exported=exported: exported(image), repeats)),
                     **_validation_scores(exported, val, dataset, image_size)})
    return {"model": str(model_path), "dataset": dataset.name, "image_size": list(image_size),
            "validation_frames": len(val), "rows": rows}


def _milliseconds(seconds: dict) -> dict:
    return {key: 1000 * value for key, value in seconds.items()}


def _validation_scores(model, samples, dataset, image_size) -> dict:
    if dataset.road_class is not None:
        scores = predict.evaluate_road(model, samples, image_size, road_id=dataset.road_class, pooled=True)
        return {"metric": "MaxF", "scores": {name: s["MaxF"] for name, s in scores.items()},
                "main": scores["urban_road"]["MaxF"]}
    scores = predict.evaluate_segmentation(model, samples, dataset, image_size)
    return {"metric": "mIoU", "scores": {"mean_iou": scores["mean_iou"]}, "main": scores["mean_iou"]}


def tflite_model_for_fast_mode(work_dir: Path, dataset: str, root: Path, image_size) -> Path:
    """--fast: a vgg16_mini trained for one short epoch on the synthetic data, saved as a run's best.keras."""
    from fcn.train import train

    config = TrainConfig(dataset=dataset, data_dir=str(root), run_dir=str(work_dir / "tflite-run"),
                         encoder="vgg16_mini", weights=None, image_size=image_size, batch_size=2, epochs=1,
                         learning_rate=1e-3)
    train(config, verbose=0)
    return Path(config.run_dir) / "best.keras"


def _worker(encoder, image_size, batch_size, repeats, *flags, environment=None) -> dict:
    """One train_step_worker.py process: its JSON line, or a RuntimeError with the last line of its stderr."""
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "train_step_worker.py"), "--encoder", encoder,
               "--image-size", "x".join(map(str, image_size)), "--batch-size", str(batch_size),
               "--repeats", str(repeats), *flags]
    done = subprocess.run(command, env={**os.environ, **(environment or {})}, capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the worker failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_settings(encoder, image_size, batch_size, repeats, environment=None) -> list[dict]:
    """Training-step images/s of `encoder` under each of SETTINGS, each in a fresh worker process (with
    `environment` added to each one's).

    The first setting (the defaults) also times the forward pass: it is float32's row of measure_precisions."""
    rows = []
    for index, (name, setting_environment, flags) in enumerate(SETTINGS):
        batch = batch_size * (int(flags[flags.index("--batch-scale") + 1]) if "--batch-scale" in flags else 1)
        flags = [flag for flag in flags if flag == "--xla"] + ([] if index == 0 else ["--train-only"])
        try:
            result = _worker(encoder, image_size, batch, repeats, *flags,
                             environment={**(environment or {}), **setting_environment})
        except RuntimeError as error:
            raise RuntimeError(f"{name}: {error}") from None
        rows.append({"setting": name, "batch_size": batch, **result})
    return rows


def measure_precisions(encoders, image_size, batch_size, repeats, measured=None, environment=None) -> list[dict]:
    """Forward and training-step images/s of each encoder in float32 and bfloat16, each in a fresh worker process;
    without native bfloat16 only float32 is timed and the bfloat16 row says why.

    `measured`: {encoder: the worker's result} of float32 runs already made with these sizes (the settings
    section's defaults), used instead of timing them again."""
    rows = []
    for encoder in encoders:
        for name in ("float32", "bfloat16"):
            if name == "bfloat16" and not precision.has_native_bfloat16():
                rows.append({"encoder": encoder, "precision": name, "skipped": NO_BFLOAT16})
                continue
            result = (measured or {}).get(encoder) if name == "float32" else None
            if result is None:
                try:
                    result = _worker(encoder, image_size, batch_size, repeats, "--precision", name,
                                     environment=environment)
                except RuntimeError as error:
                    raise RuntimeError(f"{encoder} in {name}: {error}") from None
            forward_flops = flops.count_flops(build_fcn8(2, encoder=encoder, weights=None, input_shape=(*image_size, 3)))
            rows.append({"encoder": encoder, **result, "gflop_per_image": forward_flops / 1e9})
    return rows


def precision_table(rows, ceiling) -> str:
    """Each encoder's float32 and bfloat16 rates, the speed-up, and the share of its own precision's ceiling."""
    lines = ["| encoder | precision | forward img/s | train img/s | train x float32 | forward % of ceiling | "
             "train % of ceiling |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    base = {row["encoder"]: row for row in rows if row["precision"] == "float32"}
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['encoder']} | {row['precision']} | {row['skipped']} | | | | |")
            continue
        limit = (ceiling if row["precision"] == "float32" else ceiling["bfloat16"])["conv3x3"]["median"]
        forward, train = row["forward_images_per_second"], row["images_per_second"]
        share = [100 * rate["median"] * row["gflop_per_image"] * times / limit
                 for rate, times in ((forward, 1), (train, flops.TRAINING_STEP_FORWARDS))]
        lines.append(f"| {row['encoder']} | {row['precision']} | {spread(forward)} | {spread(train)} | "
                     f"{train['median'] / base[row['encoder']]['images_per_second']['median']:.2f} | "
                     f"{share[0]:.0f} | {share[1]:.0f} |")
    return "\n".join(lines)


def settings_table(rows, forward_flops, ceiling_gflops) -> str:
    lines = ["| setting | batch | train img/s | x defaults | % of ceiling |", "| --- | ---: | ---: | ---: | ---: |"]
    base = rows[0]["images_per_second"]["median"]
    for row in rows:
        rate = row["images_per_second"]
        share = rate["median"] * flops.TRAINING_STEP_FORWARDS * forward_flops / 1e9 / ceiling_gflops
        lines.append(f"| {row['setting']} | {row['batch_size']} | {spread(rate)} | {rate['median'] / base:.2f} | "
                     f"{100 * share:.0f} |")
    return "\n".join(lines)


def measure_video(encoders, image_size, full_size, frames, work_dir: Path) -> list[dict]:
    """Frames/s of fcn video on a synthetic drive (an mp4 at full_size), Keras float32 and TFLite int8.

    The weights are random: speed does not depend on them (int8 calibrated on the drive's own frames).
    """
    source = work_dir / "drive.mp4"
    images, _ = video.render_drive(frames, *full_size)
    height, width = full_size
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    for image in images:
        writer.write(image[..., ::-1])
    writer.release()
    rows = []
    for encoder in encoders:
        keras_path = work_dir / f"{encoder}.keras"
        info = modelfile.model_info("kitti_road", ("not road", "road"), image_size, encoder, road_class=1)
        model = build_fcn8(2, encoder=encoder, weights=None)
        modelfile.save_model(model, keras_path, info)
        tflite_path = export.export_tflite(model, work_dir / f"{encoder}-int8.tflite", image_size, "int8",
                                           list(images[:8]), info)
        row = {"encoder": encoder, "frames": frames, "frame_size": list(full_size)}
        for name, path in (("keras", keras_path), ("tflite_int8", tflite_path)):
            # One short warm-up video (tracing, allocation), then the timed one.
            video.segment_video(path, work_dir / "warm-up.mp4", source, max_frames=2, progress=False)
            result = video.segment_video(path, work_dir / f"{encoder}-{name}.mp4", source, progress=False)
            row[name] = result["frames_per_second"]
        rows.append(row)
    return rows


def video_table(rows, image_size) -> str:
    size = "x".join(map(str, image_size))
    lines = [f"| encoder (network at {size}) | frame size | Keras float32 frames/s | TFLite int8 frames/s |",
             "| --- | --- | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['encoder']} | {row['frame_size'][1]}x{row['frame_size'][0]} | {row['keras']:.1f} | "
                     f"{row['tflite_int8']:.1f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Tables.


def ceiling_table(ceiling) -> str:
    bf16 = ceiling["bfloat16"]
    shape, chain = "x".join(map(str, ceiling["conv_shape"])), ceiling["chain"]
    return "\n".join([
        "| kernel | shape | GFLOP/s float32 | GFLOP/s bfloat16 |", "| --- | --- | ---: | ---: |",
        f"| 3x3 convolution | {shape}, 3x3, {chain} in a row | {spread(ceiling['conv3x3'], 1)} | "
        f"{spread(bf16['conv3x3'], 1) if isinstance(bf16, dict) else bf16} |",
        f"| matrix product | {ceiling['matmul_size']}^2, {chain} in a row | {spread(ceiling['matmul'], 1)} | "
        f"{spread(bf16['matmul'], 1) if isinstance(bf16, dict) else bf16} |"])


def encoder_table(rows, ceiling_gflops, image_size, full_size) -> str:
    size, full = "x".join(map(str, image_size)), "x".join(map(str, full_size))
    lines = [f"| encoder | XLA | GFLOP/img | forward img/s {size} | train img/s | forward img/s {full} | "
             "forward % of ceiling | train % of ceiling |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row['encoder']} | {'yes' if row['xla'] else 'no'} | {row['gflop_per_image']:.1f} | "
            f"{spread(row['forward'])} | {spread(row['train'])} | {spread(row['forward_full'])} | "
            f"{100 * row['forward_gflops'] / ceiling_gflops:.0f} | {100 * row['train_gflops'] / ceiling_gflops:.0f} |")
    return "\n".join(lines)


def pipeline_table(pipeline, consumption) -> str:
    lines = ["| input pipeline | img/s | x the fastest training step's consumption |", "| --- | ---: | ---: |"]
    for name, rate in pipeline.items():
        lines.append(f"| {name} | {spread(rate, 1)} | {rate['median'] / consumption:.1f} |")
    return "\n".join(lines)


def baseline_table(rows) -> str:
    lines = ["| model | XLA | fcn's path img/s | TF1-style generator img/s | ratio | the generator alone img/s | "
             "its share of a TF1-style step |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['encoder']} | {'yes' if row['xla'] else 'no'} | {spread(row['fcn'])} | "
                     f"{spread(row['tf1_style'])} | {row['ratio']:.2f} | {spread(row['tf1_feed_alone'], 1)} | "
                     f"{100 * row['tf1_input_share']:.0f} % |")
    return "\n".join(lines)


def tflite_table(tflite) -> str:
    keras_row = tflite["rows"][0]
    names = list(keras_row["scores"])
    lines = [f"| format | MB | latency ms | x Keras speed | {' | '.join(names)} | change |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in names) + " | ---: |"]
    for row in tflite["rows"]:
        speedup = keras_row["latency_ms"]["median"] / row["latency_ms"]["median"]
        scores = " | ".join(f"{100 * row['scores'][name]:.2f}" for name in names)
        lines.append(f"| {row['format']} | {row['bytes'] / 1e6:.1f} | {spread(row['latency_ms'], 1)} | "
                     f"{speedup:.2f} | {scores} | {100 * (row['main'] - keras_row['main']):+.2f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------


def machine() -> dict:
    model = "unknown CPU"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or model
    return {"cpu": model, "cores": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__}


def run(settings: dict, sections, fast: bool, xla_options=(False, True), model_path=None,
        on_section=lambda result, name: None) -> dict:
    """Measure the chosen sections; returns {section: results, "tables": {section: Markdown}}.

    `on_section(result, name)` is called as each section is done (main prints its table and writes the JSON
    so far), so a long run that is stopped keeps what it measured.
    """
    result = {"machine": machine(), "settings": {k: v for k, v in settings.items()}, "tables": {}}

    def done(name, value, table):
        result[name] = value
        result["tables"][name.removesuffix("_rows")] = table
        on_section(result, name.removesuffix("_rows"))

    repeats, batch_size, image_size = settings["repeats"], settings["batch_size"], settings["image_size"]
    ceiling = measure_ceiling(settings["conv"], settings["matmul"], repeats)
    done("ceiling", ceiling, ceiling_table(ceiling))
    encoders = settings["encoders"].split(",")
    consumption = None
    # The baseline compares each encoder's fastest training (with or without XLA) with the TF1-style feed.
    xla_for = {encoder: xla_options for encoder in encoders}
    if "encoders" in sections:
        rows = [_released(measure_encoder, e, image_size, settings["full_size"], batch_size, repeats, xla)
                for e in encoders for xla in xla_options]
        done("encoders", rows, encoder_table(rows, ceiling["conv3x3"]["median"], image_size, settings["full_size"]))
        consumption = max(row["train"]["median"] for row in rows)
        xla_for = {e: (max((r for r in rows if r["encoder"] == e), key=lambda r: r["train"]["median"])["xla"],)
                   for e in encoders}
    with tempfile.TemporaryDirectory() as work:
        dataset, root = bench_data(fast, Path(work))
        result["data"] = "synthetic KITTI Road" if fast or not str(root).startswith(str(SHARED_DATA)) else str(root)
        if "pipeline" in sections:
            pipeline = _released(measure_pipeline, dataset, root, image_size, batch_size, settings["steps"], repeats)
            done("pipeline", pipeline, pipeline_table(pipeline, consumption or 1.0))
        if "baseline" in sections:
            rows = [_released(measure_baseline, dataset, root, e, image_size, batch_size, settings["steps"], repeats,
                              xla) for e in encoders for xla in xla_for[e]]
            done("baseline", rows, baseline_table(rows))
        if "tflite" in sections:
            model_path = model_path or tflite_model_for_fast_mode(Path(work), dataset, root, image_size)
            tflite = _released(measure_tflite, model_path, Path(work), repeats, settings.get("max_val_images"))
            done("tflite", tflite, tflite_table(tflite))
        if "settings" in sections:
            encoder, environment = settings["settings_encoder"], settings.get("worker_environment")
            rows = measure_settings(encoder, image_size, batch_size, repeats, environment)
            forward_flops = flops.count_flops(build_fcn8(2, encoder=encoder, weights=None,
                                                         input_shape=(*image_size, 3)))
            defaults = {key: value for key, value in rows[0].items() if key not in ("setting", "batch_size")}
            result["precision_rows"] = _released(measure_precisions, encoders, image_size, batch_size, repeats,
                                                 {encoder: defaults}, environment)
            done("settings_rows", rows, settings_table(rows, forward_flops, ceiling["conv3x3"]["median"]) + "\n\n"
                 + precision_table(result["precision_rows"], ceiling))
        if "video" in sections:
            rows = _released(measure_video, settings["video_encoders"].split(","), image_size, settings["full_size"],
                             settings["video_frames"], Path(work))
            done("video", rows, video_table(rows, image_size))
    return result


def _released(measure, *args):
    """measure(*args), then drop the models it built: a full run builds dozens (VGG16 at 375x1242 among
    them), and Keras keeps every one alive until the session is cleared (the first full run ran out of 24 GB)."""
    try:
        return measure(*args)
    finally:
        keras.backend.clear_session()
        gc.collect()


def build_parser() -> argparse.ArgumentParser:
    """The command's options (tests/test_docs.py parses the documented command lines with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="tiny sizes, vgg16_mini only, seconds (CI)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"some of {', '.join(SECTIONS)}")
    parser.add_argument("--encoders", help="comma-separated encoders (default: all registered)")
    parser.add_argument("--image-size", type=parse_image_size)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--no-xla", action="store_true", help="measure without XLA only")
    parser.add_argument("--model", help="the trained .keras (a run's best.keras) the tflite section exports; "
                        "required for it unless --fast")
    parser.add_argument("--json", default="runs/bench/speed.json", help="where the results go")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if "tflite" in sections and not (args.model or args.fast):
        parser.error("the tflite section needs --model (a run's best.keras), or --fast")
    settings = dict(FAST if args.fast else FULL)
    for key in ("encoders", "image_size", "batch_size", "repeats"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    def report(result, name):
        if name == "ceiling":
            info = result["machine"]
            print(f"{info['cpu']}, {info['cores']} cores, TensorFlow {info['tensorflow']}, Keras {info['keras']}; "
                  f"batch {settings['batch_size']}, median (min-max) of {settings['repeats']}", flush=True)
        print(f"\n{result['tables'][name]}", flush=True)
        write_bytes_atomic(args.json, json.dumps(result, indent=2, default=str).encode())

    result = run(settings, sections, args.fast, (False,) if args.no_xla else (False, True), args.model, report)
    print(f"\ndata: {result['data']}\nwrote {args.json}")

if __name__ == "__main__":
    main()
