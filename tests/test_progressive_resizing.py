"""Progressive resizing: the first share of the epochs on smaller images, the rest at the full size, with and
without a budget (on a fake clock), and a resume that goes on at the size its epoch had."""

import json

import pytest
from test_budget_schedule import FakeTime, _CrashAfterEpoch, _SlowDownFrom

from fcn import callbacks, optim
from fcn import train as training
from fcn.data import synthetic
from fcn.train import TrainConfig, fast_config, train


@pytest.fixture(scope="module")
def road_data(tmp_path_factory):
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=3,
                                      test_images_per_category=1, scale=0.25, seed=2)


@pytest.fixture
def training_sizes(monkeypatch) -> list:
    """(image size, first epoch) of every training pipeline that fcn.train builds."""
    built, make_dataset = [], training.make_dataset

    def recording(*args, shuffle=False, first_epoch=0, **kwargs):
        if shuffle:  # the training pipeline (validation is never shuffled)
            built.append((tuple(args[3]), first_epoch))
        return make_dataset(*args, shuffle=shuffle, first_epoch=first_epoch, **kwargs)

    monkeypatch.setattr(training, "make_dataset", recording)
    return built


def _config(road_data, run_dir, **overrides):
    settings = dict(data_dir=str(road_data), run_dir=str(run_dir), image_size=(64, 96), epochs=4,
                    max_train_images=2, max_val_images=1, progressive_resizing=(0.5, 0.5))
    return fast_config(**{**settings, **overrides})


def _state(run_dir) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def test_the_small_size_and_its_checks():
    config = TrainConfig(weights=None, image_size=(160, 576), progressive_resizing=[0.5, 0.5])
    assert config.small_size == (80, 288) and config.progressive_resizing == (0.5, 0.5)
    assert TrainConfig(weights=None, image_size=(40, 96), progressive_resizing=(0.3, 0.25)).small_size == (32, 32)
    assert TrainConfig(weights=None).small_size is None
    for bad in ((0, 0.5), (1, 0.5), (0.5, 1.0), (0.5, -1)):
        with pytest.raises(ValueError, match="progressive_resizing must be"):
            TrainConfig(weights=None, progressive_resizing=bad)
    with pytest.raises(ValueError, match="needs a cosine or poly lr_schedule"):
        TrainConfig(weights=None, progressive_resizing=(0.5, 0.5), minutes=10)


def test_the_plan_of_two_sizes_fills_the_budget():
    # 2 small epochs done in 20 s; small epochs 10 s, full ones 40 s; 280 s left: 4 more small and 6 full.
    assert optim.plan_two_sizes(20.0, 10.0, 40.0, 5, 2, 0.5, 50) == (12, 6)
    assert optim.plan_two_sizes(20.0, 10.0, 40.0, 5, 2, 0.5, 10) == (10, 5)  # the epochs cap it
    # Room for one full-size epoch only: the small ones are the epochs done, the full size starts now.
    assert optim.plan_two_sizes(20.0, 10.0, 40.0, 1, 2, 0.5, 50) == (3, 2)
    assert optim.plan_two_sizes(290.0, 10.0, 40.0, 5, 2, 0.5, 50) == (2, 2)  # nothing left


@pytest.mark.slow
def test_the_first_half_of_the_epochs_trains_small_then_full(road_data, tmp_path, training_sizes, capsys):
    model, history = train(_config(road_data, tmp_path / "run"), verbose=0)
    assert training_sizes == [((32, 48), 0), ((64, 96), 2)]
    state = _state(tmp_path / "run")
    assert state["small_epochs"] == 2 and state["epochs_done"] == 4 and len(history["loss"]) == 4
    assert not state["stopped_by_budget"]
    out = capsys.readouterr().out
    assert "training at 32x48 from epoch 1" in out and "training at 64x96 from epoch 3" in out
    assert model.optimizer.iterations.numpy() == 4  # one step per epoch (2 images, batch 2), both sizes


@pytest.mark.slow
def test_a_resume_goes_on_at_the_size_of_its_epoch(road_data, tmp_path, training_sizes):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 1 (small), then after epoch 3 (full)
        train(_config(road_data, run_dir), verbose=0, extra_callbacks=[_CrashAfterEpoch(1)])
    with pytest.raises(KeyboardInterrupt):
        train(_config(road_data, run_dir), verbose=0, extra_callbacks=[_CrashAfterEpoch(3)])
    train(_config(road_data, run_dir), verbose=0)
    assert training_sizes == [((32, 48), 0), ((32, 48), 1), ((64, 96), 2), ((64, 96), 3)]
    state = _state(run_dir)
    assert state["small_epochs"] == 2 and [row["epoch"] for row in state["history"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_with_a_budget_the_plan_fixes_the_small_epochs_and_is_made_again_at_the_full_size(
        road_data, tmp_path, monkeypatch, training_sizes):
    # Small epochs last 10 s. After epoch 2 (20 s) the plan guesses 40 s for a full-size epoch (4x the pixels):
    # 12 epochs in 5 minutes, 6 of them small. Full-size epochs really last 30 s: from the second of them
    # (epoch 8, 120 s used) 6 more fit, 14 in all; the plans at half the budget (epoch 9) and at 80 % (epoch 12)
    # keep them, and the run ends at the budget with the rate at 0.
    clock = FakeTime(10.0)
    monkeypatch.setattr(callbacks, "time", clock)
    config = _config(road_data, tmp_path / "run", epochs=50, minutes=5, optimizer="adamw", weight_decay=1e-4,
                     lr_schedule="cosine", warmup_epochs=1)
    model, history = train(config, verbose=0, extra_callbacks=[_SlowDownFrom(clock, epoch=6, seconds=30.0)])
    state = _state(tmp_path / "run")
    assert state["small_epochs"] == 6 and state["schedule_replans"] == 3
    assert state["schedule_epochs"] == 14 and state["epochs_done"] == 14 and len(history["loss"]) == 14
    assert state["seconds"] == pytest.approx(6 * 10 + 8 * 30) and state["seconds"] <= 300
    assert training_sizes == [((32, 48), 0), ((64, 96), 6)]
    assert optim.decay_schedule(model.optimizer).total_steps == 14
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-12)


def test_the_command_line_option(capsys):
    from fcn import cli

    required = ["train", "--data-dir", "d", "--run-dir", "r"]
    args = cli.build_parser().parse_args([*required, "--progressive-resizing", "0.4,0.5"])
    assert args.progressive_resizing == (0.4, 0.5)
    for bad in ("0.5", "0.5,1.5", "a,b"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([*required, "--progressive-resizing", bad])
        assert "expected SHARE,SCALE" in capsys.readouterr().err
