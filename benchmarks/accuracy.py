"""Accuracy within a CPU budget: train the CPU recipe of a dataset (fcn/recipes.py), score its validation split.

    .venv/bin/python benchmarks/accuracy.py --dataset kitti_road [--minutes 25] [--eval-dir DIR] [--out runs/bench]

The recipe's budget (fcn/recipes.py CPU_RECIPES) unless --minutes says otherwise; its learning-rate schedule
spans the budget. The frames of recipes.HELD_OUT are kept out of training and validation and scored apart
(KITTI Road and KITTI semantics at full resolution): the "held_out" score, which played no part in training or
in choosing the best epoch. The JSON records the validation score per epoch against minutes ("curve") and the
minute each of THRESHOLDS was first reached ("time_to"); figures/benchmarks/<dataset>_time_to_accuracy.png
draws every run of the dataset in --out as one line.

--eval-dir scores a folder in the dataset's official layout instead of the validation split (see
`fcn evaluate segmentation --eval-dir`: e.g. KITTI Road image_2/ + gt_image_2/, CamVid <split>/ + <split>annot/).
    .venv/bin/python benchmarks/accuracy.py --dataset camvid --fast      # minutes of synthetic data (CI)

Variants of the recipe (what the recipe options of docs/training.md compare) change settings by name, values as in JSON:
    .venv/bin/python benchmarks/accuracy.py --dataset kitti_road --minutes 20 --tag scale \
        --set epochs=25 --set 'scale_range=[0.75, 1.5]'

Writes <out>/<dataset>-<tag>/ (the run folder: config, history, best.keras, ...), <out>/<dataset>-<tag>.json
(per-category or per-class scores, mean IoU, held-out score, time to accuracy, minutes, epochs, encoder, image
size, precision, machine), the run's charts
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

from fcn import cli, modelfile, precision, predict, recipes, viz
from fcn.data import get_dataset, list_eval_folder, synthetic
from fcn.imageio import write_bytes_atomic
from fcn.runs import RunFolder
from fcn.train import TrainConfig, list_split, train

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FCN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# Where each dataset lies under FCN_SHARED_DATA (the half-resolution copies: what fits a CPU budget).
DATA_DIRS = {"kitti_road": "kitti_road_half/data_road", "camvid": "camvid", "kitti_semantics": "kitti_semantics"}
# The CPU recipe of each dataset: fcn/recipes.py, the one the notebooks' full mode runs. Its frames in
# recipes.HELD_OUT are kept out of training and validation and scored apart ("held_out" in the JSON); KITTI
# Road's and KITTI semantics' at full resolution, from these folders under FCN_SHARED_DATA.
RECIPES = recipes.CPU_RECIPES
FULL_RESOLUTION_DIRS = {"kitti_road": "kitti_road/data_road/training", "kitti_semantics": "kitti_semantics_full/training"}
# The validation scores whose first minute the JSON records ("time_to"), as in the targets of benchmarks/README.md.
THRESHOLDS = {"kitti_road": (0.90, 0.93, 0.95), "camvid": (0.55, 0.60, 0.65), "kitti_semantics": (0.35, 0.40)}
# --fast: synthetic data in the real layout, tiny images, two epochs (what CI runs).
FAST = dict(image_size=(64, 96), epochs=3, batch_size=2, max_train_images=6, max_val_images=3)
SYNTHETIC_SIZES = {"kitti_road": dict(images_per_category=7, test_images_per_category=1, scale=0.25),
                   "camvid": dict(train=8, val=3, test=0, height=96, width=128),
                   "kitti_semantics": dict(train=11, test=1, scale=0.25)}
# Synthetic CamVid frames are named synth_NNNNNN: the fast mode holds back two of them instead.
FAST_HELD_OUT = {"camvid": ["synth_000000.png", "synth_000001.png"]}


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


def evaluate(config: TrainConfig, model, samples, tta_scales=(1.0,), tta_flip: bool = False) -> dict:
    """Scores of a model on `samples` (the validation split, a folder, or the held-out frames), optionally with
    test-time augmentation (fcn.predict.predict_scores)."""
    info = get_dataset(config.dataset)
    tta = dict(tta_scales=tta_scales, tta_flip=tta_flip)
    if info.road_class is not None:
        scores = predict.evaluate_road(model, samples, config.image_size, road_id=info.road_class, pooled=True, **tta)
        return {"categories": scores, "main": scores["urban_road"]["MaxF"], "metric": "MaxF (urban_road)"}
    scores = predict.evaluate_segmentation(model, samples, info, config.image_size, **tta)
    confusion = scores.pop("confusion_matrix")
    return {"classes": scores, "confusion_matrix": np.asarray(confusion).tolist(), "main": scores["mean_iou"], "metric": "mIoU"}


def held_out_frames(dataset: str, fast: bool) -> list[str]:
    """The frame names the benchmark keeps out of training and validation (fcn/recipes.py HELD_OUT)."""
    return FAST_HELD_OUT.get(dataset, recipes.HELD_OUT[dataset]) if fast else recipes.HELD_OUT[dataset]


def list_held_out(config: TrainConfig, names, fast: bool) -> tuple[list, str]:
    """(samples, where): the held-out frames at full resolution where the shared data has them, else from the
    run's own data folder. A frame that is not found is an error: a held-out score must cover all of them."""
    info = get_dataset(config.dataset)
    full = SHARED_DATA / FULL_RESOLUTION_DIRS[config.dataset] if config.dataset in FULL_RESOLUTION_DIRS else None
    if not fast and full is not None and full.is_dir():
        samples, where = list_eval_folder(info, full), f"{full} (full resolution)"
    else:
        train, val = info.list_train_val(config.data_dir, config.val_fraction, config.seed)
        samples, where = train + val, config.data_dir
    picked = [sample for sample in samples if sample.image.name in set(names)]
    missing = sorted(set(names) - {sample.image.name for sample in picked})
    if missing:
        raise FileNotFoundError(f"{where}: held-out frames not found: {', '.join(missing)}")
    return picked, where


def score_curve(state) -> list[dict]:
    """Per epoch: minutes of training so far (resumes included) and the validation score."""
    curve, seconds = [], 0.0
    for row in state.history:
        seconds += row.get("seconds", 0.0)
        curve.append({"epoch": row["epoch"], "minutes": round(seconds / 60, 3), "score": row.get(state.monitor)})
    return curve


def minutes_to_reach(curve: list[dict], thresholds) -> dict:
    """{threshold: the minute the validation score first reached it, or None}, thresholds as fractions."""
    return {f"{threshold:g}": next((point["minutes"] for point in curve
                                    if point["score"] is not None and point["score"] >= threshold), None)
            for threshold in thresholds}


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
    """CPU model, core count and bfloat16 flags of this machine, for the table."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    flags = sorted(precision.cpu_flags() & set(precision.BFLOAT16_FLAGS))
    return f"{model}, {os.cpu_count()} cores, {' '.join(flags) if flags else 'no native bfloat16'}"


def parse_setting(text: str) -> tuple[str, object]:
    """ "name=value" (value as JSON where it parses, else a string) -> (name, value), for --set."""
    name, sep, value = text.partition("=")
    if not sep or name not in {field.name for field in dataclasses.fields(TrainConfig)}:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE with NAME a TrainConfig field")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def run(dataset: str, minutes: float | None, out_dir: Path, fast: bool = False, data_dir=None, tag: str = "cpu",
        eval_dir=None, overrides=None, figures_dir=None, tta_scales=(1.0,), tta_flip: bool = False) -> dict:
    """Train within the budget (None: the recipe's), score the best model, write the JSON; returns the record.

    The record holds the validation score ("value", the one the run chose its best epoch by), the score of
    the held-out frames ("held_out"), the validation score per epoch against minutes ("curve") and the
    minute each threshold was first reached ("time_to"). With test-time augmentation (tta_scales other than
    (1.0,), or tta_flip) it also holds the scores with it under "tta"."""
    tta_scales = predict.check_tta_scales(tta_scales)  # before training: a bad scale should not cost the budget
    out_dir = Path(out_dir)
    data_dir = Path(data_dir) if data_dir else data_dir_for(dataset, fast, out_dir)
    settings = {**RECIPES[dataset], **(FAST if fast else {}), **(overrides or {})}
    if minutes is not None:
        settings["minutes"] = minutes
    held_out = held_out_frames(dataset, fast)
    settings["exclude_frames"] = sorted({*settings.get("exclude_frames", []), *held_out})
    config = TrainConfig(dataset=dataset, data_dir=str(data_dir), run_dir=str(out_dir / f"{dataset}-{tag}"),
                         **settings)
    held_out_samples, held_out_where = list_held_out(config, held_out, fast)  # before training, like the scales
    train(config, verbose=2)
    state = RunFolder(config.run_dir).read_state()
    model = modelfile.load_model(RunFolder(config.run_dir).best)
    val = list_eval_folder(get_dataset(dataset), eval_dir) if eval_dir else list_split(config)[1]
    scores = evaluate(config, model, val)
    held_out_scores = evaluate(config, model, held_out_samples)
    curve = score_curve(state)
    record = {"dataset": dataset, "tag": tag, "metric": scores["metric"], "value": scores["main"], "scores": scores,
              "held_out": {"value": held_out_scores["main"], "frames": len(held_out_samples), "where": held_out_where,
                           "scores": held_out_scores},
              "curve": curve, "time_to": minutes_to_reach(curve, THRESHOLDS[dataset]),
              "minutes": round(state.seconds / 60, 2), "budget_minutes": config.minutes, "epochs": state.epochs_done,
              "schedule_epochs": state.schedule_epochs, "best_epoch": state.best_epoch, "encoder": config.encoder,
              "image_size": list(config.image_size), "precision": config.precision,
              "recipe": {k: v for k, v in settings.items() if k not in ("image_size", "exclude_frames")},
              "machine": machine(), "synthetic": fast, "data_dir": str(data_dir),
              "evaluated_on": str(eval_dir or "validation split"), "commit": _commit()}
    if tta_scales != (1.0,) or tta_flip:
        tta_scores = evaluate(config, model, val, tta_scales, tta_flip)
        record["tta"] = {"scales": list(tta_scales), "flip": tta_flip, "value": tta_scores["main"],
                         "scores": tta_scores}
    write_bytes_atomic(out_dir / f"{dataset}-{tag}.json", json.dumps(record, indent=2, default=str).encode())
    if figures_dir is not None:
        record["figures"] = [str(path) for path in save_figures(record, Path(config.run_dir), Path(figures_dir))]
        record["figures"].append(str(save_time_to_accuracy(dataset, out_dir, Path(figures_dir))))
        write_bytes_atomic(out_dir / f"{dataset}-{tag}.json", json.dumps(record, indent=2, default=str).encode())
    return record


def save_time_to_accuracy(dataset: str, out_dir: Path, figures_dir: Path) -> Path:
    """One chart per dataset: validation score against minutes, one line per run recorded in out_dir."""
    import matplotlib.pyplot as plt

    records = [json.loads(path.read_text()) for path in sorted(out_dir.glob(f"{dataset}-*.json"))]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for record in (r for r in records if r.get("curve")):
        points = [p for p in record["curve"] if p["score"] is not None]
        ax.plot([p["minutes"] for p in points], [100 * p["score"] for p in points], marker=".",
                label=f"{record['tag']}: {record['encoder']}, {record.get('precision', 'float32')}")
    for threshold in THRESHOLDS[dataset]:
        ax.axhline(100 * threshold, color="grey", linewidth=0.6, linestyle=":")
    ax.set(xlabel="minutes of training", ylabel=f"validation {records[-1]['metric'] if records else 'score'}",
           title=f"{dataset}: time to accuracy ({machine()})")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return viz.save_figure(fig, f"{dataset}_time_to_accuracy", figures_dir)


def markdown_row(record: dict) -> str:
    """| dataset | metric | value (with TTA) | held-out | minutes | epochs | encoder | image size | precision |"""
    height, width = record["image_size"]
    value = f"{100 * record['value']:.1f}"
    if "tta" in record:
        value += f" ({100 * record['tta']['value']:.1f} with TTA)"
    held_out = f"{100 * record['held_out']['value']:.1f} ({record['held_out']['frames']} frames)"
    return (f"| {record['dataset']}{' (synthetic)' if record['synthetic'] else ''} | {record['metric']} | "
            f"{value} | {held_out} | {record['minutes']:.1f} of {record['budget_minutes']:g} | "
            f"{record['epochs']} | {record['encoder']} | {height}x{width} | {record['precision']} |")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The command's options (tests/test_docs.py parses the documented command lines with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(RECIPES))
    parser.add_argument("--minutes", type=float, help="wall-clock training budget (default: the recipe's)")
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
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.minutes is not None and args.minutes <= 0:
        parser.error("--minutes must be above 0")
    record = run(args.dataset, args.minutes, Path(args.out), args.fast, args.data_dir, args.tag, args.eval_dir,
                 dict(args.set), args.figures_dir or None, args.tta_scales, args.tta_flip)
    print(f"{record['metric']}: {100 * record['value']:.2f} in {record['minutes']} minutes; held-out "
          f"{record['held_out']['frames']} frames: {100 * record['held_out']['value']:.2f}; first reached at minute: "
          + ", ".join(f"{100 * float(k):g}: {v}" for k, v in record["time_to"].items()))
    if "tta" in record:
        print(f"{record['metric']} with test-time augmentation: {100 * record['tta']['value']:.2f}")
    print(markdown_row(record))


if __name__ == "__main__":
    main()
