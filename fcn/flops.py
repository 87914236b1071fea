"""Floating-point operations of a network, counted from its layers (1 multiply-add = 2 FLOPs).

Convolutions, depthwise and transposed convolutions and dense layers are counted; they are over 99 % of an
FCN's arithmetic (activations, BatchNorm, pooling and additions are one FLOP per element or less, and left
out, as papers do when they quote a network's GFLOPs). A training step costs about three forward passes:
the forward pass, then the gradients with respect to the inputs and to the weights, each as costly again.
"""

import math

import keras
from keras import layers

TRAINING_STEP_FORWARDS = 3


def layer_flops(layer: keras.layers.Layer) -> int:
    """FLOPs of one call of `layer` on a single image (its input and output shapes must be static)."""
    if isinstance(layer, layers.DepthwiseConv2D):
        _, height, width, channels = layer.output.shape
        kernel_h, kernel_w = layer.kernel_size
        return 2 * height * width * kernel_h * kernel_w * channels * layer.depth_multiplier
    if isinstance(layer, layers.Conv2DTranspose):
        # Every input pixel scatters a kernel_h x kernel_w x out_channels block.
        _, height, width, in_channels = layer.input.shape
        kernel_h, kernel_w = layer.kernel_size
        return 2 * height * width * kernel_h * kernel_w * in_channels * layer.filters
    if isinstance(layer, layers.Conv2D):
        _, height, width, out_channels = layer.output.shape
        kernel_h, kernel_w = layer.kernel_size
        in_channels = layer.input.shape[-1]
        return 2 * height * width * kernel_h * kernel_w * in_channels // layer.groups * out_channels
    if isinstance(layer, layers.Dense):
        positions = math.prod(layer.input.shape[1:-1])
        return 2 * positions * layer.input.shape[-1] * layer.units
    return 0


def count_flops(model: keras.Model) -> int:
    """Forward-pass FLOPs per image of a model built with a fixed input size, e.g.
    `build_fcn8(2, input_shape=(160, 576, 3))`."""
    if any(size is None for size in model.input_shape[1:]):
        raise ValueError(f"{model.name}: FLOPs need a fixed input size, got input shape {model.input_shape}")
    return sum(layer_flops(layer) for layer in _all_layers(model))


def _all_layers(model):
    # keras.applications backbones built on an input tensor are flattened into the model; nested models
    # (a backbone kept as one layer) are walked into.
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer
