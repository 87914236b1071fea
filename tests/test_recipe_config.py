"""The recipe options reach the pipeline and the loss from TrainConfig and the command line."""

import pytest

from fcn import cli
from fcn.data import pipeline, synthetic
from fcn.model import build_fcn8
from fcn.train import TrainConfig, build_datasets, compile_model, fast_config, list_split


@pytest.fixture(scope="module")
def road_data(tmp_path_factory):
    return synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=3,
                                      test_images_per_category=1, scale=0.25, seed=4)


def test_pipeline_options_reach_make_dataset(road_data, monkeypatch):
    calls = []
    real = pipeline.make_dataset

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr("fcn.train.make_dataset", spy)
    config = fast_config(data_dir=str(road_data), image_size=(32, 96), scale_range=[0.5, 2.0], cache_decoded="on")
    build_datasets(config)
    (train_args, train_kwargs), (_, val_kwargs) = calls
    assert train_args[5].scale_range == (0.5, 2.0) and train_kwargs["cache_decoded"] is True
    assert val_kwargs.get("cache_decoded", False) is False
    calls.clear()
    build_datasets(fast_config(data_dir=str(road_data), image_size=(32, 96), cache_decoded="off", augment=False))
    assert calls[0][0][5] is None and calls[0][1]["cache_decoded"] is False


def test_small_training_sets_are_cached_automatically(road_data, monkeypatch):
    monkeypatch.setattr("fcn.train.make_dataset", lambda *a, **k: k.get("cache_decoded"))
    assert build_datasets(fast_config(data_dir=str(road_data)))[0] is True  # a few small PNGs fit
    monkeypatch.setattr(pipeline, "fits_in_memory", lambda *a, **k: False)
    assert build_datasets(fast_config(data_dir=str(road_data)))[0] is False


def test_list_split_is_the_split_training_uses(road_data):
    from fcn.data import get_dataset

    train, val = get_dataset("kitti_road").list_train_val(str(road_data), 0.2, 0)
    config = fast_config(data_dir=str(road_data), max_train_images=None, max_val_images=None, seed=0)
    assert list_split(config) == (train, val)
    assert list_split(config) == tuple(build_datasets(config)[2:])
    # Excluded frames leave both sides; the caps cut each list after the exclusion.
    excluded = [train[0].image.name, val[0].image.name]
    kept_train, kept_val = list_split(fast_config(data_dir=str(road_data), max_train_images=2, max_val_images=None,
                                                  seed=0, exclude_frames=excluded))
    assert kept_train == train[1:3] and kept_val == val[1:]
    with pytest.raises(ValueError, match=f"data_road: need training and validation images, got {len(train)} and 0"):
        list_split(fast_config(data_dir=str(road_data), max_train_images=None, max_val_images=None, seed=0,
                               exclude_frames=[s.image.name for s in val]))


def test_loss_options_reach_the_compiled_loss():
    config = TrainConfig(weights=None, focal_gamma=2.0, ohem_fraction=0.25, ohem_min_kept=100, label_smoothing=0.1)
    model = compile_model(build_fcn8(2, encoder="vgg16_mini", weights=None), config, 2)
    assert (model.loss.focal_gamma, model.loss.ohem_fraction, model.loss.ohem_min_kept) == (2.0, 0.25, 100)
    assert model.loss.label_smoothing == 0.1


@pytest.mark.parametrize("settings", [dict(scale_range=(2.0, 0.5)), dict(cache_decoded="yes"),
                                      dict(class_weighting="log"), dict(focal_gamma=-1.0),
                                      dict(ohem_fraction=0.0), dict(label_smoothing=1.0)])
def test_bad_recipe_options_are_refused(settings):
    with pytest.raises(ValueError):
        TrainConfig(**settings)


def test_cli_passes_the_recipe_options(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("fcn.train.train", lambda config, verbose: (seen.setdefault("config", config), {"loss": [1]}))
    code = cli.main(["train", "--fast", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "r"),
                     "--scale-range", "0.5,2", "--cache-decoded", "off", "--class-balancing",
                     "--class-weighting", "sqrt_median_frequency", "--max-class-weight", "10", "--focal-gamma", "2",
                     "--ohem-fraction", "0.3", "--ohem-min-kept", "50", "--label-smoothing", "0.1", "--ema", "0.99"])
    assert code == 0
    config = seen["config"]
    assert (config.scale_range, config.cache_decoded, config.class_weighting, config.max_class_weight) == (
        (0.5, 2.0), "off", "sqrt_median_frequency", 10.0)
    assert (config.focal_gamma, config.ohem_fraction, config.ohem_min_kept, config.label_smoothing) == (2.0, 0.3, 50, 0.1)
    assert config.ema_momentum == 0.99
