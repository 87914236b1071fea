"""Masked cross-entropy and pixel accuracy against a numpy reference and hand-worked cases."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn import losses

IGNORE = losses.IGNORE_ID
BATCH, HEIGHT, WIDTH, CLASSES = 2, 3, 4, 3


def _reference_cross_entropy(labels, logits, weights=None, ignore_id=IGNORE) -> float:
    """sum(weight * -log softmax(logits)[label]) over valid pixels / number of valid pixels, in float64."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    valid = labels != ignore_id
    nll = -np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    weights = np.ones(labels.shape) if weights is None else np.asarray(weights, np.float64)
    return float((weights * nll)[valid].sum() / max(valid.sum(), 1))


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


@pytest.fixture
def batch():
    """(labels, logits): (2, 3, 4) int32 with 5 ignored pixels, (2, 3, 4, 3) float32 logits."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, (BATCH, HEIGHT, WIDTH)).astype(np.int32)
    labels[0, 0, :3] = IGNORE
    labels[1, 2, 1:3] = IGNORE
    logits = rng.normal(0.0, 2.0, (BATCH, HEIGHT, WIDTH, CLASSES)).astype(np.float32)
    return labels, logits


def test_matches_numpy_reference(batch):
    labels, logits = batch
    assert (labels == IGNORE).sum() == 5
    loss = float(losses.MaskedSparseCrossEntropy()(labels, logits))
    assert loss == pytest.approx(_reference_cross_entropy(labels, logits), rel=1e-5)
    # The mean runs over the 19 valid pixels, not all 24: an unmasked mean would differ.
    unmasked = _reference_cross_entropy(np.where(labels == IGNORE, 0, labels), logits)
    assert loss != pytest.approx(unmasked, rel=1e-3)


def test_without_ignored_pixels_equals_keras_sparse_cross_entropy(batch):
    _, logits = batch
    labels = np.random.default_rng(1).integers(0, CLASSES, (BATCH, HEIGHT, WIDTH))
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert float(losses.MaskedSparseCrossEntropy()(labels, logits)) == pytest.approx(float(keras_loss), rel=1e-5)


def test_ignored_pixels_do_not_change_the_loss_whatever_their_logits(batch):
    labels, logits = batch
    loss_fn = losses.MaskedSparseCrossEntropy()
    ignored = labels == IGNORE
    extreme = logits.copy()
    extreme[ignored] = np.array([1e4, -1e4, 0.0], np.float32)
    shuffled = logits.copy()
    shuffled[ignored] = np.random.default_rng(2).normal(0.0, 50.0, (ignored.sum(), CLASSES))
    expected = float(loss_fn(labels, logits))
    assert np.isfinite(expected)
    assert float(loss_fn(labels, extreme)) == pytest.approx(expected, rel=1e-6)
    assert float(loss_fn(labels, shuffled)) == pytest.approx(expected, rel=1e-6)


def test_gradient_is_zero_on_ignored_pixels_and_softmax_minus_onehot_elsewhere(batch):
    labels, logits = batch
    logits_var = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = losses.MaskedSparseCrossEntropy()(labels, logits_var)
    gradient = tape.gradient(loss, logits_var).numpy()
    valid = labels != IGNORE
    onehot = np.eye(CLASSES)[np.where(valid, labels, 0)]
    expected = (_softmax(logits.astype(np.float64)) - onehot) * valid[..., None] / valid.sum()
    np.testing.assert_allclose(gradient, expected, atol=1e-6)
    assert np.all(gradient[~valid] == 0.0)


def test_all_ignored_batch_gives_zero_not_nan(batch):
    _, logits = batch
    labels = np.full((BATCH, HEIGHT, WIDTH), IGNORE, np.int32)
    logits_var = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = losses.MaskedSparseCrossEntropy()(labels, logits_var)
    assert float(loss) == 0.0
    gradient = tape.gradient(loss, logits_var).numpy()
    assert np.all(gradient == 0.0)


def test_sample_weight_scales_terms_but_mean_stays_over_valid_pixels(batch):
    labels, logits = batch
    weights = np.random.default_rng(3).uniform(0.0, 4.0, labels.shape).astype(np.float32)
    loss = float(losses.MaskedSparseCrossEntropy()(labels, logits, sample_weight=weights))
    assert loss == pytest.approx(_reference_cross_entropy(labels, logits, weights), rel=1e-5)
    # Dividing by the weights' sum instead of the valid-pixel count would give this, which must differ.
    weighted_mean = _reference_cross_entropy(labels, logits, weights) * (labels != IGNORE).sum()
    assert loss != pytest.approx(weighted_mean / weights[labels != IGNORE].sum(), rel=1e-3)
    # Weights on ignored pixels count for nothing.
    heavy_on_ignored = np.where(labels == IGNORE, 1e6, weights).astype(np.float32)
    assert float(losses.MaskedSparseCrossEntropy()(labels, logits, sample_weight=heavy_on_ignored)) == (
        pytest.approx(loss, rel=1e-6))


def test_custom_ignore_id(batch):
    labels, logits = batch
    relabelled = np.where(labels == IGNORE, 7, labels)
    loss = float(losses.MaskedSparseCrossEntropy(ignore_id=7)(relabelled, logits))
    assert loss == pytest.approx(_reference_cross_entropy(labels, logits), rel=1e-5)


def _tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((HEIGHT, WIDTH, 2))
    return keras.Model(inputs, keras.layers.Conv2D(CLASSES, 1, name="score")(inputs))


def test_compiled_model_reports_the_standalone_loss_and_accuracy(batch):
    labels, _ = batch
    images = np.random.default_rng(4).normal(size=(BATCH, HEIGHT, WIDTH, 2)).astype(np.float32)
    weights = np.random.default_rng(5).uniform(0.5, 2.0, labels.shape).astype(np.float32)
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=losses.MaskedSparseCrossEntropy(),
                  metrics=[losses.PixelAccuracy()])

    logits_before = model.predict(images, verbose=0)
    history = model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    # fit reports the loss of its one step, computed before the weights were updated.
    assert history.history["loss"][0] == pytest.approx(_reference_cross_entropy(labels, logits_before), rel=1e-5)

    logits_after = model.predict(images, verbose=0)
    assert not np.allclose(logits_after, logits_before)
    scores = model.evaluate(images, labels, batch_size=BATCH, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(_reference_cross_entropy(labels, logits_after), rel=1e-5)
    valid = labels != IGNORE
    expected_accuracy = (logits_after.argmax(-1) == labels)[valid].mean()
    assert scores["pixel_accuracy"] == pytest.approx(expected_accuracy, abs=1e-6)

    weighted = model.evaluate(images, labels, sample_weight=weights, batch_size=BATCH, verbose=0,
                              return_dict=True)
    assert weighted["loss"] == pytest.approx(_reference_cross_entropy(labels, logits_after, weights), rel=1e-5)


def test_loss_config_round_trip():
    loss = losses.MaskedSparseCrossEntropy(ignore_id=7, name="ce")
    config = loss.get_config()
    assert config["ignore_id"] == 7 and config["name"] == "ce"
    assert "reduction" not in config
    restored = losses.MaskedSparseCrossEntropy.from_config(config)
    assert (restored.ignore_id, restored.name, restored.reduction) == (7, "ce", "sum")
    # Through Keras' registry, as when a saved model is loaded.
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(revived, losses.MaskedSparseCrossEntropy) and revived.ignore_id == 7


def test_a_requested_reduction_is_overridden():
    # The class divides by the valid-pixel count itself, so any other reduction would be wrong.
    assert losses.MaskedSparseCrossEntropy(reduction="sum_over_batch_size").reduction == "sum"


def test_saved_model_keeps_loss_and_metric(batch, tmp_path):
    model = _tiny_model()
    model.compile(optimizer="sgd", loss=losses.MaskedSparseCrossEntropy(ignore_id=9),
                  metrics=[losses.PixelAccuracy(ignore_id=9)])
    model.save(tmp_path / "tiny.keras")
    loaded = keras.models.load_model(tmp_path / "tiny.keras")
    assert isinstance(loaded.loss, losses.MaskedSparseCrossEntropy) and loaded.loss.ignore_id == 9
    labels = np.where(batch[0] == IGNORE, 9, batch[0])
    images = np.random.default_rng(6).normal(size=(BATCH, HEIGHT, WIDTH, 2)).astype(np.float32)
    scores = loaded.evaluate(images, labels, batch_size=BATCH, verbose=0, return_dict=True)
    logits = loaded.predict(images, verbose=0)
    valid = labels != 9
    assert scores["loss"] == pytest.approx(_reference_cross_entropy(labels, logits, ignore_id=9), rel=1e-5)
    assert scores["pixel_accuracy"] == pytest.approx((logits.argmax(-1) == labels)[valid].mean(), abs=1e-6)


def _one_hot_logits(predicted: np.ndarray, num_classes: int = CLASSES) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[predicted]


def test_pixel_accuracy_hand_worked():
    # 6 pixels, 2 ignored; of the other 4, (0,0), (0,1) and (1,0) are right and (1,2) is wrong: 3/4.
    labels = np.array([[[0, 1, IGNORE], [2, IGNORE, 1]]])
    predicted = np.array([[[0, 1, 2], [2, 0, 0]]])
    metric = losses.PixelAccuracy()
    metric.update_state(labels, _one_hot_logits(predicted))
    assert float(metric.result()) == pytest.approx(0.75)
    assert (float(metric.correct), float(metric.total)) == (3.0, 4.0)


def test_pixel_accuracy_accumulates_and_resets():
    metric = losses.PixelAccuracy()
    metric.update_state(np.array([[[0, 1, IGNORE], [2, IGNORE, 1]]]),
                        _one_hot_logits(np.array([[[0, 1, 2], [2, 0, 0]]])))
    # Second batch: 2 valid pixels, 1 right; totals are pooled over pixels: (3 + 1) / (4 + 2).
    metric.update_state(np.array([[[1, 0], [IGNORE, IGNORE]]]), _one_hot_logits(np.array([[[1, 2], [0, 0]]])))
    assert float(metric.result()) == pytest.approx(4 / 6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_pixel_accuracy_all_ignored_is_zero_not_nan():
    metric = losses.PixelAccuracy()
    metric.update_state(np.full((1, 2, 2), IGNORE), np.zeros((1, 2, 2, CLASSES), np.float32))
    assert float(metric.result()) == 0.0


def test_pixel_accuracy_matches_numpy_on_random_logits(batch):
    labels, logits = batch
    metric = losses.PixelAccuracy()
    metric.update_state(labels, logits)
    valid = labels != IGNORE
    assert float(metric.result()) == pytest.approx((logits.argmax(-1) == labels)[valid].mean(), abs=1e-6)


def test_pixel_accuracy_config_round_trip():
    metric = losses.PixelAccuracy(ignore_id=7, name="acc")
    restored = losses.PixelAccuracy.from_config(metric.get_config())
    assert (restored.ignore_id, restored.name) == (7, "acc")
    restored.update_state(np.array([[[0, 7]]]), _one_hot_logits(np.array([[[0, 1]]])))
    assert float(restored.result()) == 1.0
