"""Test-time augmentation, evaluation on any split and on a folder of one's own (issue 7).

Tiny synthetic data and a tiny untrained model: what is checked is which frames are scored and how the
probabilities are combined, not how good the model is.
"""


import keras
import numpy as np
import pytest
import tensorflow as tf

import fcn.model
import fcn.modelfile
from fcn import predict
from fcn.data import get_dataset, synthetic
from fcn.imageio import read_rgb

IMAGE_SIZE = (64, 96)  # the size the tiny model is recorded to run at


def _save_tiny_model(path, dataset: str):
    keras.utils.set_random_seed(0)
    info = get_dataset(dataset)
    model = fcn.model.build_fcn8(info.num_classes, encoder="vgg16_mini", weights=None)
    # FCN's decoder starts at zero (uniform probabilities); random weights make left and right differ.
    rng = np.random.default_rng(0)
    model.set_weights([w if w.any() else rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    fcn.modelfile.save_model(model, path, fcn.modelfile.model_info(dataset, info.class_names, IMAGE_SIZE,
                                                                    "vgg16_mini"))
    return model


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    """Synthetic CamVid (train 2, val 1, test 2 frames of 48x80) and a tiny CamVid model."""
    root = tmp_path_factory.mktemp("camvid")
    data = synthetic.generate("camvid", root, seed=0, train=2, val=1, test=2, height=48, width=80)
    model_path = root / "tiny.keras"
    model = _save_tiny_model(model_path, "camvid")
    return data, model_path, model


def _reference_scores(model, image, image_size):
    # Today's inference, written out independently: resize, network, softmax.
    x = tf.image.resize(tf.convert_to_tensor(image[None]), image_size, method="bilinear")
    return tf.nn.softmax(model(tf.cast(x, tf.float32), training=False), axis=-1)[0].numpy()


def test_tta_off_is_todays_result(camvid):
    data, _, model = camvid
    image = read_rgb(next((data / "test").glob("*.png")))
    expected = _reference_scores(model, image, IMAGE_SIZE)
    assert np.array_equal(predict.predict_scores(model, image, IMAGE_SIZE), expected)
    assert np.array_equal(predict.predict_scores(model, image, IMAGE_SIZE, tta_scales=[1], tta_flip=False),
                          expected)


def test_tta_flip_gives_mirrored_predictions_for_a_mirrored_image(camvid):
    _, _, model = camvid
    image = np.random.default_rng(0).integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8)
    mirror = np.ascontiguousarray(image[:, ::-1])
    plain = predict.predict_scores(model, image, IMAGE_SIZE)
    assert not np.array_equal(predict.predict_scores(model, mirror, IMAGE_SIZE), plain[:, ::-1])  # no TTA: no
    with_flip = predict.predict_scores(model, image, IMAGE_SIZE, tta_flip=True)
    assert np.array_equal(predict.predict_scores(model, mirror, IMAGE_SIZE, tta_flip=True), with_flip[:, ::-1])
    # The average of the image's and the mirrored image's (mirrored back) probabilities, by hand:
    np.testing.assert_allclose(with_flip, (plain + _reference_scores(model, mirror, IMAGE_SIZE)[:, ::-1]) / 2,
                               atol=1e-6)
    assert np.array_equal(predict.predict_labels(model, mirror, IMAGE_SIZE, tta_flip=True),
                          predict.predict_labels(model, image, IMAGE_SIZE, tta_flip=True)[:, ::-1])


def test_tta_scales_average_probabilities_at_the_base_size(camvid):
    _, _, model = camvid
    image = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    scores = predict.predict_scores(model, image, IMAGE_SIZE, tta_scales=(0.75, 1.0, 1.25), tta_flip=True)
    assert scores.shape == (*IMAGE_SIZE, 11)
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)
    assert predict.predict_labels(model, image, IMAGE_SIZE, tta_scales=(0.75, 1.25)).shape == (48, 80)
    with pytest.raises(ValueError, match="above 0"):
        predict.predict_scores(model, image, IMAGE_SIZE, tta_scales=(1.0, 0.0))
