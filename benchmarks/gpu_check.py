r"""GPU check: FCN-8/VGG16 trains on this machine's GPU; images/s and TFLOP/s per precision, against the card's peak.

    .venv/bin/python benchmarks/gpu_check.py              # Keras' TensorFlow backend (this project's .venv)
    KERAS_BACKEND=jax python benchmarks/gpu_check.py      # Keras' JAX backend

One command, a few minutes: FCN-8s with the paper's VGG16 encoder (weights=None, 2 classes, 256x512, batch 8)
trains for a fixed number of steps on in-memory street-like scenes, once per precision (float32,
mixed_float16, mixed_bfloat16). TensorFlow runs each with and without XLA (jit_compile); JAX always compiles
with XLA, so there the rows compare precisions only. It prints the GPU's name and memory, images/s, the
achieved TFLOP/s (the model's convolution FLOPs, counted from its layer shapes) against the card's published
dense peak, and whether the loss went down. Exit status 1 when a loss is not finite or, on a GPU, did not
decrease.

Without a GPU it says so, runs a tiny CPU smoke run (vgg16_mini, 64x128, 1 + 2 steps) and exits 0.

On a GPU machine with JAX (CUDA) but no TensorFlow and no package index
------------------------------------------------------------------------
Keras and its light dependencies travel as wheel files; JAX, NumPy and CUDA are the machine's own, and fcn is
imported from this repository (nothing to install; under the JAX backend it never imports TensorFlow).

1. Here, with PyPI: wheels for the GPU machine's Python version (`python3 --version` there; several may be
   given; keras 3.15.1 needs >= 3.11):

       bash benchmarks/gpu_wheels.sh 3.12                    # -> build/gpu_wheels/ (ignored by git)

2. There, from a copy of the repository that holds build/gpu_wheels/. pip installs what is missing only:

       python3 -m pip install --no-index --find-links build/gpu_wheels keras==3.15.1
       KERAS_BACKEND=jax python3 benchmarks/gpu_check.py

   Where site-packages is read-only, put the missing packages (`python3 -m pip show NAME` tells; keras, namex
   and optree on an image with JAX and rich) in a folder of their own, without their dependencies:

       python3 -m pip install --no-index --no-deps --target /tmp/site --find-links build/gpu_wheels \
           keras==3.15.1 namex optree
       PYTHONPATH=/tmp/site KERAS_BACKEND=jax python3 benchmarks/gpu_check.py
"""

import argparse
import importlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

# The GPU machine runs this from a copy of the repository, without installing fcn.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Keras' default backend is TensorFlow; on a machine without it, JAX is the one there is.
if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
    os.environ["KERAS_BACKEND"] = "jax"
# fcn before Keras: with the TensorFlow backend it imports TensorFlow without the start-up lines.
importlib.import_module("fcn")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from fcn import model as fcn_model  # noqa: E402
from fcn.flops import TRAINING_STEP_FORWARDS, count_flops  # noqa: E402
from fcn.losses import IGNORE_ID, MaskedSparseCrossEntropy  # noqa: E402

# The check on a GPU: the paper's network at a street-scene size (multiples of 32: no padding in the model).
ENCODER = "vgg16"
NUM_CLASSES = 2
IMAGE_SIZE = (256, 512)
BATCH_SIZE = 8
WARMUP_STEPS = 2  # compilation and cuDNN autotuning happen here: not timed
TIMED_STEPS = 20
DATA_BATCHES = 4  # distinct batches, cycled; the loss trend compares the first and last pass over them
LEARNING_RATE = 1e-4
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# Without a GPU: a smoke run of seconds that exercises the same code.
CPU_ENCODER = "vgg16_mini"
CPU_IMAGE_SIZE = (64, 128)
CPU_BATCH_SIZE = 2
CPU_WARMUP_STEPS = 1
CPU_TIMED_STEPS = 2
CPU_DATA_BATCHES = 1

# Published dense peaks in TFLOP/s: FP32 on CUDA cores; TF32, FP16 and BF16 on tensor cores with FP32
# accumulation. Datasheets quote tensor-core peaks "with sparsity": the numbers here are half of those.
#   H100 SXM / PCIe / NVL: NVIDIA H100 Tensor Core GPU datasheet (FP32 67 / 51 / 60; TF32 989* / 756* / 835*;
#     FP16 and BF16 1,979* / 1,513* / 1,671*).
#   H200 SXM / NVL: NVIDIA H200 Tensor Core GPU datasheet (same as H100 SXM / NVL).
#   A100 (SXM and PCIe, 40 and 80 GB): NVIDIA A100 datasheet (FP32 19.5; TF32 156; FP16 and BF16 312).
#   V100 SXM2 / PCIe / V100S PCIe: NVIDIA V100 datasheet (FP32 15.7 / 14 / 16.4; tensor FP16 125 / 112 / 130).
#   T4: NVIDIA T4 datasheet (FP32 8.1; mixed FP16/FP32 65). L4: NVIDIA L4 datasheet (FP32 30.3; TF32 120*;
#   FP16 and BF16 242*). GeForce RTX 4090: NVIDIA Ada GPU architecture whitepaper, appendix A (FP32 82.6;
#   TF32 82.6; FP16 and BF16 with FP32 accumulate 165.2).
# Rows are tried in order on the device name (H100 SXM is named "NVIDIA H100 80GB HBM3": PCIe and NVL first).
PEAK_TFLOPS = (
    ("H200 NVL", r"H200 NVL", {"fp32": 60, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5}),
    ("H200 SXM", r"H200", {"fp32": 67, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5}),
    ("H100 PCIe", r"H100 PCIe", {"fp32": 51, "tf32": 378, "fp16": 756.5, "bf16": 756.5}),
    ("H100 NVL", r"H100 NVL", {"fp32": 60, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5}),
    ("H100 SXM", r"H100", {"fp32": 67, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5}),
    ("A100", r"A100", {"fp32": 19.5, "tf32": 156, "fp16": 312, "bf16": 312}),
    ("V100S PCIe", r"V100S", {"fp32": 16.4, "fp16": 130}),
    ("V100 PCIe", r"V100-PCIE", {"fp32": 14, "fp16": 112}),
    ("V100 SXM2", r"V100", {"fp32": 15.7, "fp16": 125}),
    ("T4", r"\bT4\b", {"fp32": 8.1, "fp16": 65}),
    ("L4", r"\bL4\b", {"fp32": 30.3, "tf32": 60, "fp16": 121, "bf16": 121}),
    ("RTX 4090", r"RTX 4090(?! D)", {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2}),
)
# TensorFlow and JAX both run float32 convolutions on TF32 tensor cores by default (Ampere and later).
PEAK_FORMAT = {"float32": ("tf32", "fp32"), "mixed_float16": ("fp16",), "mixed_bfloat16": ("bf16",)}


def published_peaks(device_name: str) -> tuple[str, dict] | None:
    """(card, {"fp32"|"tf32"|"fp16"|"bf16": dense TFLOP/s}) for a device name, or None for an unknown card."""
    for card, pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return card, peaks
    return None


def peak_for_policy(peaks: dict | None, policy: str) -> tuple[str, float] | None:
    """(format, TFLOP/s) the policy's convolutions can reach on the card, or None when unknown or unsupported."""
    for number_format in PEAK_FORMAT[policy]:
        if peaks and number_format in peaks:
            return number_format.upper(), peaks[number_format]
    return None


def make_street_scenes(count: int, image_size: tuple[int, int], seed: int = 0):
    """In-memory street-like scenes: sky above a random horizon, grey road below, a don't-care band between.

    Returns:
        images (count, H, W, 3) float32 in [0, 255]; labels (count, H, W) int32: 1 road, 0 not, IGNORE_ID.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    rows = np.arange(height)[None, :, None]
    horizon = rng.integers(int(0.4 * height), int(0.7 * height), size=(count, 1, 1))
    labels = np.broadcast_to(rows >= horizon, (count, height, width)).astype(np.int32)
    labels[np.broadcast_to(np.abs(rows - horizon) < 2, labels.shape)] = IGNORE_ID
    colours = np.where(labels[..., None] == 1, [90.0, 90.0, 95.0], [135.0, 170.0, 210.0])
    images = np.clip(colours + rng.normal(0.0, 25.0, colours.shape), 0, 255).astype(np.float32)
    return images, labels


def find_gpu() -> dict | None:
    """The first GPU the Keras backend sees: {"name", "memory"} (memory a description), or None."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = [device for device in jax.devices() if device.platform == "gpu"]
        if not devices:
            return None
        name = devices[0].device_kind
        limit = (devices[0].memory_stats() or {}).get("bytes_limit")
        memory = _nvidia_smi_memory() or (f"{limit / 2**30:.1f} GiB usable by JAX" if limit else "unknown")
    elif backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_physical_devices("GPU")
        if not devices:
            return None
        name = tf.config.experimental.get_device_details(devices[0]).get("device_name", devices[0].name)
        memory = _nvidia_smi_memory() or "unknown"
    else:
        raise SystemExit(f"Keras backend {backend!r} is not supported here: set KERAS_BACKEND=jax or tensorflow")
    return {"name": name, "memory": memory}


def _nvidia_smi_memory() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "--id=0"]
    result = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0 or not result.stdout.strip().isdigit():
        return None
    return f"{int(result.stdout.strip()) / 1024:.1f} GiB (nvidia-smi)"


def train_steps(model, batches, steps: int) -> tuple[list[float], list[float]]:
    """Losses and seconds of `steps` train_on_batch calls, cycling over `batches`."""
    losses, seconds = [], []
    for step in range(steps):
        images, labels = batches[step % len(batches)]
        start = time.perf_counter()
        loss = float(model.train_on_batch(images, labels))  # a host value: waits for the device
        seconds.append(time.perf_counter() - start)
        losses.append(loss)
    return losses, seconds


def run_configuration(policy: str, jit_compile: bool, settings: argparse.Namespace, batches) -> dict:
    """Train a fresh FCN-8 in one precision policy; its throughput and loss trend."""
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    try:
        model = fcn_model.build_fcn8(NUM_CLASSES, encoder=settings.encoder, weights=None,
                                     input_shape=(*settings.image_size, 3))
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=MaskedSparseCrossEntropy(),
                      jit_compile=jit_compile)
        losses, seconds = train_steps(model, batches, settings.warmup_steps + settings.timed_steps)
    finally:
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()
    passes = min(len(batches), len(losses) // 2)  # the same batches at the start and at the end (steps >= 2 passes)
    first, last = float(np.mean(losses[:passes])), float(np.mean(losses[-passes:]))
    timed = sum(seconds[settings.warmup_steps:])
    return {"policy": policy, "xla": jit_compile, "images_per_s": settings.batch_size * settings.timed_steps / timed,
            "warmup_s": sum(seconds[:settings.warmup_steps]), "first_loss": first, "last_loss": last,
            "finite": bool(np.all(np.isfinite(losses))), "decreased": last < first}


TABLE_HEADER = ("| precision | XLA | untimed steps s | images/s | TFLOP/s | peak TFLOP/s | % of peak | "
                "loss first -> last pass | loss decreased |\n"
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")


def _format_row(result: dict, train_flops: float, peaks: dict | None) -> str:
    tflops = train_flops * result["images_per_s"] / 1e12
    peak = peak_for_policy(peaks, result["policy"])
    peak_text = f"{peak[1]:g} ({peak[0]})" if peak else "unknown"
    share = f"{100 * tflops / peak[1]:.1f} %" if peak else "unknown"
    trend = f"{result['first_loss']:.4f} -> {result['last_loss']:.4f}"
    return (f"| {result['policy']} | {'yes' if result['xla'] else 'no'} | {result['warmup_s']:.1f} | "
            f"{result['images_per_s']:.1f} | {tflops:.3g} | {peak_text} | {share} | {trend} | "
            f"{'yes' if result['decreased'] else 'NO'} |")


def _configurations(policies, on_gpu: bool):
    # JAX always compiles with XLA; TensorFlow on a GPU runs each policy without and with it.
    if keras.backend.backend() == "jax":
        return [(policy, True) for policy in policies]
    return [(policy, xla) for policy in policies for xla in ((False, True) if on_gpu else (False,))]


def _backend_version() -> str:
    backend = keras.backend.backend()
    return f"{backend} {importlib.import_module(backend).__version__}"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", default=f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}", help="HxW (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--timed-steps", type=int, default=TIMED_STEPS)
    parser.add_argument("--encoder", default=ENCODER, choices=sorted(fcn_model.ENCODERS))
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated Keras dtype policies")
    args = parser.parse_args(argv)
    match = re.fullmatch(r"(\d+)x(\d+)", args.image_size)
    if not match:
        parser.error(f"--image-size must look like 256x512, got {args.image_size!r}")
    args.image_size = (int(match[1]), int(match[2]))
    args.policies = args.policies.split(",")
    unknown = sorted(set(args.policies) - set(PEAK_FORMAT))
    if unknown:
        parser.error(f"unknown policies {unknown}; choose from {list(PEAK_FORMAT)}")
    args.warmup_steps, args.data_batches = WARMUP_STEPS, DATA_BATCHES
    return args


def _use_cpu_smoke_run(settings: argparse.Namespace) -> None:
    print(f"No GPU found by the {keras.backend.backend()} backend: a tiny CPU smoke run instead "
          f"({CPU_ENCODER}, {CPU_IMAGE_SIZE[0]}x{CPU_IMAGE_SIZE[1]}, float32); its numbers measure nothing.")
    settings.encoder, settings.image_size, settings.batch_size = CPU_ENCODER, CPU_IMAGE_SIZE, CPU_BATCH_SIZE
    settings.warmup_steps, settings.timed_steps = CPU_WARMUP_STEPS, CPU_TIMED_STEPS
    settings.data_batches, settings.policies = CPU_DATA_BATCHES, ["float32"]


def _describe_gpu(gpu: dict) -> dict | None:
    """Print the GPU and its published peaks; return those peaks (None for an unknown card)."""
    card = published_peaks(gpu["name"])
    if card is None:
        print(f"GPU: {gpu['name']}, memory {gpu['memory']}; published peaks unknown for this card")
        return None
    listed = ", ".join(f"{key.upper()} {value:g}" for key, value in card[1].items())
    print(f"GPU: {gpu['name']}, memory {gpu['memory']}; published dense peaks ({card[0]}, TFLOP/s): {listed}")
    return card[1]


def _training_flops_per_image(settings: argparse.Namespace) -> float:
    model = fcn_model.build_fcn8(NUM_CLASSES, encoder=settings.encoder, weights=None,
                                 input_shape=(*settings.image_size, 3))
    # Backward = gradients for the inputs and for the weights, each about the forward's cost.
    flops = TRAINING_STEP_FORWARDS * count_flops(model)
    keras.backend.clear_session()
    return flops


def _device_batches(settings: argparse.Namespace):
    # On the device before timing: the steps measure training, not copies from the host.
    images, labels = make_street_scenes(settings.data_batches * settings.batch_size, settings.image_size)
    return [(ops.convert_to_tensor(images[i:i + settings.batch_size]),
             ops.convert_to_tensor(labels[i:i + settings.batch_size]))
            for i in range(0, len(images), settings.batch_size)]


def main(argv=None) -> int:
    start = time.perf_counter()
    settings = parse_args(argv)
    gpu = find_gpu()
    print(f"GPU check: keras {keras.__version__}, backend {_backend_version()}, Python {platform.python_version()}")
    if gpu is None:
        _use_cpu_smoke_run(settings)
        peaks = None
    else:
        peaks = _describe_gpu(gpu)
    train_flops = _training_flops_per_image(settings)
    height, width = settings.image_size
    print(f"FCN-8/{settings.encoder}, weights=None, {NUM_CLASSES} classes, {height}x{width}, "
          f"batch {settings.batch_size}: {train_flops / 1e9:.1f} GFLOP per image per training step (~3 x the "
          f"forward convolutions' FLOPs); {settings.warmup_steps} untimed (compiling) + {settings.timed_steps} "
          f"timed steps per row, Adam {LEARNING_RATE:g}")
    batches = _device_batches(settings)
    print(TABLE_HEADER, flush=True)
    results = []
    for policy, jit_compile in _configurations(settings.policies, gpu is not None):
        results.append(run_configuration(policy, jit_compile, settings, batches))
        print(_format_row(results[-1], train_flops, peaks), flush=True)
    if keras.backend.backend() == "jax":
        print("(JAX compiles every step with XLA: the rows compare precisions, all with XLA.)")
    print(f"Total {time.perf_counter() - start:.0f} s.")
    failed = [f"{r['policy']}{' with XLA' if r['xla'] else ''}" for r in results
              if not r["finite"] or (gpu is not None and not r["decreased"])]
    if failed:
        print(f"FAILED: the loss was not finite or did not decrease for {', '.join(failed)}")
        return 1
    print("OK: the loss decreased in every row." if gpu else "CPU smoke run done; on a GPU the loss must decrease.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
