"""Figures: loss curves, overlays and sample grids, all saved through `save_figure`.

Figures are built as `InlineFigure` objects (a `matplotlib.figure.Figure` with no pyplot state), so they
work the same on the command line and on machines with no display, and a notebook shows them inline as
PNG images with no magic command.
"""

import csv
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fcn import bev
from fcn.imageio import write_bytes_atomic

IGNORE_ID = 255
DPI = 110  # saved and shown figures alike: about 1200 px wide for the 11-inch loss curves


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes, cropped to its content (what `save_figure` writes and a notebook shows)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


class InlineFigure(Figure):
    """A Figure that IPython (JupyterLab, papermill) displays as a PNG image.

    Without pyplot, IPython has no formatter for a bare Figure and prints `<Figure size ...>`; the
    `_repr_png_` method is the display protocol IPython looks for on any object.
    """

    def _repr_png_(self) -> bytes:
        return figure_png(self)


def save_figure(fig: Figure, name: str, figures_dir="figures", dpi: int = DPI) -> Path:
    """Write `fig` to <figures_dir>/<name>.png (via a temporary file, then rename) and return the path."""
    path = Path(figures_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, figure_png(fig, dpi))
    return path


def read_history(path) -> dict[str, list[float]]:
    """Read a Keras CSVLogger file into {column: values}."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: history has no epochs")
    # CSVLogger writes "NA" for epochs without validation; those become gaps (NaN) in the curves.
    return {key: [float("nan") if row[key] in ("NA", "") else float(row[key]) for row in rows] for key in rows[0]}


def plot_loss_curves(history, title: str = "Training") -> InlineFigure:
    """Loss (train and validation) and, beside it, the other metrics, per epoch.

    Args:
        history: a dict of per-epoch lists (Keras History.history) or the path of a history.csv.
    """
    if not isinstance(history, dict):
        history = read_history(history)
    epochs = np.arange(1, len(history["loss"]) + 1)
    skip = ("loss", "epoch", "seconds")
    metrics = sorted(k for k in history if not k.startswith("val_") and k not in skip)
    # Scores computed on the validation split only (the run's selection metric, e.g. val_maxf).
    metrics += sorted(k for k in history if k.startswith("val_") and k[4:] not in history and k != "val_loss")
    fig = InlineFigure(figsize=(11, 3.6))
    axes = fig.subplots(1, 2)
    for ax, keys, ylabel in ((axes[0], ["loss"], "loss"), (axes[1], metrics, "metric")):
        for key in keys:
            if key.startswith("val_"):
                ax.plot(epochs, history[key], ls="--", marker="s", ms=3, label=f"validation {key[4:]}")
                continue
            line = ax.plot(epochs, history[key], marker="o", ms=3, label=f"train {key}")[0]
            if f"val_{key}" in history:
                ax.plot(epochs, history[f"val_{key}"], ls="--", marker="o", ms=3, color=line.get_color(),
                        label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5,
            skip_ids=(0,)) -> np.ndarray:
    """Blend class colours over an image.

    Args:
        image: (H, W, 3) uint8 RGB. labels: (H, W) int training ids (IGNORE_ID and `skip_ids` are left
            unpainted, e.g. "not road"). palette: (C, 3) uint8 RGB.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} and image {image.shape[:2]} differ in size")
    painted = (labels != IGNORE_ID) & ~np.isin(labels, skip_ids)
    colours = palette[np.where(painted, labels, 0)].astype(np.float32)
    blended = image.astype(np.float32)
    blended[painted] = (1 - alpha) * blended[painted] + alpha * colours[painted]
    return np.round(blended).astype(np.uint8)


def colorize(labels: np.ndarray, palette: np.ndarray, ignore_colour=(255, 255, 255)) -> np.ndarray:
    """(H, W) ids -> (H, W, 3) uint8 colours; IGNORE_ID gets `ignore_colour`."""
    labels = np.asarray(labels)
    known = ((labels >= 0) & (labels < len(palette))) | (labels == IGNORE_ID)
    if not known.all():
        raise ValueError(f"labels outside [0, {len(palette)}) and not {IGNORE_ID}: {np.unique(labels[~known])[:5]}")
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = palette
    table[IGNORE_ID] = ignore_colour
    return table[labels.astype(np.uint8)]


def plot_image_grid(rows: list[list[np.ndarray]], column_titles: list[str], row_titles=None,
                    width: float = 12.0) -> InlineFigure:
    """A grid of RGB images: one row per sample, one column per view (image, truth, prediction, ...)."""
    n_rows, n_cols = len(rows), len(column_titles)
    height, width_px = rows[0][0].shape[:2]
    fig = InlineFigure(figsize=(width, width / n_cols * height / width_px * n_rows + 0.6))
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            axes[r, c].imshow(picture)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(column_titles[c], fontsize=9)
        if row_titles:
            axes[r, 0].set_ylabel(row_titles[r], fontsize=8)
    fig.tight_layout()
    return fig


def plot_road_views(image: np.ndarray, confidence: np.ndarray, confidence_bev: np.ndarray, gt_bev: np.ndarray,
                    title: str = "") -> InlineFigure:
    """One KITTI Road frame in both views: the image with the predicted road, and in bird's-eye view the road
    confidence beside the ground truth, on the benchmark's metric grid (x right, z ahead, metres).

    Args:
        image: (H, W, 3) uint8 RGB. confidence: (H, W) uint8 road confidence (the devkit result map).
        confidence_bev: (800, 400) uint8, its BEV. gt_bev: (800, 400, 3) uint8 RGB, the gt's BEV (black = not
            evaluated, which includes every cell the camera does not see).
    """
    height, width = image.shape[:2]
    fig = InlineFigure(figsize=(13, 4.6))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [width / height, 0.62, 0.62]})
    road = (confidence >= 128).astype(np.uint8)  # predicted road iff confidence >= 0.5
    axes[0].imshow(overlay(image, road, np.array([[0, 0, 0], [255, 0, 255]], np.uint8)))
    axes[0].set_title("perspective: predicted road (confidence >= 0.5)", fontsize=9)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    extent = (*bev.X_RANGE, *bev.Z_RANGE)
    axes[1].imshow(confidence_bev, cmap="gray", vmin=0, vmax=255, extent=extent)
    axes[1].set_title("bird's-eye view: road confidence", fontsize=9)
    axes[2].imshow(gt_bev, extent=extent)
    axes[2].set_title("bird's-eye view: ground truth", fontsize=9)
    for ax in axes[1:]:
        ax.set_xlabel("x (m)", fontsize=8)
        ax.set_ylabel("z, ahead (m)", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_iou(scores: dict, title: str = "Per-class IoU") -> InlineFigure:
    """Horizontal bar chart of per-class IoU (from metrics.segmentation_scores), mean IoU as a line."""
    names = list(scores["class_iou"])
    values = [scores["class_iou"][n] for n in names]
    fig = InlineFigure(figsize=(6.5, 0.32 * len(names) + 1.2))
    ax = fig.subplots()
    bars = ax.barh(names, [0 if np.isnan(v) else v for v in values], color="#4c72b0")
    for bar, value in zip(bars, values, strict=True):
        label = "n/a" if np.isnan(value) else f"{100 * value:.1f}"
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=8)
    ax.axvline(scores["mean_iou"], color="#c44e52", ls="--", label=f"mean IoU {100 * scores['mean_iou']:.1f}")
    ax.set_xlim(0, 1.1)
    ax.invert_yaxis()
    ax.set_xlabel("IoU")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix: np.ndarray, class_names, title: str = "Confusion matrix") -> InlineFigure:
    """Heat map of the confusion matrix normalised per ground-truth row (recall on the diagonal)."""
    matrix = np.asarray(matrix, np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = 0.42 * len(class_names) + 2
    fig = InlineFigure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def add_legend(fig: Figure, class_names, palette: np.ndarray, columns: int = 6) -> Figure:
    """Add a colour legend (one patch per class) under a figure of overlays."""
    from matplotlib.patches import Patch

    handles = [Patch(color=np.asarray(colour) / 255, label=name) for name, colour in zip(class_names, palette, strict=True)]
    fig.legend(handles=handles, loc="lower center", ncol=min(columns, len(handles)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.04 * (len(handles) // columns)), frameon=False)
    return fig


# Error maps: what each evaluated pixel's outcome was. Green, red and blue are told apart by most people
# with a colour-vision deficiency only by brightness as well, so the three differ in that too.
ROAD_OUTCOME_COLOURS = {"true positive (road found)": (0, 200, 0), "false positive (road predicted, not road)":
                        (255, 40, 40), "false negative (road missed)": (40, 110, 255)}
CORRECT_LEGEND = "correct (darkened)"
CORRECT_BRIGHTNESS = 0.35
_ERROR_ALPHA = 0.6


def road_error_map(image: np.ndarray, predicted_road: np.ndarray, labels: np.ndarray, road_id: int = 1,
                   alpha: float = _ERROR_ALPHA) -> np.ndarray:
    """Road outcomes painted on an image: true positives green, false positives red, false negatives blue.

    Args:
        image: (H, W, 3) uint8 RGB. predicted_road: (H, W) bool. labels: (H, W) training ids, IGNORE_ID for
            pixels never evaluated: those, and true negatives, are left as they are.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    _check_error_map_shapes(image, labels, predicted_road)
    evaluated, truth = labels != IGNORE_ID, labels == road_id
    outcomes = (predicted_road & truth, predicted_road & ~truth, ~predicted_road & truth)
    painted = np.asarray(image, np.float32).copy()
    for mask, colour in zip(outcomes, ROAD_OUTCOME_COLOURS.values(), strict=True):
        mask = mask & evaluated
        painted[mask] = (1 - alpha) * painted[mask] + alpha * np.asarray(colour, np.float32)
    return np.round(painted).astype(np.uint8)


def class_error_map(image: np.ndarray, labels: np.ndarray, prediction: np.ndarray, palette: np.ndarray,
                    alpha: float = 0.85) -> np.ndarray:
    """Right and wrong pixels of a many-class prediction, painted on an image.

    Correct pixels are darkened, so the eye goes to the wrong ones, painted in the colour of the class they
    were taken for (a wall painted in the road colour was confused with road). Ignored pixels keep the image.
    Darkening rather than greying: grey is a class colour (CamVid's sky, Cityscapes' building).
    Args:
        labels, prediction: (H, W) training ids (labels IGNORE_ID = not evaluated). palette: (C, 3) uint8 RGB.
    """
    _check_error_map_shapes(image, labels, prediction)
    evaluated = labels != IGNORE_ID
    correct, wrong = evaluated & (labels == prediction), evaluated & (labels != prediction)
    painted = np.asarray(image, np.float32).copy()
    painted[correct] *= CORRECT_BRIGHTNESS
    colours = np.asarray(palette, np.float32)[np.where(wrong, prediction, 0)]
    painted[wrong] = (1 - alpha) * painted[wrong] + alpha * colours[wrong]
    return np.round(painted).astype(np.uint8)


def error_map(image, labels, prediction, palette, road_class: int | None = None) -> np.ndarray:
    """`road_error_map` for a road model (road_class set; prediction = class ids), else `class_error_map`."""
    if road_class is not None:
        return road_error_map(image, np.asarray(prediction) == road_class, labels, road_class)
    return class_error_map(image, labels, prediction, palette)


def _check_error_map_shapes(image, labels, prediction) -> None:
    shapes = {"image": np.shape(image)[:2], "labels": np.shape(labels), "prediction": np.shape(prediction)}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"sizes differ: {', '.join(f'{k} {v}' for k, v in shapes.items())}")


def plot_error_gallery(images, error_maps, row_titles, class_names=None, palette=None) -> InlineFigure:
    """Image | error map, one row per frame (row_titles: name and scores), with the legend of the outcomes.

    class_names and palette: the colours of a `class_error_map`; None for road maps.
    """
    fig = plot_image_grid([list(pair) for pair in zip(images, error_maps, strict=True)],
                          ["image", "errors"], list(row_titles))
    if class_names is None:
        names, colours = list(ROAD_OUTCOME_COLOURS), list(ROAD_OUTCOME_COLOURS.values())
    else:
        names = [CORRECT_LEGEND, *(f"taken for {name}" for name in class_names)]
        colours = [(40, 40, 40), *np.asarray(palette).tolist()]
    return add_legend(fig, names, np.asarray(colours, np.uint8), columns=3 if class_names is None else 5)
