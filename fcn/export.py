"""Deployment: a trained .keras FCN as a TensorFlow SavedModel or a TFLite file (float32, float16 or int8).

Both run at one fixed input size, the model's recorded image size (or one given). TFLite needs it: with a free
height and width, PadToMultiple's padding is unknown when the graph is converted, the padded tensor loses
even its channel count, and the first convolution then needs TensorFlow's own Conv2D kernel (a "Flex" op)
that TFLite runtimes on devices lack; the converter refuses it. Traced at a fixed size, the padding and the
final crop (CropToReference) become constants (PAD, STRIDED_SLICE) and every layer maps to a TFLite builtin:
the Conv2DTranspose upsampling to TRANSPOSE_CONV (in float and in int8), the Caffe preprocessing to
REVERSE_V2 and SUB, the skip scaling folded into the score convolutions. No layer has to be replaced.

Measured on a mobilenet_v2 KITTI Road model (160x576; 46 validation frames of kitti_road_half at full size,
int8 calibrated on 32 of its training frames; the .keras scores URBAN_ROAD MaxF 92.76):

    quantize  weights                 file     same class as the .keras   URBAN_ROAD MaxF
    none      float32                 21 MB    100 % of pixels            92.76
    fp16      float16                 10.5 MB  99.998 %                   92.76
    int8      int8 (activations too)  5.7 MB   99.63 %                    92.70

An int8 file takes uint8 pixels (calibrated on a few training images) and returns float32 logits. Each
export carries the model's description (fcn.json, with the export's size) beside it: `<file>.tflite.json`
for TFLite (fcn/tflite_runner.py reads it), `fcn.json` inside a SavedModel folder.
"""

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fcn import modelfile, predict, tflite_runner
from fcn.data import DATASETS, list_split
from fcn.imageio import FileWriteError, read_rgb, reporting_write_errors, write_bytes_atomic

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "fp16", "int8")
# int8 activation ranges are measured on this many training images, spread over the folder: a few dozen
# take seconds; TFLite's guide suggests 100-500 where the last fraction of a percent matters.
CALIBRATION_IMAGES = 32
# The export is checked against the .keras on this many of those images (fcn export prints the result).
CHECK_IMAGES = 8
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def export_model(model_path, output, format: str = "tflite", quantize: str = "none", image_size=None,
                 calibration_dir=None) -> dict:
    """Export a .keras FCN; everything is checked before the model is loaded. What `fcn export` runs.

    Args:
        format: "saved_model" (a folder) or "tflite" (a file ending in .tflite).
        quantize: "none", "fp16" or "int8" (TFLite only); int8 needs calibration_dir.
        image_size: (h, w) the export runs at; None: the size recorded with the model.
        calibration_dir: a folder of training images, or the root of the dataset the model was trained on
            (its training split is used); int8 calibrates on it, and a TFLite export is compared with the .keras on it.
    Returns:
        {"output": Path, "image_size": (h, w), "bytes": size, "check": compare_outputs(...) or None}.
    """
    output = Path(output)
    check_export_options(output, format, quantize, calibration_dir)
    info = modelfile.read_info(model_path)
    image_size = tuple(image_size) if image_size is not None else predict.run_image_size(model_path)
    if image_size is None:
        raise ValueError(f"{model_path}: no image size recorded with the model; pass --image-size HxW "
                         "(an export runs at one fixed size)")
    images = calibration_images(calibration_dir, info and info.get("dataset")) if calibration_dir else None
    model = modelfile.load_model(model_path)
    description = describe_export(info, image_size, format, quantize, model_path)
    if format == "saved_model":
        export_saved_model(model, output, image_size, description)
        check = None
    else:
        export_tflite(model, output, image_size, quantize, images, description)
        exported = tflite_runner.TFLiteModel(output)
        check = compare_outputs(model, exported, spread(images, CHECK_IMAGES), image_size) if images else None
    return {"output": output, "image_size": image_size, "bytes": _size_of(output), "check": check}


def check_export_options(output: Path, format: str, quantize: str, calibration_dir=None) -> None:
    """Refuse impossible or unsafe settings up front (ValueError, or FileNotFoundError for a missing folder)."""
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {format!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantize!r}")
    if format == "saved_model" and quantize != "none":
        raise ValueError(f"--quantize {quantize}: quantization applies to --format tflite only")
    if quantize == "int8" and calibration_dir is None:
        raise ValueError("--quantize int8 needs calibration images: pass --calibration-dir DIR, a folder of "
                         "training images or the root of the dataset the model was trained on")
    if calibration_dir is not None and not Path(calibration_dir).is_dir():
        raise FileNotFoundError(f"{calibration_dir}: calibration folder not found")
    if format == "tflite":
        if not tflite_runner.is_tflite(output):
            raise ValueError(f"{output}: a TFLite export must end in .tflite (that is how fcn predict knows it)")
        if output.is_dir():
            raise ValueError(f"{output}: is a folder, not a file")
    elif output.is_file() or (output.is_dir() and any(output.iterdir())
                              and not (output / "saved_model.pb").is_file()):
        raise ValueError(f"{output}: exists and is not a SavedModel folder; refusing to replace it")
    _check_writable(output)


def _check_writable(path: Path) -> None:
    parent = next(p for p in path.absolute().parents if p.exists())
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{parent}: not writable, so {path} cannot be written")


def calibration_images(folder, dataset: str | None = None, count: int = CALIBRATION_IMAGES) -> list[Path]:
    """Up to `count` images spread evenly over a folder's images, or over a dataset's training split.

    Args:
        folder: a folder of .png/.jpg images, or (with no images directly in it) the root of `dataset`.
        dataset: the name of the dataset the model was trained on (its fcn.json), or None.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: calibration folder not found")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if images:
        return spread(images, count)
    if dataset not in DATASETS:
        raise FileNotFoundError(f"{folder}: no .png or .jpg images to calibrate on")
    try:
        samples = list_split(DATASETS[dataset], folder, "train")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{folder}: no .png or .jpg images to calibrate on, nor the root of a {dataset} "
                                f"dataset ({error})") from None
    return spread([sample.image for sample in samples], count)


def spread(items: list, count: int) -> list:
    """Up to `count` items taken evenly from first to last (all of them where there are no more)."""
    picks = np.unique(np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int))
    return [items[i] for i in picks]


def describe_export(info: dict | None, image_size, format: str, quantize: str, source) -> dict | None:
    """The fcn.json of an export: the model's, at the export's size, plus how it was made (None without one)."""
    if info is None:
        return None
    export = {"format": format, "quantize": quantize, "source": Path(source).name}
    return {**info, "image_size": [int(v) for v in image_size], "export": export}


def export_saved_model(model: keras.Model, path, image_size, info: dict | None = None) -> Path:
    """Write a SavedModel folder (signature "serving_default": (B, h, w, 3) float32 RGB in [0, 255] -> logits).

    Written beside its final place, then renamed: a crash leaves the previous export (or none), never half.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_saved_model(model, tmp, (None, *image_size, 3), name=path)
        if info is not None:
            write_bytes_atomic(tmp / modelfile.INFO_MEMBER, json.dumps(info, indent=2).encode())
        _replace_folder(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_saved_model(model, folder, input_shape, name=None) -> None:
    # model.export traces call(training=False) at this shape: Dropout is off, shapes are static.
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _without_info_logs(), reporting_write_errors(name or folder):
            model.export(str(folder), format="tf_saved_model", verbose=False,
                         input_signature=[keras.InputSpec(shape=input_shape, dtype="float32")])
    except tf.errors.OpError as error:  # TensorFlow's writer: "<its file>; File too large [Op:SaveV2]"
        reason = error.message.rsplit("; ", 1)[-1].split(" [Op:")[0].strip()
        raise FileWriteError(name or folder, OSError(None, reason)) from None


@contextlib.contextmanager
def _without_info_logs():
    # In an interactive session (a notebook) TensorFlow's logger is at INFO, and saving logs "Assets written
    # to: <folder>" on stderr, for a temporary folder too: a red line under every export in a notebook.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _replace_folder(new: Path, path: Path) -> None:
    if not path.exists():
        os.replace(new, path)
        return
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old)


def convert_to_tflite(model: keras.Model, image_size, quantize: str = "none", calibration=None) -> bytes:
    """The model as a TFLite flatbuffer with input (1, h, w, 3), TFLite builtin ops only.

    Args:
        quantize: "none" (float32), "fp16" (float16 weights) or "int8" (full integer: uint8 pixels in,
            float32 logits out).
        calibration: for int8, image paths (or (H, W, 3) uint8 arrays) to measure activation ranges on.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantize!r}")
    if quantize == "int8" and not calibration:
        raise ValueError("int8 quantization needs calibration images")
    saved = Path(tempfile.mkdtemp(prefix="fcn-export-"))
    try:
        _write_saved_model(model, saved, (1, *image_size, 3))
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        # Builtins only: a file that needs TensorFlow's kernels ("Flex" ops) would not run on devices.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: ([network_input(image, image_size)] for image in calibration)
            # Camera frames are bytes: a uint8 input takes them as they are (calibrated to scale ~1).
            converter.inference_input_type = tf.uint8
        with tflite_runner.without_tflite_notices():
            return converter.convert()
    finally:
        shutil.rmtree(saved, ignore_errors=True)


def network_input(image, image_size) -> np.ndarray:
    """An image (path or (H, W, 3) uint8 RGB) as the network sees it: (1, h, w, 3) float32, resized as predict does."""
    if not isinstance(image, np.ndarray):
        image = read_rgb(image)
    resized = tf.image.resize(tf.convert_to_tensor(image[None]), image_size, method="bilinear")
    return tf.cast(resized, tf.float32).numpy()


def export_tflite(model: keras.Model, path, image_size, quantize: str = "none", calibration=None,
                  info: dict | None = None) -> Path:
    """Convert (see convert_to_tflite) and write `path`, with `info` beside it as `<path>.json`; both atomically."""
    path = Path(path)
    flatbuffer = convert_to_tflite(model, image_size, quantize, calibration)
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = tflite_runner.info_path(path)
    # The earlier export's description is kept under another name until the new model is written, so that
    # a failed write (a full disk) leaves the earlier export whole. A link: it needs no room on the disk.
    kept = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.old")
    kept.unlink(missing_ok=True)
    if sidecar.is_file():
        try:
            os.link(sidecar, kept)
        except OSError:  # a file system without hard links
            shutil.copyfile(sidecar, kept)
    try:
        if info is not None:  # the description first: a model file never stands without it
            write_bytes_atomic(sidecar, json.dumps(info, indent=2).encode())
        else:
            sidecar.unlink(missing_ok=True)  # a description left from an earlier export would be wrong
        write_bytes_atomic(path, flatbuffer)
    except BaseException:
        if kept.is_file():
            os.replace(kept, sidecar)
        elif info is not None:
            sidecar.unlink(missing_ok=True)
        raise
    finally:
        kept.unlink(missing_ok=True)
    return path


def compare_outputs(model: keras.Model, exported, images, image_size) -> dict:
    """How far an export is from its Keras model, at the network's size, on some images (paths or arrays).

    Returns:
        {"images": n, "max_abs_logit_diff": largest |difference| of a logit, "logit_range": largest |logit|
        of the Keras model, "pixel_agreement": fraction of pixels whose most probable class is the same}.
    """
    diff = scale = 0.0
    same = total = 0
    for image in images:
        x = network_input(image, image_size)
        reference = keras.ops.convert_to_numpy(model(x, training=False))
        logits = np.asarray(exported(x, training=False))
        diff = max(diff, float(np.abs(logits - reference).max()))
        scale = max(scale, float(np.abs(reference).max()))
        same += int((logits.argmax(-1) == reference.argmax(-1)).sum())
        total += reference[..., 0].size
    return {"images": len(images), "max_abs_logit_diff": diff, "logit_range": scale,
            "pixel_agreement": same / total if total else float("nan")}


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
