"""Every encoder of the registry under the FCN-8 decoder: sizes, strides, a training step, saving, weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras.src.utils.file_utils as keras_file_utils  # what keras.applications downloads with
import numpy as np
import pytest
import tensorflow as tf

from fcn import model as fcn_model
from fcn import modelfile
from fcn.cli import build_parser

NUM_CLASSES = 3
ENCODERS = sorted(fcn_model.ENCODERS)
# The paper's VGG16 is vgg16_mini's layers at 4x the width: training it (134M parameters, Adam) and saving it
# (a 540 MB file) would add half a minute and exercise no other code, so those two tests leave it out.
QUICK_ENCODERS = [name for name in ENCODERS if name != "vgg16"]
# The light encoders and the keras.applications backbone a person would save weights from.
BACKBONES = {
    "mobilenet_v2": lambda **kwargs: keras.applications.MobileNetV2(include_top=False, **kwargs),
    "mobilenet_v3_large": lambda **kwargs: keras.applications.MobileNetV3Large(include_top=False, **kwargs),
}


def _images(batch, height, width, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=ENCODERS)
def built(request):
    """(encoder name, its FCN-8 with random weights), built once for the tests that only run it."""
    return request.param, fcn_model.build_fcn8(NUM_CLASSES, encoder=request.param, weights=None)


def test_light_encoders_are_registered():
    assert set(BACKBONES) <= set(fcn_model.ENCODERS)
    assert {"vgg16", "vgg16_mini"} <= set(fcn_model.ENCODERS)


def test_a_new_encoder_is_one_registered_function(monkeypatch):
    monkeypatch.setattr(fcn_model, "ENCODERS", dict(fcn_model.ENCODERS))

    @fcn_model.register_encoder("tiny", preprocess=lambda x: x, fc6_kernel=1, fc_width=4)
    def tiny(x, weights=None):
        maps = []
        for _ in range(5):
            x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)
            maps.append(x)
        return maps[2], maps[3], maps[4]

    logits = fcn_model.build_fcn8(NUM_CLASSES, encoder="tiny", weights=None)(_images(1, 37, 41))
    assert tuple(logits.shape) == (1, 37, 41, NUM_CLASSES)
    with pytest.raises(ValueError, match="already registered"):
        fcn_model.register_encoder("tiny", preprocess=None, fc6_kernel=1, fc_width=4)(tiny)
    with pytest.raises(ValueError, match="pretrained"):
        fcn_model.build_fcn8(NUM_CLASSES, encoder="tiny", weights="imagenet")


@pytest.mark.parametrize("size", [(75, 250), (64, 192)])
def test_output_has_the_input_size(built, size):
    _, model = built
    logits = model(_images(1, *size), training=False)
    assert tuple(logits.shape) == (1, *size, NUM_CLASSES)
    assert logits.dtype == tf.float32


@pytest.mark.parametrize("name", ENCODERS)
def test_registry_returns_maps_at_strides_8_16_32(name):
    padded = (96, 224)  # what a 75x200 image becomes: multiples of 32
    maps = fcn_model.ENCODERS[name].features(keras.Input((*padded, 3)))
    assert [tuple(m.shape[1:3]) for m in maps] == [(96 // s, 224 // s) for s in (8, 16, 32)]


def test_decoder_takes_its_skips_from_strides_8_16_32(built):
    _, model = built
    taps = keras.Model(model.input, [model.get_layer(n).input for n in ("scale_pool3", "scale_pool4", "fc6")])
    shapes = [tuple(t.shape[1:3]) for t in taps(_images(1, 75, 250))]  # padded to 96x256
    assert shapes == [(12, 32), (6, 16), (3, 8)]


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK_ENCODERS)
def test_training_steps_change_the_weights(name):
    model = fcn_model.build_fcn8(NUM_CLASSES, encoder=name, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)  # tracing a train step takes longer than two eager steps
    images = _images(2, 64, 96)
    labels = np.random.default_rng(1).integers(0, NUM_CLASSES, (2, 64, 96)).astype(np.int32)
    before = [w.numpy().copy() for w in model.trainable_weights]
    losses = [float(model.train_on_batch(images, labels)) for _ in range(2)]
    assert np.all(np.isfinite(losses))
    # The score layers start at zero, so step 1 moves only them; from step 2 on, gradients reach the encoder.
    unchanged = [w.path for w, old in zip(model.trainable_weights, before, strict=True)
                 if np.array_equal(w.numpy(), old)]
    assert unchanged == []


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK_ENCODERS)
def test_saved_model_reloads_with_identical_outputs(name, tmp_path):
    model = fcn_model.build_fcn8(NUM_CLASSES, encoder=name, weights=None)
    for layer in ("score_fr", "score_pool4", "score_pool3"):  # zero at init: make the outputs non-trivial
        kernel, bias = model.get_layer(layer).get_weights()
        model.get_layer(layer).set_weights([kernel + 0.01, bias + 0.1])
    info = modelfile.model_info("synthetic", ["a", "b", "c"], (64, 192), name)
    path = modelfile.save_model(model, tmp_path / f"{name}.keras", info)
    loaded = modelfile.load_model(path)
    images = _images(1, 45, 70, seed=2)
    expected = model(images, training=False).numpy()
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(loaded(images, training=False).numpy(), expected, rtol=1e-6, atol=1e-6)
    assert modelfile.read_info(path)["encoder"] == name


def test_mixed_precision_still_gives_float32_logits():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = fcn_model.build_fcn8(NUM_CLASSES, encoder="mobilenet_v2", weights=None)
        logits = model(_images(1, 33, 65))
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("block_6_expand").compute_dtype == "float16"
    assert logits.dtype == tf.float32 and tuple(logits.shape) == (1, 33, 65, NUM_CLASSES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_local_backbone_weights_arrive(name, tmp_path):
    # A backbone as a person saves it, with every variable (batch-norm statistics too) set to known values.
    backbone = BACKBONES[name](weights=None)
    rng = np.random.default_rng(3)
    for variable in backbone.weights:
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    path = tmp_path / f"{name}.weights.h5"
    backbone.save_weights(path)
    model = fcn_model.build_fcn8(2, encoder=name, weights=path)
    copied = [layer for layer in backbone.layers if layer.weights]
    assert len(copied) > 50
    for layer in copied:
        for got, expected in zip(model.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_bad_local_weights_are_reported(tmp_path):
    # One light encoder: they all load through keras.applications the same way.
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="bad.weights.h5"):
        fcn_model.build_fcn8(2, encoder="mobilenet_v2", weights=bad)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        fcn_model.build_fcn8(2, encoder="mobilenet_v2", weights=tmp_path / "missing.h5")


def _offline(requests):
    """A get_file that records what it was asked for and fails as on a machine without internet."""

    def get_file(fname=None, origin=None, file_hash=None, **kwargs):
        requests.append((fname, origin, file_hash))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno 101] Network is unreachable")

    return get_file


def test_offline_imagenet_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    # The download is replaced by its failure on a machine without internet (a real one may take long to fail).
    requests = []
    monkeypatch.setattr(keras.utils, "get_file", _offline(requests))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(RuntimeError) as error:
        fcn_model.build_fcn8(2, encoder="mobilenet_v3_large", weights="imagenet")
    [(file_name, url, _)] = requests
    message = str(error.value)
    assert str(tmp_path / "models" / file_name) in message and url in message
    assert "weights=" in message and "Network is unreachable" in message


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")  # keras: ImageNet weights are for 224x224
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_imagenet_file_is_the_one_keras_applications_downloads(name, monkeypatch):
    ours, theirs = [], []
    monkeypatch.setattr(keras.utils, "get_file", _offline(ours))
    monkeypatch.setattr(keras_file_utils, "get_file", _offline(theirs))
    with pytest.raises(RuntimeError):
        fcn_model.build_fcn8(2, encoder=name, weights="imagenet")
    with pytest.raises(Exception, match="URL fetch failure"):
        BACKBONES[name](weights="imagenet", input_shape=(None, None, 3))
    assert ours == theirs and len(ours) == 1


def test_command_line_offers_every_encoder():
    for name in fcn_model.ENCODERS:
        args = build_parser().parse_args(["train", "--data-dir", "d", "--run-dir", "r", "--encoder", name])
        assert args.encoder == name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_light_encoders_batchnorm_tracks_recent_batches(name, tmp_path):
    # keras.applications' 0.999 leaves the moving statistics of a model trained from scratch stale; the light
    # encoders use LIGHT_BATCHNORM_MOMENTUM, in a training step and after saving and loading.
    net = fcn_model.build_fcn8(NUM_CLASSES, encoder=name, weights=None)
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) > 10 and {layer.momentum for layer in norms} == {fcn_model.LIGHT_BATCHNORM_MOMENTUM}
    first = norms[0]
    before = np.array(first.moving_mean)
    images = _images(2, 64, 64)
    batch_mean = np.mean(np.array(keras.Model(net.input, first.input)(images)), axis=(0, 1, 2))
    net(images, training=True)
    expected = fcn_model.LIGHT_BATCHNORM_MOMENTUM * before + (1 - fcn_model.LIGHT_BATCHNORM_MOMENTUM) * batch_mean
    np.testing.assert_allclose(np.array(first.moving_mean), expected, rtol=1e-4, atol=1e-5)
    path = tmp_path / "model.keras"
    net.save(path)
    loaded = keras.models.load_model(path)
    assert {layer.momentum for layer in loaded.layers if isinstance(layer, keras.layers.BatchNormalization)} == {
        fcn_model.LIGHT_BATCHNORM_MOMENTUM}


def test_vgg_encoders_have_no_batchnorm_to_set():
    assert fcn_model.ENCODERS["vgg16"].batchnorm_momentum is None
