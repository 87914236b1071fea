"""Running a `.tflite` export of an FCN (fcn/export.py) where the code expects a Keras model.

`TFLiteModel` answers the two things fcn.predict asks of a model: `model(images, training=False)` returns
logits of the images' own size, and `model.output_shape[-1]` is the number of classes. So
`predict.write_predictions`, `evaluate_road` and `evaluate_segmentation` run a TFLite file unchanged.

A TFLite model has a fixed input size (the converter needs static shapes, see fcn/export.py). Images of
another size are resized to it (bilinear) and the logits resized back, as fcn.predict does for a Keras model
run at its recorded size. The file's description (the `fcn.json` of the .keras it came from) lies beside it
as `<file>.tflite.json`.
"""

import json
import re
import warnings
from pathlib import Path

import numpy as np

from fcn._quiet_tensorflow import stderr_filtered
from fcn.modelfile import ModelFileError

SUFFIX = ".tflite"
INFO_SUFFIX = ".json"  # the description of model.tflite is model.tflite.json
# Lines TFLite's C++ code prints to stderr on every run, news to no one: the runtime setting up its default
# CPU delegate, the int8 converter stating its settings.
_NOTICES = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "fully_quantize: ")
# The converter's notices that it ignores two settings it does not use; they show up in some processes and
# not in others (absl's log level is set late), and say nothing about the model.
_CONVERTER_NOTICES = re.compile(r"^[IW]\d{4} [\d:. ]+\d+ tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored "
                                r"(output_format|drop_control_dependency)\.$")


def is_tflite(path) -> bool:
    """Whether a model path names a TFLite file (by its suffix)."""
    return Path(path).suffix.lower() == SUFFIX


def info_path(path) -> Path:
    """Where the description of a TFLite file lies: `<path>.json`."""
    return Path(f"{path}{INFO_SUFFIX}")


def read_info(path) -> dict | None:
    """The fcn.json description beside a TFLite file, or None where there is none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    sidecar = info_path(path)
    if not sidecar.is_file():
        return None
    try:
        return json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{sidecar}: model description is corrupt ({error})") from None


class TFLiteModel:
    """A TFLite FCN, called as the Keras one: (B, h, w, 3) RGB in [0, 255] -> (B, h, w, C) float32 logits.

    Attributes:
        image_size: (height, width) the network runs at. input_dtype: float32, or uint8 (int8 exports).
        output_shape: (None, None, None, C), as a Keras FCN.
    """

    def __init__(self, path, num_threads: int | None = None):
        self.path = Path(path)
        self._interpreter = _load_interpreter(self.path, num_threads)
        (self._input,) = self._interpreter.get_input_details()
        (self._output,) = self._interpreter.get_output_details()
        batch, height, width, channels = (int(v) for v in self._input["shape"])
        if batch != 1 or channels != 3 or len(self._output["shape"]) != 4:
            raise ModelFileError(f"{self.path}: not an fcn export (input {self._input['shape'].tolist()}, "
                                 f"output {self._output['shape'].tolist()}; expected (1, H, W, 3) -> (1, H, W, C))")
        self.image_size = (height, width)
        self.input_dtype = np.dtype(self._input["dtype"])  # uint8 for an int8 export: pixels as they are
        self.output_shape = (None, None, None, int(self._output["shape"][-1]))

    def __call__(self, images, training: bool = False) -> np.ndarray:
        """Logits of a batch, at the images' own size: (B, h, w, C) float32 (`training` is ignored)."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images, tf.float32)
        size = tuple(images.shape[1:3])
        if size != self.image_size:
            images = tf.image.resize(images, self.image_size, method="bilinear")
        logits = np.stack([self._run(image[None]) for image in images.numpy()])
        if size != self.image_size:
            logits = tf.image.resize(logits, size, method="bilinear").numpy()
        return logits

    def _run(self, image: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input["index"], _quantize(image, self._input))
        self._interpreter.invoke()
        return _dequantize(self._interpreter.get_tensor(self._output["index"])[0], self._output)


def input_size(path) -> tuple[int, int]:
    """(height, width) a TFLite file runs at, from its input tensor."""
    return TFLiteModel(path).image_size


def _load_interpreter(path: Path, num_threads):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: model file is empty (0 bytes)")
    try:
        interpreter = _quiet_interpreter(model_path=str(path), num_threads=num_threads)
        with without_tflite_notices():
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"{path}: not a TFLite model, or corrupt ({first_line})") from None
    return interpreter


def _quiet_interpreter(**kwargs):
    """tf.lite.Interpreter without its deprecation warning.

    TensorFlow 2.21 still ships it and points to LiteRT (the ai-edge-litert package), whose interpreter takes
    the same files; the warning repeats on every load and tells a user of fcn nothing to do.
    """
    import tensorflow as tf  # here, not on import: reading a file's description needs no TensorFlow

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        return tf.lite.Interpreter(**kwargs)


def _quantize(image: np.ndarray, details: dict) -> np.ndarray:
    # Integer inputs (int8 exports take uint8 pixels) carry a scale and zero point: real = scale * (q - zero).
    dtype = details["dtype"]
    if dtype == np.float32:
        return image.astype(np.float32)
    scale, zero_point = details["quantization"]
    limits = np.iinfo(dtype)
    return np.clip(np.round(image / scale + zero_point), limits.min, limits.max).astype(dtype)


def _dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    if details["dtype"] == np.float32:
        return values.astype(np.float32)
    scale, zero_point = details["quantization"]
    return (scale * (values.astype(np.float32) - zero_point)).astype(np.float32)


def without_tflite_notices():
    """Hold back TFLite's routine stderr lines (_NOTICES) during a block; every other line is written back."""
    # They come from C++ on file descriptor 2, so only redirecting the descriptor can hold them back.
    return stderr_filtered(lambda line: not line.strip() or line.startswith(_NOTICES)
                           or bool(_CONVERTER_NOTICES.match(line)))
