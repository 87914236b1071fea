"""A Keras FCN beside its TFLite exports: file size, latency and validation MaxF, as a table and a chart.

What notebooks/05_inference_export.ipynb compares. Every model is scored as `fcn predict` runs it
(fcn.predict: a .keras file or a .tflite export, at the size recorded with it), as a deployment would run it.
Latency is the network alone on one image at its input size: the median of a few calls after a warm-up call
(the first call of a Keras model builds it, the first of an interpreter sets up its delegate).
"""

import time
from pathlib import Path

import keras
import numpy as np

from fcn import export, modelfile, predict
from fcn.imageio import read_rgb
from fcn.viz import InlineFigure

LATENCY_RUNS = 5  # a median of five calls is steady enough to tell fp32 from int8 on a busy machine


def save_for_inference(model_path, output) -> Path:
    """A copy of a .keras model without its optimizer state (training checkpoints hold it), with its fcn.json.

    The copy is what a Keras deployment ships, so it is the fair size to set beside the exports.
    """
    model = modelfile.load_model(model_path)  # not compiled, so saved without the optimizer
    return modelfile.save_model(model, output, modelfile.read_info(model_path))


def measure_latency(model, image: np.ndarray, image_size=None, runs: int = LATENCY_RUNS) -> float:
    """Median seconds of a network call on one (H, W, 3) uint8 image resized to image_size, after a warm-up."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    x = export.network_input(image, image_size or image.shape[:2])
    keras.ops.convert_to_numpy(model(x, training=False))
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(model(x, training=False))  # waits for the result
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def compare_models(model_paths: dict, samples, runs: int = LATENCY_RUNS,
                   progress: bool = False) -> list[dict]:
    """Size, latency and KITTI Road scores of each model on labelled samples (e.g. the validation split).

    Args:
        model_paths: {name: path of a .keras file or a .tflite export}, in the order to show them.
        samples: KITTI Road samples (fcn.data.kitti_road); latency is measured on the first one's image.
    Returns:
        One row per model: {"model": name, "path", "bytes": file size, "latency_s": median seconds per image,
        "maxf": {category: MaxF fraction, pooled "urban_road" included}}.
    """
    if not model_paths or not samples:
        raise ValueError("need at least one model and one sample to compare")
    image = read_rgb(samples[0].image)
    rows = []
    for name, path in model_paths.items():
        model = predict.load_model(path)
        image_size = predict.run_image_size(path)
        scores = predict.evaluate_road(model, samples, image_size, progress=progress, pooled=True,
                                       road_id=predict.road_class_of(path, model))
        maxf = {category: values["MaxF"] for category, values in scores.items() if category != "urban_road"}
        maxf["urban_road"] = scores["urban_road"]["MaxF"]  # after the categories it pools
        rows.append({"model": name, "path": Path(path), "bytes": Path(path).stat().st_size,
                     "latency_s": measure_latency(model, image, image_size, runs), "maxf": maxf})
    return rows


def format_comparison_table(rows: list[dict]) -> str:
    """A plain-text table of compare_models rows: size (MB), latency (ms per image), MaxF per category (%)."""
    categories = list(rows[0]["maxf"])
    header = f"{'model':<14}{'size MB':>9}{'ms/image':>10}"
    lines = [header + "".join(f"{'MaxF ' + category:>17}" for category in categories)]
    for row in rows:
        maxf = "".join(f"{100 * row['maxf'].get(c, float('nan')):>17.2f}" for c in categories)
        lines.append(f"{row['model']:<14}{row['bytes'] / 1e6:>9.2f}{1000 * row['latency_s']:>10.1f}" + maxf)
    return "\n".join(lines)


def plot_comparison(rows: list[dict], title: str = "Keras model and its TFLite exports") -> InlineFigure:
    """Three bar charts side by side: file size, latency, and MaxF per category (one bar per model)."""
    names = [row["model"] for row in rows]
    categories = list(rows[0]["maxf"])
    fig = InlineFigure(figsize=(13, 3.6))
    size_ax, latency_ax, maxf_ax = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.6]})
    colours = [f"C{i}" for i in range(len(rows))]
    sizes, latencies = [r["bytes"] / 1e6 for r in rows], [1000 * r["latency_s"] for r in rows]
    for ax, values, label, fmt in ((size_ax, sizes, "file size (MB)", "{:.2f}"),
                                   (latency_ax, latencies, "ms per image", "{:.1f}")):
        bars = ax.bar(names, values, color=colours)
        ax.bar_label(bars, [fmt.format(v) for v in values], fontsize=8)
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
    width = 0.8 / len(rows)
    positions = np.arange(len(categories))
    for i, row in enumerate(rows):
        values = [100 * row["maxf"].get(c, float("nan")) for c in categories]
        offset = (i - (len(rows) - 1) / 2) * width
        maxf_ax.bar(positions + offset, values, width, color=colours[i], label=row["model"])
    maxf_ax.set_xticks(positions, categories, fontsize=8)
    maxf_ax.set_ylabel("MaxF (%), validation split")
    maxf_ax.set_ylim(0, 105)
    maxf_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # clear of the bars
    for ax in (size_ax, latency_ax, maxf_ax):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
