"""fcn/deploy_report.py: size, latency and MaxF of a Keras model beside its exports.

The scores are checked on a model whose MaxF is known by hand: it says "road, p = 0.73" at every pixel, so
at its one useful threshold every pixel is road, recall is 1, precision is the road fraction p of the valid
pixels, and MaxF = 2p / (1 + p).
"""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn import deploy_report, export, modelfile
from fcn.data import kitti_road, synthetic

IMAGE_SIZE = (32, 96)


def _constant_road_model() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    model.layers[-1].set_weights([np.zeros((1, 1, 3, 2), np.float32), np.array([0.0, 1.0], np.float32)])
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{name: path}: the constant road model as a .keras file and as a TFLite float32 export."""
    folder = tmp_path_factory.mktemp("models")
    model = _constant_road_model()
    info = modelfile.model_info("kitti_road", kitti_road.CLASS_NAMES, IMAGE_SIZE, "constant", road_class=1)
    return {"keras": modelfile.save_model(model, folder / "constant.keras", info),
            "tflite": export.export_tflite(model, folder / "constant.tflite", IMAGE_SIZE, info=info)}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = synthetic.write_kitti_road(tmp_path_factory.mktemp("data"), images_per_category=2,
                                      test_images_per_category=0, scale=0.2, seed=1)
    return kitti_road.list_samples(root)


def _hand_maxf(samples) -> dict[str, float]:
    """2p / (1 + p) per category and pooled; p = road / valid pixels (training ids: 1 = road, 255 = ignore)."""
    counts = {}
    for sample in samples:
        labels = kitti_road.read_label(sample.label)
        for key in (f"{sample.category}_road", "urban_road"):
            road, valid = counts.get(key, (0, 0))
            counts[key] = (road + int((labels == 1).sum()), valid + int((labels != 255).sum()))
    return {key: 2 * (road / valid) / (1 + road / valid) for key, (road, valid) in counts.items()}


def test_compare_models_scores_sizes_and_times_each_model(models, samples):
    rows = deploy_report.compare_models(models, samples, runs=2)
    assert [row["model"] for row in rows] == ["keras", "tflite"]
    assert [row["bytes"] for row in rows] == [path.stat().st_size for path in models.values()]
    expected = _hand_maxf(samples)
    for row in rows:
        assert list(row["maxf"]) == ["um_road", "umm_road", "uu_road", "urban_road"]  # pooled score last
        assert row["maxf"] == pytest.approx(expected, abs=1e-6)
        assert 0 < row["latency_s"] < 10


def test_compare_models_needs_models_and_samples(models, samples):
    with pytest.raises(ValueError, match="at least one model"):
        deploy_report.compare_models({}, samples)
    with pytest.raises(ValueError, match="at least one model"):
        deploy_report.compare_models(models, [])


def test_an_export_in_a_notebook_logs_no_info_lines(tmp_path):
    """A notebook puts TensorFlow's logger at INFO: saving must not log "Assets written to" (red in a notebook)."""
    logger, records = tf.get_logger(), []
    handler = logging.Handler()
    handler.emit = records.append
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        export.export_tflite(_constant_road_model(), tmp_path / "constant.tflite", IMAGE_SIZE)
        assert logger.level == logging.INFO  # as the notebook had it
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [record.getMessage() for record in records if record.levelno < logging.WARNING] == []


class _CountingModel:
    """Stands in for a model: counts its calls and checks what it is given."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, training=False):
        assert x.shape == (1, *IMAGE_SIZE, 3) and x.dtype == np.float32 and not training
        self.calls += 1
        return np.zeros((1, *IMAGE_SIZE, 2), np.float32)


def test_measure_latency_times_each_run_after_one_warm_up_call():
    model = _CountingModel()
    seconds = deploy_report.measure_latency(model, np.zeros((40, 60, 3), np.uint8), IMAGE_SIZE, runs=3)
    assert model.calls == 4 and 0 <= seconds < 1
    with pytest.raises(ValueError, match="runs must be at least 1"):
        deploy_report.measure_latency(model, np.zeros((40, 60, 3), np.uint8), IMAGE_SIZE, runs=0)


def test_save_for_inference_drops_the_optimizer_and_keeps_the_description(tmp_path):
    model = _constant_road_model()
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.zeros((2, *IMAGE_SIZE, 3), np.float32), np.ones((2, *IMAGE_SIZE), np.int32), verbose=0)
    info = modelfile.model_info("kitti_road", kitti_road.CLASS_NAMES, IMAGE_SIZE, "constant", road_class=1)
    checkpoint = modelfile.save_model(model, tmp_path / "checkpoint.keras", info)
    copy = deploy_report.save_for_inference(checkpoint, tmp_path / "inference.keras")
    assert copy.stat().st_size < checkpoint.stat().st_size
    assert modelfile.read_info(copy) == info
    x = np.random.default_rng(0).uniform(0, 255, (1, *IMAGE_SIZE, 3)).astype(np.float32)
    np.testing.assert_array_equal(modelfile.load_model(copy)(x), model(x))


ROWS = [
    {"model": "Keras fp32", "bytes": 2_500_000, "latency_s": 0.0123,
     "maxf": {"um_road": 0.9, "urban_road": 0.85}},
    {"model": "TFLite int8", "bytes": 700_000, "latency_s": 0.004,
     "maxf": {"um_road": 0.895, "urban_road": 0.849}},
]


def test_format_comparison_table_in_megabytes_milliseconds_and_percent():
    header, keras_line, int8_line = deploy_report.format_comparison_table(ROWS).splitlines()
    assert header.split() == ["model", "size", "MB", "ms/image", "MaxF", "um_road", "MaxF", "urban_road"]
    assert keras_line.split() == ["Keras", "fp32", "2.50", "12.3", "90.00", "85.00"]
    assert int8_line.split() == ["TFLite", "int8", "0.70", "4.0", "89.50", "84.90"]


def test_plot_comparison_draws_size_latency_and_maxf_bars():
    fig = deploy_report.plot_comparison(ROWS)
    size_ax, latency_ax, maxf_ax = fig.axes
    assert [bar.get_height() for bar in size_ax.patches] == pytest.approx([2.5, 0.7])
    assert [bar.get_height() for bar in latency_ax.patches] == pytest.approx([12.3, 4.0])
    # Grouped by category, one bar per model: Keras' two categories, then int8's.
    assert [bar.get_height() for bar in maxf_ax.patches] == pytest.approx([90.0, 85.0, 89.5, 84.9])
    assert fig._repr_png_().startswith(b"\x89PNG")
