"""Accuracy within a CPU budget: train the CPU recipe of a dataset for --minutes, score its validation split.

    .venv/bin/python benchmarks/accuracy.py --dataset kitti_road --minutes 60 [--eval-dir DIR] [--out runs/bench]

--eval-dir scores a folder in the dataset's official layout instead of the validation split (see
`fcn evaluate segmentation --eval-dir`: e.g. KITTI Road image_2/ + gt_image_2/, CamVid <split>/ + <split>annot/).
    .venv/bin/python benchmarks/accuracy.py --dataset camvid --fast      # minutes of synthetic data (CI)

Variants of the recipe (what the README's recipe table compares) change settings by name, values as in JSON:
    .venv/bin/python benchmarks/accuracy.py --dataset kitti_road --minutes 20 --tag scale \
        --set epochs=25 --set 'scale_range=[0.75, 1.5]'

Writes <out>/<dataset>-<tag>/ (the run folder: config, history, best.keras, ...), <out>/<dataset>-<tag>.json
(per-category or per-class scores, mean IoU, minutes, epochs, encoder, image size, machine), the run's charts
to --figures-dir (default figures/benchmarks: curves; per-class IoU and confusion matrix where there are
classes) and prints one Markdown row for benchmarks/README.md. Rerunning the same command resumes the run (see fcn/runs.py).
The real data is read from FCN_SHARED_DATA (default ../shared/data) unless --data-dir is given.
"""

import argparse
import dataclasses
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from fcn import cli, modelfile, predict, recipes, viz
from fcn.data import get_dataset, list_eval_folder, synthetic
from fcn.imageio import write_bytes_atomic
from fcn.runs import RunFolder
from fcn.train import TrainConfig, list_split, train

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FCN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# Where each dataset lies under FCN_SHARED_DATA (the half-resolution copies: what fits a CPU budget).
DATA_DIRS = {"kitti_road": "kitti_road_half/data_road", "camvid": "camvid", "kitti_semantics": "kitti_semantics"}
# The CPU recipe (fcn/recipes.py: a light encoder from scratch, AdamW with warm-up and cosine decay), with
# each dataset's image size and epochs, and the rare-class remedy measured best for the many-class sets.
# Epochs are sized from the first epochs' speed on the reference machine (2 cores of an AMD EPYC,
# benchmarks/README.md) so the cosine decay ends near the budget; the budget stop ends it earlier on a slower
# machine: KITTI Road ran 115 epochs in 49 of its 60 minutes, KITTI semantics 240 in 59.5, CamVid 78 of 80 in
# 118.7 of 120. The many-class sets train at their frames' own height rounded up to a multiple of 32 (KITTI
# semantics' half-resolution copy is 187x621, CamVid 360x480), with random scale.
RECIPES = {
    "kitti_road": dict(recipes.CPU, image_size=(160, 576), epochs=115),
    "camvid": dict(recipes.CPU, **recipes.RARE_CLASS_REMEDY, image_size=(352, 480), epochs=80,
                   scale_range=(0.75, 1.5)),
    "kitti_semantics": dict(recipes.CPU, **recipes.RARE_CLASS_REMEDY, image_size=(192, 640), epochs=240,
                            scale_range=(0.75, 1.5)),
}
# --fast: synthetic data in the real layout, tiny images, two epochs (what CI runs).
FAST = dict(image_size=(64, 96), epochs=2, batch_size=2, max_train_images=6, max_val_images=3)
SYNTHETIC_SIZES = {"kitti_road": dict(images_per_category=3, test_images_per_category=1, scale=0.25),
                   "camvid": dict(train=6, val=3, test=0, height=96, width=128),
                   "kitti_semantics": dict(train=9, test=1, scale=0.25)}


def data_dir_for(dataset: str, fast: bool, work_dir: Path) -> Path:
    """The dataset root: synthetic data in fast mode, else the shared real copy."""
    if fast:
        if dataset == "kitti_road":
            return synthetic.write_kitti_road(work_dir / "synthetic", seed=0, **SYNTHETIC_SIZES[dataset])
        return synthetic.generate(dataset, work_dir / "synthetic", seed=0, **SYNTHETIC_SIZES[dataset])
    root = SHARED_DATA / DATA_DIRS[dataset]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset not found (set FCN_SHARED_DATA or pass --data-dir)")
    return root


def evaluate(config: TrainConfig, model, eval_dir=None, tta_scales=(1.0,), tta_flip: bool = False) -> dict:
    """Scores of the run's best model on its validation split (or a folder in the official layout), optionally
    with test-time augmentation (fcn.predict.predict_scores)."""
    info = get_dataset(config.dataset)
    val = list_eval_folder(info, eval_dir) if eval_dir else list_split(config)[1]
    tta = dict(tta_scales=tta_scales, tta_flip=tta_flip)
    if info.road_class is not None:
        scores = predict.evaluate_road(model, val, config.image_size, road_id=info.road_class, pooled=True, **tta)
        return {"categories": scores, "main": scores["urban_road"]["MaxF"], "metric": "MaxF (urban_road)"}
    scores = predict.evaluate_segmentation(model, val, info, config.image_size, **tta)
    confusion = scores.pop("confusion_matrix")
    return {"classes": scores, "confusion_matrix": np.asarray(confusion).tolist(), "main": scores["mean_iou"], "metric": "mIoU"}


def save_figures(record: dict, run_dir: Path, figures_dir: Path) -> list[Path]:
    """Curves of the run (loss, and the validation score per epoch); per-class IoU and confusion where there
    are classes. Charts only: no pixels of the (non-redistributable) datasets."""
    name = f"{record['dataset']}-{record['tag']}"
    what = f"{record['dataset']} {record['tag']}: {record['encoder']} {'x'.join(map(str, record['image_size']))}"
    paths = [viz.save_figure(viz.plot_loss_curves(run_dir / "history.csv", what), f"{name}_curves", figures_dir)]
    if "classes" in record["scores"]:
        classes = record["scores"]["classes"]
        paths.append(viz.save_figure(viz.plot_class_iou(classes, f"{what}: validation IoU"), f"{name}_class_iou",
                                     figures_dir))
        paths.append(viz.save_figure(
            viz.plot_confusion_matrix(np.array(record["scores"]["confusion_matrix"]), list(classes["class_iou"]),
                                      f"{what}: validation"), f"{name}_confusion", figures_dir))
    return paths


def machine() -> str:
    """CPU model and core count of this machine, for the table."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def parse_setting(text: str) -> tuple[str, object]:
    """ "name=value" (value as JSON where it parses, else a string) -> (name, value), for --set."""
    name, sep, value = text.partition("=")
    if not sep or name not in {field.name for field in dataclasses.fields(TrainConfig)}:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE with NAME a TrainConfig field")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def run(dataset: str, minutes: float, out_dir: Path, fast: bool = False, data_dir=None, tag: str = "cpu",
        eval_dir=None, overrides=None, figures_dir=None, tta_scales=(1.0,), tta_flip: bool = False) -> dict:
    """Train within the budget, score the best model, write the JSON; returns the result record.

    With test-time augmentation (tta_scales other than (1.0,), or tta_flip) the record also holds the scores
    with it under "tta"; "value" stays the plain score, the one the run chose its best epoch by."""
    tta_scales = predict.check_tta_scales(tta_scales)  # before training: a bad scale should not cost the budget
    out_dir = Path(out_dir)
    data_dir = Path(data_dir) if data_dir else data_dir_for(dataset, fast, out_dir)
    settings = {**RECIPES[dataset], **(FAST if fast else {}), **(overrides or {})}
    config = TrainConfig(dataset=dataset, data_dir=str(data_dir), run_dir=str(out_dir / f"{dataset}-{tag}"),
                         minutes=minutes, **settings)
    train(config, verbose=2)
    run_folder = RunFolder(config.run_dir)
    state = run_folder.read_state()
    model = modelfile.load_model(run_folder.best)
    scores = evaluate(config, model, eval_dir)
    record = {"dataset": dataset, "tag": tag, "metric": scores["metric"], "value": scores["main"], "scores": scores,
              "minutes": round(state.seconds / 60, 2), "budget_minutes": minutes, "epochs": state.epochs_done,
              "best_epoch": state.best_epoch, "encoder": config.encoder, "image_size": list(config.image_size),
              "recipe": {k: v for k, v in settings.items() if k not in ("image_size",)}, "machine": machine(),
              "synthetic": fast, "data_dir": str(data_dir), "evaluated_on": str(eval_dir or "validation split"),
              "commit": _commit()}
    if tta_scales != (1.0,) or tta_flip:
        tta_scores = evaluate(config, model, eval_dir, tta_scales, tta_flip)
        record["tta"] = {"scales": list(tta_scales), "flip": tta_flip, "value": tta_scores["main"],
                         "scores": tta_scores}
    if figures_dir is not None:
        record["figures"] = [str(path) for path in save_figures(record, Path(config.run_dir), Path(figures_dir))]
    write_bytes_atomic(out_dir / f"{dataset}-{tag}.json", json.dumps(record, indent=2, default=str).encode())
    return record


def markdown_row(record: dict) -> str:
    """| dataset | metric | value (with TTA) | minutes | epochs | encoder | image size |"""
    height, width = record["image_size"]
    value = f"{100 * record['value']:.1f}"
    if "tta" in record:
        value += f" ({100 * record['tta']['value']:.1f} with TTA)"
    return (f"| {record['dataset']}{' (synthetic)' if record['synthetic'] else ''} | {record['metric']} | "
            f"{value} | {record['minutes']:.1f} of {record['budget_minutes']:g} | "
            f"{record['epochs']} | {record['encoder']} | {height}x{width} |")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(RECIPES))
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    parser.add_argument("--out", default="runs/bench", help="folder for the run and its JSON")
    parser.add_argument("--data-dir", help="the dataset root (default: FCN_SHARED_DATA's copy)")
    parser.add_argument("--eval-dir", help="score this folder (the dataset's official layout) instead of the val split")
    parser.add_argument("--fast", action="store_true", help="synthetic data, tiny images, 2 epochs (CI)")
    parser.add_argument("--tag", default="cpu", help="name of this run beside the dataset's")
    parser.add_argument("--figures-dir", default="figures/benchmarks",
                        help="where the run's curves, per-class IoU and confusion charts go ('' for none)")
    parser.add_argument("--set", type=parse_setting, action="append", default=[], metavar="NAME=VALUE",
                        help="change one setting of the recipe (a TrainConfig field), e.g. epochs=25")
    cli.add_tta_arguments(parser)  # the best model is then also scored with them, beside the plain score
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be above 0")
    record = run(args.dataset, args.minutes, Path(args.out), args.fast, args.data_dir, args.tag, args.eval_dir,
                 dict(args.set), args.figures_dir or None, args.tta_scales, args.tta_flip)
    print(f"{record['metric']}: {100 * record['value']:.2f} in {record['minutes']} minutes")
    if "tta" in record:
        print(f"{record['metric']} with test-time augmentation: {100 * record['tta']['value']:.2f}")
    print(markdown_row(record))


if __name__ == "__main__":
    main()
