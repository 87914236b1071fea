"""Steps the notebooks share: choose the data explicitly, and build their figures."""

from pathlib import Path

import numpy as np

from fcn import metrics, predict, viz
from fcn.data import DatasetInfo, synthetic
from fcn.imageio import read_rgb

# Synthetic set sizes per dataset (fast, full) and the writer's other arguments.
_SYNTHETIC = {
    "camvid": (dict(train=8, val=4, test=0, height=120, width=160), dict(train=60, val=20, test=0)),
    "cvc_kitti": (dict(train=8, val=4, height=94, width=310), dict(train=60, val=20, height=187, width=621)),
    "kitti_semantics": (dict(train=12, test=1, scale=0.25), dict(train=80, test=4, scale=0.5)),
    "cityscapes": (dict(train=8, val=4, height=128, width=256), dict(train=60, val=20)),
}


def prepare_data(dataset: str, data_dir, synthetic_dir, fast: bool) -> tuple[Path, bool]:
    """(dataset root, is_synthetic). data_dir == "synthetic" writes synthetic data; a path must exist.

    The choice is explicit: a missing real folder is an error, never a silent switch to synthetic data.
    """
    if str(data_dir) != "synthetic":
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such dataset folder (or pass 'synthetic')")
        return root, False
    if dataset not in _SYNTHETIC:
        raise ValueError(f"no synthetic writer for {dataset!r}; choose from {sorted(_SYNTHETIC)}")
    sizes = _SYNTHETIC[dataset][0 if fast else 1]
    return synthetic.generate(dataset, synthetic_dir, seed=0, **sizes), True


def overlay_figure(model, samples, info: DatasetInfo, image_size, with_truth: bool = True):
    """Image | ground truth | prediction overlays for a few samples, with a class legend."""
    rows, names = [], []
    for sample in samples:
        image = read_rgb(sample.image)
        prediction = predict.predict_probabilities(model, image, image_size).argmax(-1)
        row = [image]
        if with_truth:
            row.append(viz.overlay(image, info.read_label(sample.label), info.palette, alpha=0.6, skip_ids=()))
        row.append(viz.overlay(image, prediction, info.palette, alpha=0.6, skip_ids=()))
        rows.append(row)
        names.append(getattr(sample, "name", Path(sample.image).stem))
    titles = ["image"] + (["ground truth"] if with_truth else []) + ["prediction"]
    return viz.add_legend(viz.plot_image_grid(rows, titles, names), info.class_names, info.palette)


def class_names_present(scores: dict) -> list[str]:
    """Classes with an IoU (present in ground truth or prediction)."""
    return [name for name, value in scores["class_iou"].items() if not np.isnan(value)]


def augmented_samples_figure(config, info: DatasetInfo, count: int = 3):
    """The first training batches exactly as the network sees them (augmented), with their masks painted on.

    A mask that stays on its objects after the random scale, crop, flip and colour changes shows that
    image and label are transformed together.
    """
    from fcn.train import build_datasets

    train_ds = build_datasets(config)[0]
    rows = []
    for batch in train_ds:
        images, labels = batch[0].numpy(), batch[1].numpy()
        for image, label in zip(images, labels, strict=True):
            image = np.clip(image, 0, 255).astype(np.uint8)
            rows.append([image, viz.overlay(image, label, info.palette, alpha=0.6, skip_ids=()),
                         viz.colorize(label, info.palette)])
        if len(rows) >= count:
            break
    fig = viz.plot_image_grid(rows[:count], ["augmented image", "its mask painted on", "training ids (white = ignored)"])
    return viz.add_legend(fig, info.class_names, info.palette)


def worst_frames_figure(model, samples, info: DatasetInfo, image_size, count: int = 3):
    """The `count` lowest-scoring labelled samples, each beside its error map, its scores in its title.

    KITTI Road frames are ranked by F-measure at their category's pooled MaxF threshold (fcn.per_frame), and
    mapped at that threshold; many-class frames by their mean IoU. Every sample is scored once more here.
    """
    rows = []
    if info.road_class is not None:
        scores = predict.evaluate_road(model, samples, image_size, road_id=info.road_class, per_frame=rows)
    else:
        predict.evaluate_segmentation(model, samples, info, image_size, per_frame=rows)
    by_name = {sample.name: sample for sample in samples}
    images, maps, titles = [], [], []
    for row in rows[:count]:
        sample = by_name[row["frame"]]
        image, labels = read_rgb(sample.image), info.read_label(sample.label)
        if info.road_class is not None:
            threshold_k = scores[row["category"]]["BestThresh_k"]
            confidence = predict.predict_road_confidence(model, image, image_size, info.road_class)
            maps.append(viz.road_error_map(image, metrics.road_predicted(confidence, threshold_k), labels,
                                           info.road_class))
        else:
            prediction = predict.predict_labels(model, image, image_size)
            maps.append(viz.class_error_map(image, labels, prediction, info.palette))
        images.append(image)
        titles.append(_frame_title(row))
    names = None if info.road_class is not None else info.class_names
    return viz.plot_error_gallery(images, maps, titles, names, info.palette)


def _frame_title(row: dict) -> str:
    if "f_measure" in row:
        return f"{row['frame']}\nF {_percent(row['f_measure'])}, P {_percent(row['precision'])}, R {_percent(row['recall'])}"
    return f"{row['frame']}\nmIoU {_percent(row['mean_iou'])}, acc {_percent(row['pixel_accuracy'])}"


def _percent(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{100 * value:.1f} %"
