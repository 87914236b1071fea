"""An exponential moving average of the weights (`--ema`): validation and the model files use the average,
training goes on with the weights themselves, after a resume too."""

import keras
import numpy as np
import pytest

from fcn import modelfile, predict
from fcn.data import synthetic
from fcn.train import TrainConfig, build_datasets, fast_config, train

MOMENTUM = 0.6


@pytest.fixture(scope="module")
def road_data(tmp_path_factory):
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=3,
                                      test_images_per_category=1, scale=0.25, seed=5)


def _tiny(road_data, run_dir, epochs):
    # 4 training images in batches of 2: two steps an epoch.
    return fast_config(data_dir=str(road_data), run_dir=str(run_dir), epochs=epochs, image_size=(32, 96),
                       max_train_images=4, max_val_images=2, ema_momentum=MOMENTUM)


def _values(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


class _Recorder(keras.callbacks.Callback):
    """The trainable weights when training starts and after each step; at the end of each epoch, where the
    callbacks that validate and save see them, the model's weights and the optimizer's averages."""

    def __init__(self):
        super().__init__()
        self.at_start, self.after_step, self.at_epoch_end = None, [], []

    def on_train_begin(self, logs=None):
        self.at_start = _values(self.model.trainable_variables)

    def on_train_batch_end(self, batch, logs=None):
        self.after_step.append(_values(self.model.trainable_variables))

    def on_epoch_end(self, epoch, logs=None):
        averages = self.model.optimizer._model_variables_moving_average
        self.at_epoch_end.append((_values(self.model.trainable_variables), _values(averages)))


def _assert_all_close(actual, expected):
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_results_come_from_the_average_and_training_from_the_weights(road_data, tmp_path):
    run_dir, recorder = tmp_path / "run", _Recorder()
    model, history = train(_tiny(road_data, run_dir, 1), verbose=0, extra_callbacks=[recorder])
    first, second = recorder.after_step
    # Keras' average starts at the weights after the first step, then moves by (1 - momentum) each step.
    average = [MOMENTUM * a + (1 - MOMENTUM) * b for a, b in zip(first, second, strict=True)]
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(average, second, strict=True)) > 1e-4
    in_model, in_optimizer = recorder.at_epoch_end[0]
    _assert_all_close(in_model, average)  # what the validation score and the checkpoint see
    _assert_all_close(in_optimizer, second)  # the training weights, kept in the optimizer's slots
    for name in ("best.keras", "final.keras", "checkpoint/epoch-0001.keras"):
        _assert_all_close(_values(modelfile.load_model(run_dir / name).trainable_variables), average)
    _assert_all_close(_values(model.trainable_variables), average)  # what train() returns
    # The epoch's validation score is the average's: best.keras scores it again.
    config = TrainConfig.load(run_dir / "config.json")
    _, _, _, val = build_datasets(config)
    maxf = predict.evaluate_road(modelfile.load_model(run_dir / "best.keras"), val, config.image_size, pooled=True)
    assert history["val_maxf"][0] == pytest.approx(maxf["urban_road"]["MaxF"], abs=1e-9)

    # A resume goes on training from the weights themselves, with the average where it was.
    resumed = _Recorder()
    train(_tiny(road_data, run_dir, 2), verbose=0, extra_callbacks=[resumed])
    _assert_all_close(resumed.at_start, second)
    third, fourth = resumed.after_step
    expected = [MOMENTUM * (MOMENTUM * a + (1 - MOMENTUM) * c) + (1 - MOMENTUM) * d
                for a, c, d in zip(average, third, fourth, strict=True)]
    _assert_all_close(resumed.at_epoch_end[0][0], expected)
    _assert_all_close(_values(modelfile.load_model(run_dir / "final.keras").trainable_variables), expected)


def test_bad_momentum_and_several_workers_are_refused():
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="ema_momentum must be in"):
            TrainConfig(weights=None, ema_momentum=bad)
    with pytest.raises(ValueError, match="not supported with strategy 'multi_worker'"):
        TrainConfig(weights=None, ema_momentum=0.99, strategy="multi_worker")
