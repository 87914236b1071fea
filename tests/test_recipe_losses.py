"""Rare-class remedies: focal term and OHEM in the masked loss, softened median-frequency weights.

Each is checked on tiny hand-worked tensors, and "off" is checked to be exactly today's loss.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn import losses
from fcn.data import class_weights
from fcn.imageio import read_unchanged, write_png

IGNORE = losses.IGNORE_ID


def _per_pixel_ce(labels, logits):
    """-log softmax(logits)[label] in float64, 0 on ignored pixels (an independent reference)."""
    logits = np.asarray(logits, np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    valid = labels != IGNORE
    nll = -np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return np.where(valid, nll, 0.0), valid


@pytest.fixture
def batch():
    """(labels (2, 3, 4) with 5 ignored pixels, logits (2, 3, 4, 3)): 19 valid pixels, distinct losses."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 3, 4)).astype(np.int32)
    labels[0, 0, :3] = IGNORE
    labels[1, 2, 1:3] = IGNORE
    logits = rng.normal(0.0, 2.0, (2, 3, 4, 3)).astype(np.float32)
    return labels, logits


def test_off_settings_give_exactly_the_plain_loss(batch):
    labels, logits = batch
    weights = np.random.default_rng(3).uniform(0.5, 2.0, labels.shape).astype(np.float32)
    plain = losses.MaskedSparseCrossEntropy()
    off = losses.MaskedSparseCrossEntropy(focal_gamma=0.0, ohem_fraction=1.0, ohem_min_kept=0)
    assert float(off(labels, logits)) == float(plain(labels, logits))
    assert float(off(labels, logits, sample_weight=weights)) == float(plain(labels, logits, sample_weight=weights))


def test_focal_with_gamma_zero_is_the_plain_loss_and_hand_worked_otherwise():
    # Two pixels with two classes: logits (0, 0) -> p_true 1/2; (ln 3, 0) with label 0 -> p_true 3/4.
    labels = np.array([[[0, 0]]], np.int32)
    logits = np.array([[[[0.0, 0.0], [np.log(3.0), 0.0]]]], np.float32)
    ce = [np.log(2.0), np.log(4 / 3)]
    assert float(losses.MaskedSparseCrossEntropy(focal_gamma=0.0)(labels, logits)) == pytest.approx(np.mean(ce), rel=1e-6)
    focal = float(losses.MaskedSparseCrossEntropy(focal_gamma=2.0)(labels, logits))
    assert focal == pytest.approx(((1 / 2) ** 2 * ce[0] + (1 / 4) ** 2 * ce[1]) / 2, rel=1e-5)


def test_focal_matches_reference_and_skips_ignored_pixels(batch):
    labels, logits = batch
    nll, valid = _per_pixel_ce(labels, logits)
    expected = ((1 - np.exp(-nll)) ** 1.5 * nll)[valid].sum() / valid.sum()
    assert float(losses.MaskedSparseCrossEntropy(focal_gamma=1.5)(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_label_smoothing_is_keras_categorical_crossentropy_with_smoothed_one_hot_targets(batch):
    labels, logits = batch
    valid = labels != IGNORE
    one_hot = np.eye(3, dtype=np.float32)[np.where(valid, labels, 0)]
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, reduction=None)
    expected = keras.ops.convert_to_numpy(reference(one_hot, logits))[valid].mean()  # ignored pixels skipped
    smoothed = losses.MaskedSparseCrossEntropy(label_smoothing=0.1)
    assert float(smoothed(labels, logits)) == pytest.approx(float(expected), rel=1e-5)
    plain = float(losses.MaskedSparseCrossEntropy()(labels, logits))
    assert float(losses.MaskedSparseCrossEntropy(label_smoothing=0.0)(labels, logits)) == plain
    assert float(smoothed(labels, logits)) != pytest.approx(plain, rel=1e-3)
    # With a focal term, the factor is still the true class' own (1 - p)^gamma, on the smoothed term.
    nll, _ = _per_pixel_ce(labels, logits)
    terms = keras.ops.convert_to_numpy(reference(one_hot, logits))
    focal = ((1 - np.exp(-nll)) ** 2 * terms)[valid].mean()
    both = losses.MaskedSparseCrossEntropy(label_smoothing=0.1, focal_gamma=2.0)
    assert float(both(labels, logits)) == pytest.approx(focal, rel=1e-5)


def test_ohem_keeping_everything_is_the_plain_loss(batch):
    labels, logits = batch
    plain = float(losses.MaskedSparseCrossEntropy()(labels, logits))
    # min_kept larger than the valid pixels keeps them all, whatever the fraction.
    for loss_fn in (losses.MaskedSparseCrossEntropy(ohem_fraction=0.999),
                    losses.MaskedSparseCrossEntropy(ohem_fraction=0.1, ohem_min_kept=1000)):
        assert float(loss_fn(labels, logits)) == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize("fraction, min_kept, kept", [(0.25, 0, 5), (0.25, 7, 7), (0.5, 0, 10), (0.01, 0, 1)])
def test_ohem_averages_the_k_largest_valid_losses(batch, fraction, min_kept, kept):
    labels, logits = batch
    nll, valid = _per_pixel_ce(labels, logits)
    assert valid.sum() == 19  # k = max(ceil(fraction * 19), min_kept)
    expected = np.sort(nll[valid])[::-1][:kept].mean()
    loss_fn = losses.MaskedSparseCrossEntropy(ohem_fraction=fraction, ohem_min_kept=min_kept)
    assert float(loss_fn(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_ohem_never_counts_ignored_pixels_however_large_their_loss(batch):
    labels, logits = batch
    extreme = logits.copy()
    extreme[labels == IGNORE] = np.array([-1e4, 1e4, 1e4], np.float32)  # label 0 there would be a huge loss
    loss_fn = losses.MaskedSparseCrossEntropy(ohem_fraction=0.25)
    assert float(loss_fn(labels, extreme)) == pytest.approx(float(loss_fn(labels, logits)), rel=1e-6)
    all_ignored = np.full_like(labels, IGNORE)
    assert float(loss_fn(all_ignored, logits)) == 0.0


def test_ohem_with_sample_weights_weights_the_kept_pixels(batch):
    labels, logits = batch
    nll, valid = _per_pixel_ce(labels, logits)
    weights = np.random.default_rng(4).uniform(0.5, 2.0, labels.shape)
    hardest = np.zeros_like(valid)
    hardest[valid] = nll[valid] >= np.sort(nll[valid])[::-1][4]  # the 5 hardest, ranked without the weights
    expected = (weights * nll)[hardest].sum() / 5
    loss_fn = losses.MaskedSparseCrossEntropy(ohem_fraction=0.25)
    assert float(loss_fn(labels, logits, sample_weight=weights.astype(np.float32))) == pytest.approx(expected, rel=1e-5)


def test_ohem_gradient_is_zero_off_the_kept_pixels(batch):
    labels, logits = batch
    nll, valid = _per_pixel_ce(labels, logits)
    logits_var = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = losses.MaskedSparseCrossEntropy(ohem_fraction=0.25)(labels, logits_var)
    gradient = np.abs(tape.gradient(loss, logits_var).numpy()).sum(axis=-1)
    kept = valid & (nll >= np.sort(nll[valid])[::-1][4])
    assert (gradient[~kept] == 0).all() and (gradient[kept] > 0).all()


def test_new_settings_survive_serialization_and_are_checked():
    loss_fn = losses.MaskedSparseCrossEntropy(focal_gamma=2.0, ohem_fraction=0.3, ohem_min_kept=10, label_smoothing=0.1)
    again = keras.losses.deserialize(keras.losses.serialize(loss_fn))
    assert (again.focal_gamma, again.ohem_fraction, again.ohem_min_kept, again.label_smoothing) == (2.0, 0.3, 10, 0.1)
    for bad in ({"focal_gamma": -1.0}, {"ohem_fraction": 0.0}, {"ohem_fraction": 1.5}, {"ohem_min_kept": -1},
                {"label_smoothing": 1.0}, {"label_smoothing": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            losses.MaskedSparseCrossEntropy(**bad)


def test_sqrt_and_capped_median_frequency_weights_hand_worked():
    # freq = [10/16, 2/8, 4/8] -> median 0.5 -> plain weights [0.8, 2, 1]; an absent class keeps 0.
    plain = class_weights.median_frequency_weights(np.array([10, 2, 4, 0]), np.array([16, 8, 8, 0]))
    np.testing.assert_allclose(plain, [0.8, 2.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(class_weights.adjust_weights(plain), plain)
    sqrt = class_weights.adjust_weights(plain, "sqrt_median_frequency")
    np.testing.assert_allclose(sqrt, np.sqrt([0.8, 2.0, 1.0, 0.0]), rtol=1e-6)
    np.testing.assert_allclose(class_weights.adjust_weights(plain, max_weight=1.5), [0.8, 1.5, 1.0, 0.0], rtol=1e-6)
    capped_sqrt = class_weights.adjust_weights(plain, "sqrt_median_frequency", max_weight=1.2)
    np.testing.assert_allclose(capped_sqrt, [np.sqrt(0.8), 1.2, 1.0, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="weighting"):
        class_weights.adjust_weights(plain, "inverse_frequency")
    with pytest.raises(ValueError, match="max_weight"):
        class_weights.adjust_weights(plain, max_weight=0)


def test_cached_weights_apply_the_weighting_after_the_cache(tmp_path):
    paths = [write_png(tmp_path / f"{i}.png", np.array(labels, np.uint8)) for i, labels in
             enumerate([[[0, 0, 0, 1]] * 4, [[2, 2, 255, 0]] * 4])]

    cache = tmp_path / "cache"
    plain = class_weights.cached_median_frequency_weights(paths, read_unchanged, 3, cache)
    sqrt = class_weights.cached_median_frequency_weights(paths, read_unchanged, 3, cache, "sqrt_median_frequency", 1.1)
    np.testing.assert_allclose(sqrt, np.minimum(np.sqrt(plain), 1.1), rtol=1e-6)
    again = class_weights.cached_median_frequency_weights(paths, read_unchanged, 3, cache)
    np.testing.assert_array_equal(again, plain)  # the cache keeps the plain weights
