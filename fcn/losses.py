"""Losses and training-time metrics that skip the ignore id (255) on dense labels."""

import keras
from keras import ops

IGNORE_ID = 255


@keras.saving.register_keras_serializable(package="fcn")
class MaskedSparseCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy from logits, averaged over the labelled pixels of the batch only.

    y_true: (B, H, W) int, class ids or `ignore_id`; y_pred: (B, H, W, C) logits. Optional per-pixel
    sample weights (B, H, W) scale each pixel's term (class balancing); the mean stays over valid pixels.

    `label_smoothing` eps > 0 trains towards (1 - eps) on the true class and eps / C on every class (Szegedy et
    al., 2016), as Keras' CategoricalCrossentropy(label_smoothing=eps) does on one-hot labels: each pixel's term
    is (1 - eps) * CE + eps * the mean over classes of -log p.

    Two switchable remedies for rare classes, both off by default (then the loss is the plain masked CE):
    `focal_gamma` > 0 scales each pixel's CE by (1 - p_true)^gamma (Lin et al., 2017), so pixels already
    classified well count less; `ohem_fraction` < 1 keeps only the hardest pixels (online hard-example
    mining / bootstrapped CE): the top `ohem_fraction` of the batch's valid pixels by loss, at least
    `ohem_min_kept` of them, and averages over those (ties at the cut are all kept).
    """

    def __init__(self, ignore_id: int = IGNORE_ID, focal_gamma: float = 0.0, ohem_fraction: float = 1.0,
                 ohem_min_kept: int = 0, label_smoothing: float = 0.0, name: str = "masked_sparse_ce", **kwargs):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        if not 0 < ohem_fraction <= 1:
            raise ValueError(f"ohem_fraction must be in (0, 1], got {ohem_fraction}")
        if ohem_min_kept < 0:
            raise ValueError(f"ohem_min_kept must be >= 0, got {ohem_min_kept}")
        kwargs.pop("reduction", None)
        # "sum" of per-pixel terms already divided by the number of valid pixels = mean over valid pixels.
        super().__init__(name=name, reduction="sum", **kwargs)
        self.ignore_id = ignore_id
        self.focal_gamma = float(focal_gamma)
        self.ohem_fraction = float(ohem_fraction)
        self.ohem_min_kept = int(ohem_min_kept)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        valid = ops.not_equal(y_true, self.ignore_id)
        safe_labels = ops.where(valid, y_true, 0)
        if self.label_smoothing:  # one log-softmax for both terms
            log_probs = ops.log_softmax(y_pred, axis=-1)
            cross_entropy = -ops.squeeze(ops.take_along_axis(log_probs, safe_labels[..., None], axis=-1), -1)
            uniform = -ops.mean(log_probs, axis=-1)
            per_pixel = (1.0 - self.label_smoothing) * cross_entropy + self.label_smoothing * uniform
        else:
            cross_entropy = keras.losses.sparse_categorical_crossentropy(safe_labels, y_pred, from_logits=True)
            per_pixel = cross_entropy
        if self.focal_gamma:  # its factor comes from the true class' own probability, exp(-CE)
            per_pixel = _focal_factor(cross_entropy, self.focal_gamma) * per_pixel
        if self.ohem_fraction < 1.0:
            valid = _hardest_pixels(per_pixel, valid, self.ohem_fraction, self.ohem_min_kept)
        valid = ops.cast(valid, per_pixel.dtype)
        return per_pixel * valid / ops.maximum(ops.sum(valid), 1.0)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        return {**config, "ignore_id": self.ignore_id, "focal_gamma": self.focal_gamma,
                "ohem_fraction": self.ohem_fraction, "ohem_min_kept": self.ohem_min_kept,
                "label_smoothing": self.label_smoothing}


def _focal_factor(cross_entropy, gamma: float):
    # (1 - p_true)^gamma with p_true = exp(-CE); part of the loss (gradients flow through it, as in the paper).
    return ops.power(1.0 - ops.exp(-cross_entropy), gamma)


def _hardest_pixels(per_pixel, valid, fraction: float, min_kept: int):
    """The valid pixels whose loss is among the k largest, k = max(ceil(fraction * valid), min_kept)."""
    valid_count = ops.sum(ops.cast(valid, "int32"))
    k = ops.maximum(ops.cast(ops.ceil(fraction * ops.cast(valid_count, "float32")), "int32"), min_kept)
    k = ops.maximum(ops.minimum(k, valid_count), 1)
    # Losses are >= 0, so ignored pixels set to -1 sort below every valid one.
    flat = ops.reshape(ops.where(valid, ops.stop_gradient(per_pixel), -1.0), [-1])
    threshold = ops.take(ops.sort(flat), ops.shape(flat)[0] - k)
    return ops.logical_and(valid, ops.greater_equal(ops.stop_gradient(per_pixel), threshold))


@keras.saving.register_keras_serializable(package="fcn")
class PixelAccuracy(keras.metrics.Metric):
    """Fraction of labelled pixels whose arg-max class is right (ignore id excluded)."""

    def __init__(self, ignore_id: int = IGNORE_ID, name: str = "pixel_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_id = ignore_id
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        valid = ops.not_equal(y_true, self.ignore_id)
        hits = ops.logical_and(valid, ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true))
        self.correct.assign_add(ops.sum(ops.cast(hits, "float32")))
        self.total.assign_add(ops.sum(ops.cast(valid, "float32")))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)

    def get_config(self):
        return {**super().get_config(), "ignore_id": self.ignore_id}
