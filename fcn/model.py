"""FCN-8s (Long, Shelhamer & Darrell, CVPR 2015) as a Keras functional model.

The network, as in the paper's at-once FCN-8s:

    image -> encoder (VGG16 conv blocks 1-5) -> fc6 (7x7 conv, 4096) -> fc7 (1x1 conv, 4096) -> score_fr (1x1)
          -> upscore2 (x2, learnable, bilinear init)   + score_pool4 (1x1 on 0.01 * pool4)
          -> upscore_pool4 (x2, learnable, bilinear)   + score_pool3 (1x1 on 0.0001 * pool3)
          -> upscore8 (x8, fixed bilinear)             -> logits with the input's height and width

Caffe's FCN pads the first convolution by 100 pixels and crops the upsampled maps back. Here the input is
padded (bottom/right) to a multiple of 32 instead, so every skip connection aligns exactly, and the logits
are cropped to the input size at the end: any height and width works (e.g. 375x1242).

The same decoder also runs on light encoders from keras.applications (see ENCODERS): "pool3", "pool4" and
"pool5" are then the encoder's last feature maps at strides 8, 16 and 32.
"""

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
from keras import layers, ops

log = logging.getLogger(__name__)

# The encoder's total stride: pool5 is 1/32 of the input.
OUTPUT_STRIDE = 32
# Caffe VGG16 was trained on BGR images with these channel means subtracted (keras' "caffe" mode).
VGG_BGR_MEANS = (103.939, 116.779, 123.68)
# The paper's at-once FCN-8s scales the skip features so they start on the scale of fc7's scores.
POOL4_SCALE = 0.01
POOL3_SCALE = 0.0001

# Keras' own ImageNet VGG16 with the fully connected top (fc1/fc2 are needed to make fc6/fc7).
VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
VGG16_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + VGG16_WEIGHTS_FILE
)
VGG16_WEIGHTS_MD5 = "64373286793e3c8b2b4e3219cbf3544b"
# Where keras.applications downloads its ImageNet weights from (one folder per model).
KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

# fc6/fc7 on a light encoder: the paper's 7x7x4096 fc6 is VGG16's classifier (7 x 32 = 224 pixels of
# context); on a 1280-channel map it would weigh over 100 times a light encoder. Their stride-32 maps already
# see most of the image, so fc6 is 3x3 and fc6/fc7 have 256 channels (the width of DeepLab's MobileNet
# heads): the head is then about as large as the encoder.
LIGHT_FC6_KERNEL = 3
LIGHT_FC_WIDTH = 256
# keras.applications' MobileNets keep BatchNorm moving averages with momentum 0.999: an average over ~1,000
# steps, tuned for ImageNet's million images. Trained from scratch on a few hundred frames, the weights move
# faster than that average, and inference-mode outputs run on stale statistics (measured on KITTI Road after
# 2,800 steps: 82 % validation pixel accuracy on moving averages, 97 % on batch statistics). 0.9 (PyTorch's
# default) averages over ~10 steps.
LIGHT_BATCHNORM_MOMENTUM = 0.9

# ----------------------------------------------------------------------------------------------------
# Small layers the decoder needs (registered so saved .keras models load without custom_objects).


@keras.saving.register_keras_serializable(package="fcn")
class CaffePreprocess(layers.Layer):
    """RGB in [0, 255] -> BGR minus the ImageNet means, as VGG16's original Caffe weights expect."""

    def call(self, images):
        bgr = ops.flip(ops.cast(images, self.compute_dtype), axis=-1)
        return bgr - ops.cast(ops.convert_to_tensor(VGG_BGR_MEANS), self.compute_dtype)


@keras.saving.register_keras_serializable(package="fcn")
class PadToMultiple(layers.Layer):
    """Zero-pad height and width (bottom/right) up to a multiple of `multiple`."""

    def __init__(self, multiple=OUTPUT_STRIDE, **kwargs):
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, images):
        shape = ops.shape(images)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        return ops.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else -(-size // self.multiple) * self.multiple

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="fcn")
class CropToReference(layers.Layer):
    """Crop the first input's height and width (from the top-left) to those of the second."""

    def call(self, inputs):
        features, reference = inputs
        shape = ops.shape(reference)
        return features[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        features, reference = input_shapes
        return (features[0], reference[1], reference[2], features[3])


# ----------------------------------------------------------------------------------------------------
# Initialisers and weight conversion.


def bilinear_kernel(kernel_size: int, channels: int) -> np.ndarray:
    """Transposed-convolution kernel that upsamples each channel bilinearly (FCN's `upsample_filt`).

    Returns:
        (kernel_size, kernel_size, channels, channels) float32, diagonal across channels.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1 - np.abs(np.arange(kernel_size) - center) / factor
    kernel = np.zeros((kernel_size, kernel_size, channels, channels), dtype=np.float32)
    for c in range(channels):
        kernel[:, :, c, c] = np.outer(ramp, ramp)
    return kernel


@keras.saving.register_keras_serializable(package="fcn")
class BilinearInitializer(keras.initializers.Initializer):
    """Initialise a Conv2DTranspose kernel of shape (k, k, C, C) to bilinear upsampling."""

    def __call__(self, shape, dtype=None):
        if shape[0] != shape[1] or shape[2] != shape[3]:
            raise ValueError(f"bilinear init needs a (k, k, C, C) kernel, got {shape}")
        return ops.convert_to_tensor(bilinear_kernel(shape[0], shape[2]), dtype=dtype)


def dense_to_conv_kernel(dense_kernel: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Reshape a Dense kernel that follows Flatten into the equivalent convolution kernel.

    Keras' Flatten on channels-last (h, w, c) features is row-major, so the (h * w * c, units) kernel
    reshapes directly to (h, w, c, units): the paper's "convolutionalization" of fc6 (and fc7, with 1x1).
    """
    expected = int(np.prod(input_shape))
    if dense_kernel.shape[0] != expected:
        raise ValueError(f"dense kernel has {dense_kernel.shape[0]} inputs, {input_shape} needs {expected}")
    return dense_kernel.reshape(*input_shape, dense_kernel.shape[1])


# ----------------------------------------------------------------------------------------------------
# Pretrained weights: a file name and URL as keras.applications uses them, or a local file.


class WeightsFile(NamedTuple):
    """A pretrained weights file: what it is, its name in Keras' cache, where it is downloaded from."""

    label: str
    name: str
    url: str
    md5: str | None = None


def resolve_weights_file(weights: str | Path, weights_file: WeightsFile) -> Path:
    """Path of a weights file: "imagenet" downloads (or reuses) Keras' cached copy of `weights_file`."""
    if str(weights) != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {weights_file.label} weights file not found")
        return path
    # Keras caches downloads under $KERAS_HOME/models (default ~/.keras/models), keras.applications too.
    cache_dir = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()
    cache_file = cache_dir / "models" / weights_file.name
    try:
        return Path(keras.utils.get_file(weights_file.name, weights_file.url, cache_dir=str(cache_dir),
                                         cache_subdir="models", file_hash=weights_file.md5))
    except Exception as error:  # noqa: BLE001 - any download failure gets the same actionable message
        raise RuntimeError(
            f"Could not download the ImageNet {weights_file.label} weights from {weights_file.url} ({error}). "
            f"Without internet, fetch that file on another machine and place it at {cache_file}, "
            f"or pass weights='<path to the file>' (or --weights PATH); weights=None trains from scratch."
        ) from error


def resolve_vgg16_weights(weights: str | Path) -> Path:
    """Path of a VGG16 weights file: "imagenet" downloads (or reuses) Keras' cached file."""
    return resolve_weights_file(
        weights, WeightsFile("VGG16", VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL, VGG16_WEIGHTS_MD5)
    )


def _load_vgg16_pretrained(model, encoder, weights):
    load_vgg16_weights(model, resolve_vgg16_weights(weights))


def _keras_application_weights(label, folder, file_name, md5=None):
    """A `pretrained` loader for a keras.applications backbone: its ImageNet file (no top) or a local one."""
    weights_file = WeightsFile(label, file_name, f"{KERAS_APPLICATIONS_URL}{folder}/{file_name}", md5)
    return functools.partial(_load_application_weights, weights_file)


def _load_application_weights(weights_file, model, encoder, weights):
    # keras.applications loads the file into a backbone of its own; its layers then go to the FCN by name.
    path = resolve_weights_file(weights, weights_file)
    inputs = keras.Input((None, None, 3))
    try:
        backbone = keras.Model(inputs, encoder.features(inputs, weights=str(path)))
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a file that does not fit
        raise ValueError(
            f"{path}: not a Keras {weights_file.label} weights file without the top, include_top=False ({error})"
        ) from error
    for layer in backbone.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())


# ----------------------------------------------------------------------------------------------------
# Encoders. Adding one is adding one function, registered with its settings:
#     features(x, weights=None) -> (stride-8, stride-16, stride-32) feature maps of the preprocessed, padded
#     input x, i.e. the FCN's "pool3", "pool4" and "pool5"; `weights` (None or a file) goes to keras.applications.


@dataclasses.dataclass(frozen=True)
class Encoder:
    """How an encoder plugs into the FCN-8 decoder (an entry of ENCODERS)."""

    features: Callable
    preprocess: Callable  # input tensor, RGB in [0, 255] -> the range the encoder was trained on
    fc6_kernel: int
    fc_width: int  # channels of fc6 and fc7
    skip_scales: tuple[float, float] = (1.0, 1.0)  # the stride-8 and stride-16 maps are scaled before scoring
    batchnorm_momentum: float | None = None  # replaces the encoder's BatchNormalization momentum; None keeps it
    pretrained: Callable | None = None  # (fcn, encoder, "imagenet" or a path) -> None; None: random init only


ENCODERS: dict[str, Encoder] = {}


def register_encoder(name: str, **settings):
    """Decorator: add a `features` function to ENCODERS under `name`, with its Encoder settings."""

    def register(features):
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} is already registered")
        ENCODERS[name] = Encoder(features=features, **settings)
        return features

    return register


def _caffe_bgr(images):
    return CaffePreprocess(name="caffe_preprocess")(images)


def _scale_to_unit_range(images):
    # keras.applications' "tf" mode: [0, 255] -> [-1, 1]; padding then adds zeros, i.e. mid-grey.
    return layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_to_unit_range")(images)


def _vgg_blocks(x, filters, convs_per_block):
    pools = []
    for block, (width, count) in enumerate(zip(filters, convs_per_block, strict=True), start=1):
        for i in range(1, count + 1):
            x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"block{block}_conv{i}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
        pools.append(x)
    return pools[2], pools[3], pools[4]


def _last_maps(net, stride8_pad, stride16_pad):
    # The last map at stride 8 (16) is what the padding before the next stride-2 convolution receives.
    return net.get_layer(stride8_pad).input, net.get_layer(stride16_pad).input, net.output


@register_encoder("vgg16", preprocess=_caffe_bgr, fc6_kernel=7, fc_width=4096,
                  skip_scales=(POOL3_SCALE, POOL4_SCALE), pretrained=_load_vgg16_pretrained)
def _vgg16(x, weights=None):
    """The paper's encoder: pool3, pool4, pool5 with 256, 512, 512 channels."""
    # keras.applications.VGG16 itself, so its layer names (and ImageNet weights) are the usual ones.
    vgg = keras.applications.VGG16(include_top=False, weights=weights, input_tensor=x)
    return tuple(vgg.get_layer(f"block{b}_pool").output for b in (3, 4, 5))


@register_encoder("vgg16_mini", preprocess=_caffe_bgr, fc6_kernel=7, fc_width=1024,
                  skip_scales=(POOL3_SCALE, POOL4_SCALE))
def _vgg16_mini(x, weights=None):
    """VGG16's layout at a quarter of the width (1/16 of the FLOPs), random init only: CPU demos and tests."""
    return _vgg_blocks(x, (16, 32, 64, 128, 128), (2, 2, 3, 3, 3))


# Light encoders: batch-normalised maps need no skip scaling (the paper's 0.01/0.0001 tame VGG's raw ones).
@register_encoder("mobilenet_v2", preprocess=_scale_to_unit_range, fc6_kernel=LIGHT_FC6_KERNEL,
                  fc_width=LIGHT_FC_WIDTH, batchnorm_momentum=LIGHT_BATCHNORM_MOMENTUM, pretrained=_keras_application_weights(
                      "MobileNetV2", "mobilenet_v2",
                      "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"))
def _mobilenet_v2(x, weights=None):
    """MobileNetV2 (alpha 1): 192, 576 and 1280 channels at strides 8, 16 and 32."""
    net = keras.applications.MobileNetV2(include_top=False, weights=weights, input_tensor=x)
    return _last_maps(net, "block_6_pad", "block_13_pad")


@register_encoder("mobilenet_v3_large", preprocess=_scale_to_unit_range, fc6_kernel=LIGHT_FC6_KERNEL,
                  fc_width=LIGHT_FC_WIDTH, batchnorm_momentum=LIGHT_BATCHNORM_MOMENTUM, pretrained=_keras_application_weights(
                      "MobileNetV3Large", "mobilenet_v3",
                      "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", "07fb09a5933dd0c8eaafa16978110389"))
def _mobilenet_v3_large(x, weights=None):
    """MobileNetV3-Large: 240, 672 and 960 channels at strides 8, 16 and 32 (scaled to [-1, 1] before)."""
    net = keras.applications.MobileNetV3Large(include_top=False, weights=weights, input_tensor=x,
                                              include_preprocessing=False)
    return _last_maps(net, "expanded_conv_6_depthwise_pad", "expanded_conv_12_depthwise_pad")


# ----------------------------------------------------------------------------------------------------
# The model.


def build_fcn8(
    num_classes: int,
    encoder: str = "vgg16",
    weights: str | Path | None = "imagenet",
    dropout_rate: float = 0.5,
    input_shape: tuple = (None, None, 3),
    name: str = "fcn8",
) -> keras.Model:
    """Build FCN-8s. Input: (B, H, W, 3) RGB in [0, 255], any H and W. Output: (B, H, W, C) float32 logits.

    Args:
        num_classes: C, the number of classes scored (no ignore class).
        encoder: a key of ENCODERS ("vgg16" is the paper's; "vgg16_mini", "mobilenet_v2" and
            "mobilenet_v3_large" are light ones for CPUs).
        weights: "imagenet" (Keras' ImageNet file: downloaded once, then cached in ~/.keras/models; for
            VGG16 with its top, fc1/fc2 converted to fc6/fc7), a path to such a Keras weights file, or None
            (random init). vgg16_mini has no pretrained weights.
        dropout_rate: dropout after fc6 and after fc7 (0.5 in the paper).
    """
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose from {sorted(ENCODERS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    spec = ENCODERS[encoder]
    if weights is not None and spec.pretrained is None:
        pretrained = sorted(key for key, value in ENCODERS.items() if value.pretrained is not None)
        raise ValueError(f"pretrained weights exist only for encoders {pretrained}, not {encoder!r}")

    inputs = keras.Input(shape=input_shape, name="image")
    x = PadToMultiple(OUTPUT_STRIDE, name="pad_to_stride")(spec.preprocess(inputs))
    pool3, pool4, pool5 = spec.features(x)
    logits = _fcn8_decoder(pool3, pool4, pool5, num_classes, spec, dropout_rate)
    logits = CropToReference(name="crop_to_input")([logits, inputs])
    # Softmax and loss in float32 even under mixed precision.
    logits = layers.Activation("linear", dtype="float32", name="logits")(logits)
    model = keras.Model(inputs, logits, name=name)
    if spec.batchnorm_momentum is not None:
        set_batchnorm_momentum(model, spec.batchnorm_momentum)
    if weights is not None:
        spec.pretrained(model, spec, weights)
    return model


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> None:
    """Set the moving-average momentum of every BatchNormalization layer (it is saved with the model)."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


def _score(features, num_classes, name):
    # Zero-initialised scoring layers, as in the paper ("we zero-initialize the class scoring layer").
    return layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name=name)(features)


def _upsample(scores, factor, name, trainable=True):
    up = layers.Conv2DTranspose(
        scores.shape[-1], 2 * factor, strides=factor, padding="same", use_bias=False,
        kernel_initializer=BilinearInitializer(), name=name,
    )
    up.trainable = trainable
    return up(scores)


def _fcn8_decoder(pool3, pool4, pool5, num_classes, spec, dropout_rate):
    pool3_scale, pool4_scale = spec.skip_scales
    x = layers.Conv2D(spec.fc_width, spec.fc6_kernel, padding="same", activation="relu", name="fc6")(pool5)
    x = layers.Dropout(dropout_rate, name="drop6")(x)
    x = layers.Conv2D(spec.fc_width, 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout_rate, name="drop7")(x)
    x = _upsample(_score(x, num_classes, "score_fr"), 2, "upscore2")
    pool4_scores = _score(layers.Rescaling(pool4_scale, name="scale_pool4")(pool4), num_classes, "score_pool4")
    x = layers.Add(name="fuse_pool4")([x, pool4_scores])
    x = _upsample(x, 2, "upscore_pool4")
    pool3_scores = _score(layers.Rescaling(pool3_scale, name="scale_pool3")(pool3), num_classes, "score_pool3")
    x = layers.Add(name="fuse_pool3")([x, pool3_scores])
    # The paper learns the x2 layers and keeps the final x8 fixed to bilinear interpolation.
    return _upsample(x, 8, "upscore8", trainable=False)


# ----------------------------------------------------------------------------------------------------
# VGG16's ImageNet weights, fully connected layers included.


def load_vgg16_weights(model: keras.Model, path: Path) -> None:
    """Copy VGG16 weights into the FCN: conv blocks as they are, fc1/fc2 reshaped into fc6/fc7."""
    vgg = _read_vgg16(path)
    for layer in vgg.layers:
        if layer.name.startswith("block") and layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    if not any(layer.name == "fc1" for layer in vgg.layers):
        log.warning("%s has no fully connected top: fc6/fc7 keep their random initialisation", path)
        return
    for dense_name, conv_name in (("fc1", "fc6"), ("fc2", "fc7")):
        kernel, bias = vgg.get_layer(dense_name).get_weights()
        conv = model.get_layer(conv_name)
        conv_shape = conv.kernel.shape
        conv.set_weights([dense_to_conv_kernel(kernel, tuple(conv_shape[:3])), bias])


def _read_vgg16(path: Path) -> keras.Model:
    # A file made with the top (fc1, fc2, predictions) only loads into a model with the top, and vice versa.
    errors = []
    for include_top in (True, False):
        shape = (224, 224, 3) if include_top else (None, None, 3)
        vgg = keras.applications.VGG16(include_top=include_top, weights=None, input_shape=shape)
        try:
            vgg.load_weights(path)
            return vgg
        except Exception as error:  # noqa: BLE001 - report both attempts together below
            errors.append(f"include_top={include_top}: {error}")
    raise ValueError(f"{path}: not a Keras VGG16 weights file ({'; '.join(errors)})")
