"""Figures: saved PNGs, training history, loss curves, overlays, colour maps and image grids."""

import csv
import os

import numpy as np
import pytest
from matplotlib.figure import Figure

from fcn import imageio, viz

IGNORE = viz.IGNORE_ID
PALETTE = np.array([[0, 0, 0], [255, 0, 255], [0, 200, 0]], dtype=np.uint8)
HISTORY = {
    "loss": [0.9, 0.6, 0.45],
    "pixel_accuracy": [0.5, 0.7, 0.8],
    "val_loss": [1.0, 0.7, 0.55],
    "val_pixel_accuracy": [0.45, 0.65, 0.75],
}


def _solid_figure(rgb) -> Figure:
    """A figure whose only content is a 10x10 image of one colour."""
    fig = Figure(figsize=(2, 2))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(np.full((10, 10, 3), rgb, dtype=np.uint8))
    ax.set_axis_off()
    return fig


def _write_csv_logger_file(path, history, epochs=None) -> None:
    """Write a history the way keras.callbacks.CSVLogger does: epoch first, then keys sorted."""
    keys = sorted(history)
    n = len(history[keys[0]])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", *keys])
        writer.writeheader()
        for i in range(n):
            writer.writerow({"epoch": i if epochs is None else epochs[i], **{k: history[k][i] for k in keys}})


def test_save_figure_writes_a_png_readable_by_imageio(tmp_path):
    figures_dir = tmp_path / "run" / "figures"  # does not exist yet
    path = viz.save_figure(_solid_figure((200, 30, 60)), "loss_curves", figures_dir)
    assert path == figures_dir / "loss_curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imageio.read_rgb(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert imageio.read_png_size(path) == image.shape[:2]
    height, width = image.shape[:2]
    assert tuple(image[height // 2, width // 2]) == (200, 30, 60)


def test_save_figure_overwrites_and_leaves_no_temporary_files(tmp_path):
    (tmp_path / "grid.png").write_bytes(b"not a png")
    viz.save_figure(_solid_figure((255, 0, 0)), "grid", tmp_path)
    path = viz.save_figure(_solid_figure((0, 0, 255)), "grid", tmp_path)
    image = imageio.read_rgb(path)
    assert tuple(image[image.shape[0] // 2, image.shape[1] // 2]) == (0, 0, 255)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


def test_save_figure_dpi_sets_the_pixel_size(tmp_path):
    small = imageio.read_rgb(viz.save_figure(_solid_figure((0, 0, 0)), "small", tmp_path, dpi=50))
    large = imageio.read_rgb(viz.save_figure(_solid_figure((0, 0, 0)), "large", tmp_path, dpi=100))
    assert large.shape[0] == pytest.approx(2 * small.shape[0], abs=2)
    assert large.shape[1] == pytest.approx(2 * small.shape[1], abs=2)


def _every_plot() -> dict[str, Figure]:
    """One figure from each public plotting function, as a notebook builds them."""
    scores = {"class_iou": {"road": 0.8, "car": float("nan")}, "mean_iou": 0.8}
    grid = viz.plot_image_grid([[np.zeros((8, 12, 3), np.uint8)] * 2], ["image", "prediction"])
    return {
        "loss curves": viz.plot_loss_curves(HISTORY),
        "image grid": viz.add_legend(grid, ["road", "car"], PALETTE[1:]),
        "class IoU": viz.plot_class_iou(scores),
        "confusion matrix": viz.plot_confusion_matrix(np.eye(2), ["road", "car"]),
    }


@pytest.mark.parametrize("name", ["loss curves", "image grid", "class IoU", "confusion matrix"])
def test_figures_are_shown_as_png_by_ipython(name, tmp_path):
    from IPython.core.formatters import DisplayFormatter

    fig = _every_plot()[name]
    data, _ = DisplayFormatter().format(fig)
    assert "image/png" in data, f"IPython would only print {data['text/plain']!r}"
    # What the notebook shows is exactly what save_figure writes.
    assert data["image/png"] == viz.save_figure(fig, "shown", tmp_path).read_bytes()


def test_a_plain_figure_is_text_for_ipython():
    """Why InlineFigure exists: without pyplot, IPython has no image for a bare Figure."""
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(_solid_figure((0, 0, 0)))
    assert "image/png" not in data and data["text/plain"].startswith("<Figure size")


def test_saved_figures_are_readable_by_others(tmp_path):
    previous = os.umask(0o022)
    try:
        path = viz.save_figure(_solid_figure((0, 0, 0)), "shared", tmp_path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_read_history_of_a_csv_logger_file(tmp_path):
    path = tmp_path / "history.csv"
    _write_csv_logger_file(path, HISTORY)
    history = viz.read_history(path)
    assert list(history) == ["epoch", "loss", "pixel_accuracy", "val_loss", "val_pixel_accuracy"]
    assert history["epoch"] == [0.0, 1.0, 2.0]
    for key, values in HISTORY.items():
        assert history[key] == values


def test_read_history_without_epochs_raises(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n")
    with pytest.raises(ValueError, match="no epochs"):
        viz.read_history(path)


def test_read_history_reads_csv_logger_na_as_nan(tmp_path):
    # CSVLogger writes "NA" for val_* columns on epochs without validation (validation_freq > 1, or a
    # fit without validation data).
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,0.9,NA\n1,0.6,0.7\n")
    history = viz.read_history(path)
    assert history["loss"] == [0.9, 0.6]
    assert np.isnan(history["val_loss"][0]) and history["val_loss"][1] == 0.7


def _check_loss_curves(fig: Figure) -> None:
    loss_ax, metric_ax = fig.axes
    train, validation = loss_ax.lines
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(train.get_ydata(), HISTORY["loss"])
    np.testing.assert_allclose(validation.get_ydata(), HISTORY["val_loss"])
    assert validation.get_linestyle() == "--" and validation.get_color() == train.get_color()
    assert [line.get_label() for line in metric_ax.lines] == ["train pixel_accuracy", "validation pixel_accuracy"]
    np.testing.assert_allclose(metric_ax.lines[0].get_ydata(), HISTORY["pixel_accuracy"])
    np.testing.assert_allclose(metric_ax.lines[1].get_ydata(), HISTORY["val_pixel_accuracy"])


def test_plot_loss_curves_from_a_dict():
    fig = viz.plot_loss_curves(HISTORY, title="FCN-8 run")
    _check_loss_curves(fig)
    assert fig.get_suptitle() == "FCN-8 run"
    assert [line.get_label() for line in fig.axes[0].lines] == ["train loss", "validation loss"]


def test_plot_loss_curves_from_a_csv_path_ignores_the_epoch_column(tmp_path):
    path = tmp_path / "history.csv"
    # Epochs as a resumed run logs them: the x axis still counts 1..n.
    _write_csv_logger_file(path, HISTORY, epochs=[5, 6, 7])
    _check_loss_curves(viz.plot_loss_curves(path))
    _check_loss_curves(viz.plot_loss_curves(str(path)))


def test_plot_loss_curves_without_validation():
    fig = viz.plot_loss_curves({"loss": [1.0, 0.5], "pixel_accuracy": [0.3, 0.6]})
    assert [line.get_label() for line in fig.axes[0].lines] == ["train loss"]
    assert [line.get_label() for line in fig.axes[1].lines] == ["train pixel_accuracy"]


def test_overlay_blends_hand_computed_pixels():
    image = np.array([[[11, 20, 31], [100, 100, 100], [7, 8, 9]],
                      [[50, 60, 70], [1, 4, 255], [0, 0, 0]]], dtype=np.uint8)
    labels = np.array([[1, 0, IGNORE], [2, 1, 0]])
    before = image.copy()
    result = viz.overlay(image, labels, PALETTE, alpha=0.5)
    expected = image.copy()
    expected[0, 0] = [(11 + 255) / 2, 20 / 2, (31 + 255) / 2]  # class 1, magenta
    expected[1, 0] = [50 / 2, (60 + 200) / 2, 70 / 2]  # class 2, green
    expected[1, 1] = [(1 + 255) / 2, 4 / 2, (255 + 255) / 2]  # class 1 again
    assert result.dtype == np.uint8 and result.shape == image.shape
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(image, before)  # the input is not modified


def test_overlay_leaves_ignored_and_skipped_pixels_exactly_unchanged():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (5, 7))
    labels[0, :] = IGNORE
    for skip_ids in [(0,), (0, 2), ()]:
        result = viz.overlay(image, labels, PALETTE, alpha=0.3, skip_ids=skip_ids)
        unpainted = (labels == IGNORE) | np.isin(labels, skip_ids)
        np.testing.assert_array_equal(result[unpainted], image[unpainted])
        painted = ~unpainted
        blend = np.round(0.7 * image[painted].astype(np.float64) + 0.3 * PALETTE[labels[painted]])
        np.testing.assert_allclose(result[painted], blend, atol=1)  # float32 vs float64 rounding
    assert np.any(viz.overlay(image, labels, PALETTE, skip_ids=())[labels == 0] != image[labels == 0])


def test_overlay_alpha_one_paints_the_palette_colour():
    image = np.full((2, 2, 3), 90, np.uint8)
    labels = np.array([[1, 2], [0, IGNORE]])
    result = viz.overlay(image, labels, PALETTE, alpha=1.0)
    np.testing.assert_array_equal(result[0], PALETTE[[1, 2]])
    np.testing.assert_array_equal(result[1], image[1])


def test_overlay_rejects_a_shape_mismatch():
    with pytest.raises(ValueError, match="differ in size"):
        viz.overlay(np.zeros((4, 5, 3), np.uint8), np.zeros((5, 4), np.int64), PALETTE)


def test_colorize_maps_ids_to_palette_and_ignore_to_white():
    labels = np.array([[0, 1, 2], [IGNORE, 2, 0]], dtype=np.int64)
    result = viz.colorize(labels, PALETTE)
    assert result.dtype == np.uint8 and result.shape == (2, 3, 3)
    expected = np.array([[PALETTE[0], PALETTE[1], PALETTE[2]], [[255, 255, 255], PALETTE[2], PALETTE[0]]])
    np.testing.assert_array_equal(result, expected)
    grey = viz.colorize(labels, PALETTE, ignore_colour=(128, 128, 128))
    np.testing.assert_array_equal(grey[1, 0], [128, 128, 128])
    np.testing.assert_array_equal(grey[0], expected[0])


def test_plot_image_grid_layout_titles_and_pictures():
    rng = np.random.default_rng(0)
    rows = [[rng.integers(0, 256, (6, 10, 3), dtype=np.uint8) for _ in range(3)] for _ in range(2)]
    fig = viz.plot_image_grid(rows, ["image", "truth", "prediction"], row_titles=["um_000000", "uu_000001"])
    assert len(fig.axes) == 2 * 3
    assert [ax.get_title() for ax in fig.axes] == ["image", "truth", "prediction", "", "", ""]
    assert [fig.axes[i].get_ylabel() for i in (0, 3)] == ["um_000000", "uu_000001"]
    for i, ax in enumerate(fig.axes):
        np.testing.assert_array_equal(ax.images[0].get_array(), rows[i // 3][i % 3])
        assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0


def test_plot_image_grid_single_row_without_row_titles():
    picture = np.zeros((4, 4, 3), np.uint8)
    fig = viz.plot_image_grid([[picture, picture]], ["image", "overlay"])
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["image", "overlay"]
    assert all(ax.get_ylabel() == "" for ax in fig.axes)


def test_colorize_rejects_unknown_ids():
    palette = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)
    with pytest.raises(ValueError, match="labels outside"):
        viz.colorize(np.array([[0, 256]]), palette)
    with pytest.raises(ValueError, match="labels outside"):
        viz.colorize(np.array([[2, 1]]), palette)


def test_plot_class_iou_bars_and_mean():
    scores = {"class_iou": {"road": 0.9, "car": 0.5, "bus": float("nan")}, "mean_iou": 0.7}
    fig = viz.plot_class_iou(scores)
    widths = [bar.get_width() for bar in fig.axes[0].patches]
    assert widths == [0.9, 0.5, 0]  # NaN (absent class) drawn empty, labelled n/a
    assert [t.get_text() for t in fig.axes[0].texts] == ["90.0", "50.0", "n/a"]
    assert fig.axes[0].lines[0].get_xdata()[0] == 0.7


def test_plot_confusion_matrix_normalises_rows():
    matrix = np.array([[3, 1], [0, 0]])
    fig = viz.plot_confusion_matrix(matrix, ["a", "b"])
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, [[0.75, 0.25], [0, 0]])  # an empty row stays 0, no NaN


def test_add_legend_has_one_entry_per_class():
    fig = viz.plot_image_grid([[np.zeros((4, 4, 3), np.uint8)]], ["x"])
    palette = np.array([[255, 0, 0], [0, 255, 0]], np.uint8)
    viz.add_legend(fig, ["road", "car"], palette)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["road", "car"]


def test_loss_curves_show_validation_only_scores():
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "val_maxf": [0.6, 0.8], "seconds": [3.0, 2.0]}
    fig = viz.plot_loss_curves(history)
    labels = [line.get_label() for ax in fig.axes for line in ax.lines]
    assert "validation maxf" in labels and not any("seconds" in label for label in labels)
