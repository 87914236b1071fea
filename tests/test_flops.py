"""FLOP counts: a hand-worked tiny network, and TensorFlow's own profiler on the FCN-8 encoders."""

import keras
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from fcn import flops
from fcn.model import build_fcn8


def test_hand_worked_layers():
    inputs = keras.Input((8, 10, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*10 outputs x 3*3*3 MACs x 4 filters
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*5 outputs x 3*3 MACs x 4 channels
    x = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same")(x)  # 4*5 inputs x 4*4*4 MACs x 2
    x = keras.layers.Dense(5)(x)  # 8*10 positions x 2 x 5
    model = keras.Model(inputs, x)
    macs = [8 * 10 * 27 * 4, 4 * 5 * 9 * 4, 4 * 5 * 16 * 4 * 2, 8 * 10 * 2 * 5]
    assert [flops.layer_flops(layer) for layer in model.layers[1:]] == [2 * m for m in macs]
    assert flops.count_flops(model) == 2 * sum(macs)


def test_grouped_convolution_counts_each_group_once():
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, keras.layers.Conv2D(6, 1, groups=2)(inputs))
    assert flops.count_flops(model) == 2 * 16 * (8 // 2) * 6


def test_a_model_without_fixed_size_is_refused():
    with pytest.raises(ValueError, match="fixed input size"):
        flops.count_flops(build_fcn8(2, encoder="vgg16_mini", weights=None))


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["vgg16_mini", "mobilenet_v2"])
def test_counts_agree_with_tensorflows_profiler(encoder):
    # TensorFlow's profiler also counts bias additions, BatchNorm and activations: a little more than ours.
    model = build_fcn8(3, encoder=encoder, weights=None, input_shape=(64, 96, 3))
    forward = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(
        forward.get_concrete_function(tf.TensorSpec((1, 64, 96, 3), tf.float32))).graph
    options = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), "output": "none"}
    profiled = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    counted = flops.count_flops(model)
    assert 0.97 * profiled <= counted <= profiled


def test_paper_model_costs_78_gflop_at_160x576():
    # The figure the project's guide quotes for FCN-8/VGG16 at 160x576.
    model = build_fcn8(2, encoder="vgg16", weights=None, input_shape=(160, 576, 3))
    assert round(flops.count_flops(model) / 1e9) == 78


def test_vgg16_matches_its_layer_table():
    # VGG16's 13 convolutions at 224 x 224 (Simonyan & Zisserman, table 1): ~15.3 G multiply-adds, the usual figure.
    blocks = [(224, [(3, 64), (64, 64)]), (112, [(64, 128), (128, 128)]), (56, [(128, 256)] + [(256, 256)] * 2),
              (28, [(256, 512)] + [(512, 512)] * 2), (14, [(512, 512)] * 3)]
    by_hand = sum(size * size * 3 * 3 * cin * cout for size, convs in blocks for cin, cout in convs)
    assert by_hand == 15_346_630_656
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))
    assert flops.count_flops(vgg) == 2 * by_hand
