"""Optimizers and learning-rate schedules: hand-worked values, the default path unchanged, resumed schedules."""

import math
import subprocess
import sys

import keras
import numpy as np
import pytest

from fcn import modelfile, optim
from fcn.data import synthetic
from fcn.model import build_fcn8
from fcn.train import TrainConfig, compile_model, fast_config, train


def _expected_rate(step, base, total, warmup, kind, power=0.9):
    # Written from the definition, independently of WarmupDecay's tensor code.
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(max((step - warmup) / (total - warmup), 0.0), 1.0)
    return base * (0.5 * (1 + math.cos(math.pi * t)) if kind == "cosine" else (1 - t) ** power)


@pytest.mark.parametrize("kind", ["cosine", "poly"])
def test_warmup_decay_values(kind):
    schedule = optim.WarmupDecay(0.01, total_steps=100, warmup_steps=10, kind=kind)
    for step in (0, 4, 9, 10, 11, 50, 99, 100, 150):
        assert float(schedule(step)) == pytest.approx(_expected_rate(step, 0.01, 100, 10, kind), rel=1e-5, abs=1e-9)
    assert float(schedule(0)) == pytest.approx(0.001) and float(schedule(100)) == pytest.approx(0.0, abs=1e-9)


def test_schedule_survives_saving():
    schedule = optim.WarmupDecay(0.02, total_steps=50, warmup_steps=5, kind="poly")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert [float(restored(s)) for s in (0, 7, 49)] == [float(schedule(s)) for s in (0, 7, 49)]


def test_default_recipe_is_plain_adam_at_a_constant_rate():
    model = compile_model(build_fcn8(2, encoder="vgg16_mini", weights=None), TrainConfig(weights=None), 2, 10)
    assert type(model.optimizer) is keras.optimizers.Adam
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)


def test_adamw_and_sgd_get_their_settings():
    config = TrainConfig(weights=None, optimizer="adamw", weight_decay=0.05, lr_schedule="cosine",
                         warmup_epochs=1, epochs=4)
    model = compile_model(build_fcn8(2, encoder="vgg16_mini", weights=None), config, 2, steps_per_epoch=3)
    assert type(model.optimizer) is optim.AdamW and model.optimizer.weight_decay == 0.05
    schedule = model.optimizer._learning_rate
    assert (schedule.total_steps, schedule.warmup_steps, schedule.kind) == (12, 3, "cosine")
    sgd = compile_model(build_fcn8(2, encoder="vgg16_mini", weights=None),
                        TrainConfig(weights=None, optimizer="sgd", weight_decay=5e-4), 2)
    assert type(sgd.optimizer) is optim.SGD and sgd.optimizer.momentum == 0.9


def _steps_with(optimizer, steps: int = 3) -> list[np.ndarray]:
    """A small dense model's weights after `steps` steps of `optimizer` on fixed data (TensorFlow, traced)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.random.default_rng(1).normal(size=(8, 2))
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model.get_weights()


@pytest.mark.parametrize("ours, keras_own", [
    (lambda rate: optim.AdamW(rate, weight_decay=0.1), lambda rate: keras.optimizers.AdamW(rate, weight_decay=0.1)),
    (lambda rate: optim.SGD(rate, momentum=0.9, weight_decay=0.1),
     lambda rate: keras.optimizers.SGD(rate, momentum=0.9, weight_decay=0.1)),
])
def test_weight_decay_at_one_rate_per_step_matches_keras(ours, keras_own):
    """fcn's AdamW and SGD take exactly Keras' steps, with a schedule (warm-up, then decay) and without."""
    for rate in (lambda: optim.WarmupDecay(0.05, total_steps=4, warmup_steps=1), lambda: 0.05):
        expected, got = _steps_with(keras_own(rate())), _steps_with(ours(rate()))
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_traced_step_computes_the_scheduled_rate_once():
    """One cosine in the traced training step: Keras' own AdamW evaluates the schedule once per decayed variable."""
    import tensorflow as tf

    def cosines(optimizer) -> int:
        variables = build_fcn8(2, encoder="vgg16_mini", weights=None).trainable_variables
        optimizer.build(variables)
        step = tf.function(lambda: optimizer.apply([tf.zeros_like(v) for v in variables], variables))
        graph = step.get_concrete_function().graph
        return [op.type for op in graph.get_operations()].count("Cos")

    schedule = lambda: optim.WarmupDecay(1e-3, total_steps=10, warmup_steps=2)  # noqa: E731
    assert cosines(optim.AdamW(schedule(), weight_decay=1e-4)) == 2  # the decay's and the update's
    assert cosines(keras.optimizers.AdamW(schedule(), weight_decay=1e-4)) > 20


def test_optimizers_survive_saving():
    for optimizer in (optim.AdamW(optim.WarmupDecay(1e-3, 10), weight_decay=0.01), optim.SGD(0.1, momentum=0.9)):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
        assert type(restored) is type(optimizer) and restored.get_config() == optimizer.get_config()


@pytest.mark.parametrize("settings, message", [
    (dict(optimizer="rmsprop"), "unknown optimizer"),
    (dict(lr_schedule="step"), "unknown lr_schedule"),
    (dict(weight_decay=0.01), "weight_decay"),  # plain adam has no decoupled decay
    (dict(warmup_epochs=1), "warmup_epochs"),  # a constant rate has no warm-up
    (dict(lr_schedule="poly", warmup_epochs=30), "warmup_epochs"),
])
def test_bad_recipe_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


@pytest.mark.slow
def test_cli_refuses_warmup_without_a_schedule(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fcn.cli", "train", "--fast", "--data-dir", str(tmp_path),
                             "--run-dir", str(tmp_path / "r"), "--warmup-epochs", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "warmup_epochs" in result.stderr


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash")


@pytest.mark.slow
def test_a_resumed_run_continues_its_schedule(tmp_path):
    data = synthetic.write_kitti_road(tmp_path / "data", images_per_category=3, test_images_per_category=1,
                                      scale=0.25, seed=1)
    config = fast_config(data_dir=str(data), run_dir=str(tmp_path / "run"), image_size=(32, 96), epochs=3,
                         max_train_images=4, max_val_images=2, optimizer="adamw", weight_decay=0.01,
                         lr_schedule="cosine", warmup_epochs=1)
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0, extra_callbacks=[_StopAfterFirstEpoch()])
    model, _ = train(config, verbose=0)
    steps = int(model.optimizer.iterations.numpy())
    assert steps == 3 * 2  # 4 images, batch 2: the step count went on from the checkpoint
    expected = _expected_rate(steps, 1e-3, total=6, warmup=2, kind="cosine")
    assert float(model.optimizer.learning_rate) == pytest.approx(expected, abs=1e-9)
    # The checkpoint (with its schedule) loads with Keras itself once fcn is imported.
    loaded = keras.saving.load_model(tmp_path / "run" / "best.keras")
    assert isinstance(loaded.optimizer._learning_rate, optim.WarmupDecay)
    assert modelfile.read_info(tmp_path / "run" / "best.keras")["dataset"] == "kitti_road"
    np.testing.assert_array_equal(loaded.get_layer("fc7").get_weights()[0],
                                  modelfile.load_model(tmp_path / "run" / "best.keras").get_layer("fc7").get_weights()[0])
