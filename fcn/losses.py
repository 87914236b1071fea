"""Losses and training-time metrics that skip the ignore id (255) on dense labels."""

import keras
from keras import ops

IGNORE_ID = 255


@keras.saving.register_keras_serializable(package="fcn")
class MaskedSparseCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy from logits, averaged over the labelled pixels of the batch only.

    y_true: (B, H, W) int, class ids or `ignore_id`; y_pred: (B, H, W, C) logits. Optional per-pixel
    sample weights (B, H, W) scale each pixel's term (class balancing); the mean stays over valid pixels.
    """

    def __init__(self, ignore_id: int = IGNORE_ID, name: str = "masked_sparse_ce", **kwargs):
        kwargs.pop("reduction", None)
        # "sum" of per-pixel terms already divided by the number of valid pixels = mean over valid pixels.
        super().__init__(name=name, reduction="sum", **kwargs)
        self.ignore_id = ignore_id

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        valid = ops.not_equal(y_true, self.ignore_id)
        safe_labels = ops.where(valid, y_true, 0)
        per_pixel = keras.losses.sparse_categorical_crossentropy(safe_labels, y_pred, from_logits=True)
        valid = ops.cast(valid, per_pixel.dtype)
        return per_pixel * valid / ops.maximum(ops.sum(valid), 1.0)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        return {**config, "ignore_id": self.ignore_id}


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
