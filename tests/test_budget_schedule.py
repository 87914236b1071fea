"""A learning-rate schedule sized by the time budget: planned from measured epochs, ended at the budget on a slow
and a fast (fake) clock, kept by a resume, and really followed by the compiled training step."""

import json

import keras
import numpy as np
import pytest

from fcn import callbacks, optim
from fcn.data import synthetic
from fcn.train import fast_config, train


class FakeTime:
    """Stands in for the `time` module of fcn.callbacks: every clock reading is `epoch_seconds` after the last,
    so each epoch (one reading at its start, one at its end) lasts exactly that long."""

    def __init__(self, epoch_seconds: float):
        self.now, self.epoch_seconds = 1000.0, epoch_seconds

    def monotonic(self) -> float:
        self.now += self.epoch_seconds
        return self.now


class _SlowDownFrom(keras.callbacks.Callback):
    """From epoch `epoch` (0-based) on, the fake clock's epochs last `seconds`: a machine that got busier."""

    def __init__(self, clock: FakeTime, epoch: int, seconds: float):
        super().__init__()
        self.clock, self.epoch, self.seconds = clock, epoch, seconds

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= self.epoch:
            self.clock.epoch_seconds = self.seconds


class _CrashAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


@pytest.fixture(scope="module")
def road_data(tmp_path_factory):
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=3,
                                      test_images_per_category=1, scale=0.25, seed=2)


def _config(road_data, run_dir, minutes, **overrides):
    # 2 training images, batch 2: one step per epoch.
    settings = dict(data_dir=str(road_data), run_dir=str(run_dir), image_size=(32, 96), epochs=50,
                    max_train_images=2, max_val_images=1, optimizer="adamw", weight_decay=1e-4,
                    lr_schedule="cosine", warmup_epochs=1, minutes=minutes)
    return fast_config(**{**settings, **overrides})


def test_plan_fills_what_is_left_of_the_budget():
    # 2 epochs done in 60 s, the last one 25 s long.
    assert optim.plan_epochs(60.0, 25.0, minutes=10, epochs_done=2, max_epochs=1000) == 2 + 540 // 25
    assert optim.plan_epochs(60.0, 25.0, minutes=10, epochs_done=2, max_epochs=12) == 12  # epochs cap it
    assert optim.plan_epochs(60.0, 25.0, minutes=2, epochs_done=2, max_epochs=1000) == 4
    assert optim.plan_epochs(200.0, 30.0, minutes=3, epochs_done=2, max_epochs=1000) == 2  # nothing left


@pytest.mark.slow
@pytest.mark.parametrize(("epoch_seconds", "minutes", "planned"), [(30.0, 3, 6), (5.0, 1, 12)])
def test_the_run_ends_at_the_budget_with_the_rate_at_zero(road_data, tmp_path, monkeypatch, epoch_seconds, minutes,
                                                          planned):
    monkeypatch.setattr(callbacks, "time", FakeTime(epoch_seconds))
    model, history = train(_config(road_data, tmp_path / "run", minutes), verbose=0)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    # After epoch 2 (60 s on the slow clock, 10 s on the fast one) the rest of the budget holds 4 or 10 more.
    assert state["schedule_epochs"] == planned and state["epochs_done"] == planned and state["stopped_by_budget"]
    assert state["seconds"] == pytest.approx(planned * epoch_seconds) and state["seconds"] <= 60 * minutes
    assert 60 * minutes - state["seconds"] < epoch_seconds  # nothing of the budget is left unused
    schedule = optim.decay_schedule(model.optimizer)
    assert schedule.total_steps == planned and int(model.optimizer.iterations.numpy()) == planned
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-12)  # cosine decayed to zero
    assert len(history["loss"]) == planned


@pytest.mark.slow
def test_epochs_that_slow_down_after_the_plan_are_planned_again_at_half_the_budget(road_data, tmp_path, monkeypatch):
    # 30 s epochs until the plan after epoch 2 (60 s used: 10 more fit in 6 minutes, 12 in all), then 45 s ones.
    clock = FakeTime(30.0)
    monkeypatch.setattr(callbacks, "time", clock)
    model, history = train(_config(road_data, tmp_path / "run", 6), verbose=0,
                           extra_callbacks=[_SlowDownFrom(clock, epoch=2, seconds=45.0)])
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    # A fifth of the budget is passed after epoch 3 (105 s): at its 45 s, 5 more fit, 8 in all. Half the budget
    # after epoch 5 (195 s): at the median 45 s, 3 more fit, 8 again, ending at 330 s, before 80 % is passed.
    # The first plan alone would have stopped on the budget after epoch 8 with 4 epochs of its decay left.
    assert state["schedule_replans"] == 2 and state["schedule_epochs"] == 8 and state["epochs_done"] == 8
    assert state["seconds"] == pytest.approx(2 * 30 + 6 * 45) and len(history["loss"]) == 8
    assert optim.decay_schedule(model.optimizer).total_steps == 8
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-12)  # the decay ended with the run


@pytest.mark.slow
@pytest.mark.parametrize("late_replan", [True, False])
def test_a_slowdown_after_the_replan_is_caught_near_the_end_of_the_budget(road_data, tmp_path, monkeypatch,
                                                                           late_replan):
    # 10 minutes of 30 s epochs: 20 planned after epoch 2, the same 20 again at a fifth (epoch 4) and at half the
    # budget (epoch 10). From epoch 13 on, epochs last 50 s. 80 % of the budget (480 s) is passed at epoch 15
    # (510 s): the median of the last 5 epochs (30, 30, 50, 50, 50) is 50 s, one more fits, so the decay now
    # ends with epoch 16 (560 s). The median since the first plan (30 s) would have kept all 20.
    if not late_replan:  # the control: without the last check the same run stops on the budget
        monkeypatch.setattr(optim, "REPLAN_AT_BUDGET_SHARES", (0.2, 0.5))
    clock = FakeTime(30.0)
    monkeypatch.setattr(callbacks, "time", clock)
    model, history = train(_config(road_data, tmp_path / "run", 10), verbose=0,
                           extra_callbacks=[_SlowDownFrom(clock, epoch=12, seconds=50.0)])
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["schedule_replans"] == (3 if late_replan else 2)
    assert state["epochs_done"] == 16 and state["seconds"] == pytest.approx(12 * 30 + 4 * 50)
    rate = float(model.optimizer.learning_rate)
    if late_replan:
        assert state["schedule_epochs"] == 16 and optim.decay_schedule(model.optimizer).total_steps == 16
        assert rate == pytest.approx(0.0, abs=1e-12)  # the decay ended with the run
    else:
        assert state["schedule_epochs"] == 20 and rate > 1e-5  # stopped 4 epochs before the decay's end


def test_a_run_state_written_before_several_replans_still_reads(tmp_path):
    from fcn.runs import STATE_VERSION, RunFolder

    run = RunFolder(tmp_path)
    for replanned, replans in [(True, 2), (False, 0)]:  # then: one re-plan, at half the budget
        run.state.write_text(json.dumps({"version": STATE_VERSION, "epochs_done": 7, "schedule_epochs": 40,
                                         "schedule_replanned": replanned}))
        state = run.read_state()
        assert state.schedule_replans == replans and state.schedule_epochs == 40 and state.epochs_done == 7


@pytest.mark.slow
def test_a_resume_keeps_the_planned_schedule(road_data, tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "time", FakeTime(30.0))
    with pytest.raises(KeyboardInterrupt):
        train(_config(road_data, tmp_path / "run", 3), verbose=0, extra_callbacks=[_CrashAfterEpoch(3)])
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epochs_done"] == 3 and state["schedule_epochs"] == 6
    # The machine is now 6 times faster: the plan stays (a resume never re-plans), the run ends with it.
    monkeypatch.setattr(callbacks, "time", FakeTime(5.0))
    model, history = train(_config(road_data, tmp_path / "run", 3), verbose=0)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epochs_done"] == 6 and state["schedule_epochs"] == 6 and len(history["loss"]) == 6
    assert optim.decay_schedule(model.optimizer).total_steps == 6
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-12)



@pytest.mark.slow
def test_a_finished_budget_run_says_why_more_minutes_do_not_continue_it(road_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(callbacks, "time", FakeTime(30.0))
    train(_config(road_data, tmp_path / "run", 3), verbose=0)
    capsys.readouterr()
    train(_config(road_data, tmp_path / "run", 30), verbose=0)
    assert "its learning-rate schedule, sized by the budget, has ended" in capsys.readouterr().out


@pytest.mark.slow
def test_without_a_budget_the_schedule_spans_the_epochs(road_data, tmp_path):
    model, _ = train(_config(road_data, tmp_path / "run", None, epochs=3), verbose=0)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["schedule_epochs"] is None and state["epochs_done"] == 3
    assert optim.decay_schedule(model.optimizer).total_steps == 3


def _sgd_model(schedule):
    # SGD without momentum moves a weight by exactly rate * gradient, so the rate a compiled step used shows.
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    return model


def _weight_moves(model) -> bool:
    before = model.get_weights()[0].copy()
    model.train_on_batch(np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32))
    return not np.array_equal(model.get_weights()[0], before)


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_a_resized_schedule_reaches_the_compiled_step_without_a_rebuild(strategy):
    import tensorflow as tf

    scope = tf.distribute.MirroredStrategy(["/cpu:0"]) if strategy == "mirrored" else tf.distribute.get_strategy()
    with scope.scope():
        schedule = optim.WarmupDecay(0.1, total_steps=100, warmup_steps=0)
        model = _sgd_model(schedule)
    assert _weight_moves(model)  # step 0 at rate 0.1
    train_function = model.train_function
    assert schedule.resize(1) is False  # the decay now ends at step 1: the rate of step 1 is 0
    assert schedule.get_config()["total_steps"] == 1  # what a checkpoint records
    assert not _weight_moves(model) and model.train_function is train_function  # the same compiled step, rate 0
    assert schedule.resize(100) is False and _weight_moves(model)  # and back


def test_a_schedule_whose_length_is_compiled_in_asks_for_a_rebuild(monkeypatch):
    # As on JAX, where a compiled step holds the values of the variables it is not handed.
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    schedule = optim.WarmupDecay(0.1, total_steps=100, warmup_steps=0)
    monkeypatch.undo()
    model = _sgd_model(schedule)
    assert _weight_moves(model)
    assert schedule.resize(100) is False  # unchanged: nothing to rebuild
    assert schedule.resize(1) is True
    assert _weight_moves(model)  # the compiled step still has total_steps=100 in it
    model.make_train_function(force=True)
    assert not _weight_moves(model)  # rebuilt: rate 0, nothing moves
