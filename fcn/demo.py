"""The main job of `make demo`: synthetic KITTI Road -> train a light FCN-8 -> devkit scores -> figures.

Runs offline on a CPU in a few minutes. It uses the light "vgg16_mini" encoder from scratch because the
ImageNet VGG16 weights cannot be downloaded everywhere; on real data with a GPU use `fcn train` with the
default VGG16 recipe.
"""

import json
from pathlib import Path

import numpy as np

from fcn import predict, viz
from fcn.data import kitti_road, synthetic
from fcn.imageio import read_rgb, write_bytes_atomic
from fcn.train import fast_config, train

# 30 synthetic frames per category at half KITTI resolution: 72 train, 18 validation.
DEMO_IMAGES_PER_CATEGORY = 30
DEMO_SCALE = 0.5
DEMO_IMAGE_SIZE = (96, 320)
DEMO_EPOCHS = 25


def prepare_synthetic_kitti_road(out_dir="data/synthetic") -> Path:
    """Write (once) the synthetic KITTI Road set the demo uses; returns its data_road folder."""
    root = Path(out_dir) / "data_road"
    if not (root / "training" / "image_2").is_dir():
        synthetic.write_kitti_road(out_dir, images_per_category=DEMO_IMAGES_PER_CATEGORY,
                                   test_images_per_category=2, scale=DEMO_SCALE, seed=0)
    return root


def default_figures_dir(run_dir) -> Path:
    """Inside the run folder, which git ignores: the committed figures/demo/ change only through `make figures`."""
    return Path(run_dir) / "figures"


def run_demo(data_dir=None, run_dir="runs/demo", figures_dir=None, epochs=None) -> dict:
    """Train, evaluate on the validation split and save loss curves and overlays (default: RUN_DIR/figures).

    Returns the scores.
    """
    figures_dir = figures_dir or default_figures_dir(run_dir)
    data_dir = Path(data_dir) if data_dir else prepare_synthetic_kitti_road()
    print(f"data: {data_dir}" + (" (synthetic)" if (data_dir / "SYNTHETIC.md").exists() else ""))
    config = fast_config(data_dir=str(data_dir), run_dir=str(run_dir), image_size=DEMO_IMAGE_SIZE,
                         batch_size=4, epochs=epochs or DEMO_EPOCHS, max_train_images=None, max_val_images=None)
    model, history = train(config, verbose=2)
    _, val = kitti_road.split_train_val(kitti_road.list_samples(data_dir), config.val_fraction, config.seed)
    scores = predict.evaluate_road(model, val, config.image_size)
    save_demo_figures(model, history, data_dir, figures_dir, config.image_size)
    summary = {category: {"MaxF": s["MaxF"], "AvgPrec": s["AvgPrec"]} for category, s in scores.items()}
    write_bytes_atomic(Path(run_dir) / "scores.json", json.dumps(scores, indent=2).encode())
    print(json.dumps(summary, indent=2))
    return scores


def save_demo_figures(model, history, data_dir, figures_dir, image_size) -> list[Path]:
    """Loss curves, and overlays of the predicted road on test images."""
    paths = [viz.save_figure(viz.plot_loss_curves(history, "FCN-8 (vgg16_mini) on synthetic KITTI Road"),
                             "loss_curves", figures_dir)]
    test = kitti_road.list_samples(data_dir, "testing")[:3]
    rows = []
    for sample in test:
        image = read_rgb(sample.image)
        probabilities = predict.predict_probabilities(model, image, image_size)
        rows.append([image, viz.overlay(image, probabilities.argmax(-1), kitti_road.PALETTE),
                     np.dstack([predict.road_confidence(probabilities)] * 3)])
    grid = viz.plot_image_grid(rows, ["test image", "predicted road", "road confidence"],
                               [s.name for s in test])
    paths.append(viz.save_figure(grid, "test_overlays", figures_dir))
    print("figures: " + ", ".join(str(p) for p in paths))
    return paths
