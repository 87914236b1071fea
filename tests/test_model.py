"""FCN-8 model: convolutionalised fc layers, bilinear upsampling, any input size, parameter count, weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn import model as fcn_model


def _vgg16_fcn8_parameter_count(num_classes: int) -> int:
    """FCN-8s/VGG16 parameters counted by hand from the layer shapes (independent of Keras)."""
    conv_widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                   (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    encoder = sum(3 * 3 * cin * cout + cout for cin, cout in conv_widths)  # 14,714,688
    fc6 = 7 * 7 * 512 * 4096 + 4096  # VGG16's fc1 reshaped: 102,764,544
    fc7 = 4096 * 4096 + 4096  # fc2: 16,781,312
    scores = sum(cin * num_classes + num_classes for cin in (4096, 512, 256))  # score_fr, pool4, pool3
    upsampling = (4 * 4 + 4 * 4 + 16 * 16) * num_classes * num_classes  # x2, x2, x8 (no bias)
    return encoder + fc6 + fc7 + scores + upsampling


@pytest.fixture(scope="module")
def vgg16_fcn():
    return fcn_model.build_fcn8(2, encoder="vgg16", weights=None)


@pytest.mark.slow
def test_parameter_count_matches_the_paper(vgg16_fcn):
    # The paper (Table 1) gives 134M for FCN-VGG16. With 21 PASCAL classes the exact count is 134,489,759:
    # 134,260,544 in the VGG16 convolutions and fc6/fc7 + 102,207 in the three 1x1 score layers
    # + 127,008 in the three bilinear transposed convolutions.
    pascal = fcn_model.build_fcn8(21, encoder="vgg16", weights=None)
    assert pascal.count_params() == _vgg16_fcn8_parameter_count(21) == 134_489_759
    assert vgg16_fcn.count_params() == _vgg16_fcn8_parameter_count(2)


def test_final_upsampling_is_fixed_and_the_x2_layers_learn(vgg16_fcn):
    assert not vgg16_fcn.get_layer("upscore8").trainable
    assert vgg16_fcn.get_layer("upscore2").trainable and vgg16_fcn.get_layer("upscore_pool4").trainable
    fixed = sum(int(np.prod(w.shape)) for w in vgg16_fcn.non_trainable_weights)
    assert fixed == 16 * 16 * 2 * 2


@pytest.mark.slow
def test_output_has_the_input_size_for_odd_kitti_sizes(vgg16_fcn):
    for height, width in [(375, 1242), (370, 1226)]:
        logits = vgg16_fcn(np.zeros((1, height, width, 3), np.float32), training=False)
        assert tuple(logits.shape) == (1, height, width, 2)
        assert logits.dtype == tf.float32


@pytest.mark.parametrize("size", [(32, 32), (33, 65), (187, 621), (1, 1)])
def test_mini_encoder_any_size(size):
    model = fcn_model.build_fcn8(5, encoder="vgg16_mini", weights=None)
    logits = model(np.random.default_rng(0).uniform(0, 255, (2, *size, 3)).astype(np.float32))
    assert tuple(logits.shape) == (2, *size, 5)


def test_fc_to_conv_reshape_is_exact():
    rng = np.random.default_rng(0)
    block = rng.normal(size=(2, 7, 7, 512)).astype(np.float32)
    kernel = rng.normal(scale=0.01, size=(7 * 7 * 512, 64)).astype(np.float32)
    bias = rng.normal(size=(64,)).astype(np.float32)
    dense = keras.Sequential([keras.Input((7, 7, 512)), keras.layers.Flatten(), keras.layers.Dense(64)])
    dense.layers[-1].set_weights([kernel, bias])
    conv = keras.Sequential([keras.Input((7, 7, 512)), keras.layers.Conv2D(64, 7, padding="valid")])
    conv.layers[-1].set_weights([fcn_model.dense_to_conv_kernel(kernel, (7, 7, 512)), bias])
    expected = dense(block).numpy()
    np.testing.assert_allclose(conv(block).numpy()[:, 0, 0, :], expected, rtol=1e-4, atol=1e-4)


def test_fc_to_conv_rejects_wrong_shape():
    with pytest.raises(ValueError, match="inputs"):
        fcn_model.dense_to_conv_kernel(np.zeros((100, 4)), (7, 7, 512))


@pytest.mark.parametrize("factor", [2, 8])
def test_bilinear_kernel_upsamples_a_ramp_exactly(factor):
    # A linear ramp upsampled bilinearly (half-pixel centres) is the ramp sampled at (j + 0.5) / f - 0.5.
    size = 12
    ramp = np.add.outer(np.arange(size), 2 * np.arange(size)).astype(np.float32)  # x + 2y, both axes
    layer = keras.layers.Conv2DTranspose(1, 2 * factor, strides=factor, padding="same", use_bias=False,
                                         kernel_initializer=fcn_model.BilinearInitializer())
    up = layer(ramp[None, :, :, None]).numpy()[0, :, :, 0]
    positions = (np.arange(size * factor) + 0.5) / factor - 0.5
    expected = np.add.outer(positions, 2 * positions)
    interior = slice(factor, size * factor - factor)
    np.testing.assert_allclose(up[interior, interior], expected[interior, interior], atol=1e-4)


def test_bilinear_kernel_matches_fcn_upsample_filt():
    # Caffe FCN's upsample_filt(4) is the outer product of [0.25, 0.75, 0.75, 0.25].
    kernel = fcn_model.bilinear_kernel(4, 3)
    ramp = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(kernel[:, :, 1, 1], np.outer(ramp, ramp))
    assert kernel[:, :, 0, 1].sum() == 0  # channels do not mix


def test_score_layers_start_at_zero_so_initial_logits_are_zero():
    model = fcn_model.build_fcn8(3, encoder="vgg16_mini", weights=None)
    logits = model(np.random.default_rng(1).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32))
    assert np.all(logits.numpy() == 0)


def test_caffe_preprocessing_is_bgr_minus_means():
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
    out = fcn_model.CaffePreprocess()(rgb).numpy()[0, 0, 0]
    np.testing.assert_allclose(out, [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


@pytest.mark.slow
def test_local_vgg16_weights_are_copied_and_fc_layers_convolutionalised(tmp_path):
    vgg = keras.applications.VGG16(include_top=True, weights=None, input_shape=(224, 224, 3))
    path = tmp_path / "vgg16.weights.h5"
    vgg.save_weights(path)
    model = fcn_model.build_fcn8(2, encoder="vgg16", weights=path)
    np.testing.assert_array_equal(model.get_layer("block3_conv2").get_weights()[0],
                                  vgg.get_layer("block3_conv2").get_weights()[0])
    fc1_kernel, fc1_bias = vgg.get_layer("fc1").get_weights()
    fc6_kernel, fc6_bias = model.get_layer("fc6").get_weights()
    np.testing.assert_array_equal(fc6_kernel, fc1_kernel.reshape(7, 7, 512, 4096))
    np.testing.assert_array_equal(fc6_bias, fc1_bias)
    np.testing.assert_array_equal(model.get_layer("fc7").get_weights()[0][0, 0],
                                  vgg.get_layer("fc2").get_weights()[0])


@pytest.mark.slow
def test_not_a_weights_file_is_reported(tmp_path):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="bad.weights.h5"):
        fcn_model.build_fcn8(2, weights=bad)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        fcn_model.build_fcn8(2, weights=tmp_path / "missing.h5")


def test_offline_imagenet_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    # Port 9 (discard) on localhost refuses at once: the same failure as a machine without internet.
    monkeypatch.setattr(fcn_model, "VGG16_WEIGHTS_URL", "http://127.0.0.1:9/" + fcn_model.VGG16_WEIGHTS_FILE)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(RuntimeError) as error:
        fcn_model.build_fcn8(2, weights="imagenet")
    message = str(error.value)
    assert str(tmp_path / "models" / fcn_model.VGG16_WEIGHTS_FILE) in message
    assert "weights=" in message


def test_invalid_arguments():
    with pytest.raises(ValueError, match="encoder"):
        fcn_model.build_fcn8(2, encoder="resnet", weights=None)
    with pytest.raises(ValueError, match="pretrained"):
        fcn_model.build_fcn8(2, encoder="vgg16_mini", weights="imagenet")
    with pytest.raises(ValueError, match="num_classes"):
        fcn_model.build_fcn8(0, weights=None)


def test_saved_model_round_trip(tmp_path):
    model = fcn_model.build_fcn8(2, encoder="vgg16_mini", weights=None)
    model.get_layer("score_fr").set_weights([w + 0.1 for w in model.get_layer("score_fr").get_weights()])
    x = np.random.default_rng(2).uniform(0, 255, (1, 45, 70, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)
