"""Command line: the same functions as the notebooks, for batch and cluster use.

    fcn demo                                   synthetic data -> train -> MaxF -> figures (no downloads)
    fcn synth --dataset kitti_road --out-dir D  write a synthetic dataset in the real on-disk layout
    fcn train --dataset kitti_road --data-dir D --run-dir R [--epochs N] [--image-size HxW] [--fast]
    fcn predict --model R/best.keras --input DIR --output DIR [--format devkit|overlay|labels]
    fcn predict --model M --input DIR --output DIR --format errors --gt-dir GT   error maps against the truth
    fcn evaluate kitti-road --gt-dir D/training/gt_image_2 --results-dir R [--json] [--per-frame F.csv]
    fcn evaluate segmentation --dataset camvid (--data-dir D [--split test] | --eval-dir DIR) --model M
                              [--per-frame F.csv]   one row per frame, worst first
    fcn data prepare {kitti_road,kitti_semantics,camvid,cityscapes} --dest D   download, verify, unpack, count
    fcn export --model M --format {tflite,saved_model} --output F [--quantize {none,fp16,int8} --calibration-dir D]
    fcn video --model M (--input VIDEO_OR_FRAME_DIR | --camera N) --output out.mp4 [--fps F]

  KITTI Road in bird's-eye view (BEV), as the leaderboard scores it and its server accepts results:
    fcn evaluate kitti-road --gt-dir D/training/gt_image_2 --results-dir R --bev --calib-dir D/training/calib
    fcn predict --model M --input D/testing/image_2 --output DIR --format devkit-bev --calib-dir D/testing/calib
    fcn submit kitti-road --model M --data-dir D --output submission.zip   BEV maps of every testing frame
"""

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from fcn.data.class_weights import WEIGHTINGS
from fcn.precision import PRECISIONS


class ChoicesOf:
    """The choices of an option, read from a module that imports Keras (and TensorFlow behind it, 5 s) only when
    they are needed: to check the option where it is given, or for --help. So `fcn evaluate`, `fcn data` and
    every refused argument answer without TensorFlow."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _choices(self):
        return sorted(getattr(importlib.import_module(self.module), self.name))

    def __contains__(self, value):
        return value in self._choices()

    def __iter__(self):
        return iter(self._choices())


ENCODERS = ChoicesOf("fcn.model", "ENCODERS")  # the model's registry: nothing to add here
OPTIMIZERS = ChoicesOf("fcn.optim", "OPTIMIZERS")
SCHEDULES = ChoicesOf("fcn.optim", "SCHEDULES")
STRATEGIES = ChoicesOf("fcn.distribute", "STRATEGIES")


def parse_image_size(text: str) -> tuple[int, int]:
    """'160x576' -> (160, 576): height x width, each at least 32 (the network's stride)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like HEIGHTxWIDTH, e.g. 160x576, got {text!r}") from None
    if min(height, width) < 32:
        raise argparse.ArgumentTypeError(f"image size must be at least 32x32, got {text!r}")
    return height, width


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def scale_list(text: str) -> tuple[float, ...]:
    """'0.75,1,1.25' -> (0.75, 1.0, 1.25): test-time scales, each a finite number above 0."""
    try:
        return tuple(positive_float(part) for part in text.split(","))
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"scales must be numbers above 0 separated by commas, e.g. 0.75,1,1.25; "
                                         f"{error}") from None


def add_tta_arguments(p) -> None:
    """--tta-flip and --tta-scales (parsed into a tuple of scales), for every command that scores or predicts."""
    p.add_argument("--tta-flip", action="store_true",
                   help="test-time augmentation: also run the mirrored image and average the probabilities")
    p.add_argument("--tta-scales", type=scale_list, default=(1.0,), metavar="S1,S2,...",
                   help="test-time augmentation: run at these multiples of the model's size, e.g. 0.75,1,1.25, "
                        "and average the probabilities (default: 1)")


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be below 1, got {text!r}")
    return value


def scale_range(text: str) -> tuple[float, float]:
    """'0.5,2.0' -> (0.5, 2.0): two positive numbers, low first."""
    try:
        low, high = (positive_float(v) for v in text.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (two positive numbers), got {text!r}") from None
    if low > high:
        raise argparse.ArgumentTypeError(f"LOW must not exceed HIGH, got {text!r}")
    return low, high


def progressive_resizing(text: str) -> tuple[float, float]:
    """'0.5,0.5' -> (0.5, 0.5): the share of the epochs at the smaller size, and its scale, each in (0, 1)."""
    try:
        share, scale = (fraction(v) for v in text.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected SHARE,SCALE (two numbers between 0 and 1), got {text!r}") from None
    return share, scale


class OneLineParser(argparse.ArgumentParser):
    """argparse, with usage mistakes reported in one line (the usage text is one --help away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train(sub):
    p = sub.add_parser("train", help="train FCN-8 on a dataset; writes runs/<name>/")
    p.add_argument("--dataset", default="kitti_road")
    p.add_argument("--data-dir", required=True, help="dataset root, e.g. .../data_road")
    p.add_argument("--run-dir", required=True, help="output folder of this run (rerun to resume)")
    p.add_argument("--fast", action="store_true", help="tiny CPU mode: light encoder, small images, 8 images")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--minutes", type=positive_float,
                   help="wall-clock budget: stop after the last epoch that fits (rerun with more to continue)")
    p.add_argument("--image-size", type=parse_image_size, help="HEIGHTxWIDTH the images are resized to")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--learning-rate", type=positive_float, help="the base (peak) learning rate")
    # A metavar keeps argparse from listing lazy choices while the parser is built.
    p.add_argument("--optimizer", choices=OPTIMIZERS, metavar="NAME",
                   help="adam (default), adamw, or sgd with momentum 0.9")
    p.add_argument("--weight-decay", type=positive_float, help="decoupled weight decay (adamw, sgd)")
    p.add_argument("--lr-schedule", choices=SCHEDULES, metavar="NAME",
                   help="constant (default), or warm-up then cosine/poly decay")
    p.add_argument("--warmup-epochs", type=positive_float, help="linear warm-up length (cosine, poly)")
    p.add_argument("--encoder", choices=ENCODERS, metavar="NAME", help="one of %(choices)s")
    p.add_argument("--weights", help="'imagenet', a weights file of the encoder, or 'none' (random init)")
    p.add_argument("--init-from", metavar="MODEL.keras",
                   help="start from another run's model (e.g. pre-trained on synthetic frames); layers whose "
                        "shapes differ, such as the score layers for another class count, keep their initialisation")
    p.add_argument("--val-fraction", type=fraction)
    p.add_argument("--max-train-images", type=positive_int)
    p.add_argument("--max-val-images", type=positive_int)
    p.add_argument("--exclude-frames-in", metavar="DIR",
                   help="keep frames whose file names appear in DIR (e.g. a held-out test copy) out of the run")
    p.add_argument("--class-balancing", action="store_true", default=None,
                   help="median-frequency class weights as per-pixel sample weights")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--scale-range", type=scale_range, metavar="LOW,HIGH",
                   help="random scale of the training size, then a crop (e.g. 0.5,2.0)")
    p.add_argument("--progressive-resizing", type=progressive_resizing, metavar="SHARE,SCALE",
                   help="train the first SHARE of the epochs on images SCALE times the size, e.g. 0.5,0.5")
    p.add_argument("--cache-decoded", choices=["auto", "on", "off"],
                   help="keep decoded training images in memory (auto: where they fit)")
    p.add_argument("--class-weighting", choices=WEIGHTINGS, help="with --class-balancing: plain or square root")
    p.add_argument("--max-class-weight", type=positive_float, help="with --class-balancing: cap on a class weight")
    p.add_argument("--focal-gamma", type=positive_float, help="focal term (1 - p)^gamma on each pixel's loss")
    p.add_argument("--ohem-fraction", type=fraction, help="keep only this fraction of hardest pixels in the loss")
    p.add_argument("--ohem-min-kept", type=positive_int, help="keep at least this many pixels with OHEM")
    p.add_argument("--label-smoothing", type=fraction, metavar="EPS",
                   help="aim at 1 - EPS on the true class and EPS / classes on each (e.g. 0.1)")
    p.add_argument("--ema", dest="ema_momentum", type=fraction, metavar="MOMENTUM",
                   help="validate and save the exponential moving average of the weights, updated after each "
                        "step with this momentum (e.g. 0.99)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="float32 (default), bfloat16 (mixed: CPUs with native bfloat16), float16 (mixed: GPUs), or "
                        "auto: float16 on a GPU, bfloat16 where this CPU and encoder gain from it, else float32")
    p.add_argument("--mixed-precision", dest="precision", action="store_const", const="float16",
                   help="the same as --precision float16")
    p.add_argument("--jit-compile", action="store_true", default=None, help="XLA compilation")
    p.add_argument("--strategy", choices=STRATEGIES, metavar="NAME",
                   help="default: one device; mirrored: every GPU of this machine; multi_worker: several machines, "
                        "each started with TF_CONFIG and KERAS_BACKEND=jax (see docs/scaling.md). "
                        "--batch-size is the global batch")
    p.add_argument("--seed", type=int)


MODEL_HELP = "a .keras file written by `fcn train`, or a .tflite file written by `fcn export`"


def _add_predict(sub):
    p = sub.add_parser("predict", help="predict a folder of images")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--input", required=True, help="folder of images")
    p.add_argument("--output", required=True, help="folder for the results")
    p.add_argument("--format", default="devkit", choices=["devkit", "overlay", "labels", "devkit-bev", "errors"],
                   help="devkit-bev: the devkit result maps in bird's-eye view, as the KITTI server takes them "
                        "(needs --calib-dir); errors: true/false positives and misses (many classes: right/wrong) "
                        "against --gt-dir")
    p.add_argument("--calib-dir", metavar="DIR", help="with --format devkit-bev: the images' KITTI calib files")
    p.add_argument("--gt-dir", metavar="DIR", help="with --format errors: the input images' ground truth, named as "
                   "in the model's dataset (e.g. training/gt_image_2 for KITTI Road)")
    p.add_argument("--image-size", type=parse_image_size,
                   help="HEIGHTxWIDTH to run at (default: the size recorded in the model file)")
    add_tta_arguments(p)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="score results against ground truth")
    kinds = p.add_subparsers(dest="kind", required=True)
    road = kinds.add_parser("kitti-road", help="the official KITTI Road devkit scores (perspective view)")
    road.add_argument("--gt-dir", required=True, help=".../data_road/training/gt_image_2")
    road.add_argument("--results-dir", required=True, help="8-bit confidence PNGs named like the gt files")
    road.add_argument("--json", action="store_true", help="print JSON (fractions) instead of a table")
    _add_bev_arguments(road)
    add_per_frame_argument(road)
    seg = kinds.add_parser("segmentation", help="per-class IoU, mean IoU and pixel accuracy of a model")
    seg.add_argument("--dataset", required=True)
    where = seg.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="the dataset's root, as for training")
    where.add_argument("--eval-dir", metavar="DIR", help="score every frame of DIR, a folder in the dataset's "
                       "own layout (a held-out copy): see docs/evaluation.md")
    seg.add_argument("--split", help="train, val (default) or test where the dataset has a labelled one; with "
                     "--eval-dir, which split of a folder holding several")
    seg.add_argument("--model", required=True, help=MODEL_HELP)
    seg.add_argument("--image-size", type=parse_image_size, help="default: the size recorded in the model file")
    seg.add_argument("--val-fraction", type=fraction, default=0.2, help="for datasets without an official split")
    seg.add_argument("--seed", type=int, default=0)
    seg.add_argument("--json", action="store_true", help="print JSON (fractions) instead of a table")
    add_tta_arguments(seg)
    add_per_frame_argument(seg)


def add_per_frame_argument(p) -> None:
    """--per-frame FILE.csv, for the evaluate commands."""
    p.add_argument("--per-frame", metavar="FILE.csv",
                   help="also write one row of scores per frame, worst first (KITTI Road: F-measure, precision "
                        "and recall at each category's best threshold; many classes: pixel accuracy and IoUs)")


def _add_bev_arguments(road) -> None:
    road.add_argument("--bev", action="store_true",
                      help="also score in bird's-eye view, as the KITTI leaderboard does (needs --calib-dir)")
    road.add_argument("--calib-dir", metavar="DIR", help="the frames' calib files, e.g. .../data_road/training/calib")


def _add_submit(sub):
    p = sub.add_parser("submit", help="a benchmark submission: every test frame, in the form its server accepts")
    kinds = p.add_subparsers(dest="kind", required=True)
    road = kinds.add_parser("kitti-road", help="KITTI Road: BEV road maps of every testing frame in one zip")
    road.add_argument("--model", required=True, help=MODEL_HELP)
    road.add_argument("--data-dir", required=True, help="the KITTI data_road folder (uses testing/image_2 and "
                      "testing/calib)")
    road.add_argument("--output", required=True, help="the zip archive to write, e.g. submission.zip")
    road.add_argument("--image-size", type=parse_image_size,
                      help="HEIGHTxWIDTH to run at (default: the size recorded in the model file)")
    add_tta_arguments(road)


def _add_synth(sub):
    p = sub.add_parser("synth", help="write a synthetic street-scene dataset in a real on-disk layout")
    p.add_argument("--dataset", default="kitti_road",
                   choices=["kitti_road", "camvid", "cvc_kitti", "cityscapes", "kitti_semantics"])
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=0)


def _add_data(sub):
    from fcn.data.download import TIMEOUT
    from fcn.data.prepare import SOURCES

    p = sub.add_parser("data", help="get a real dataset: download, verify, unpack, count the frames")
    actions = p.add_subparsers(dest="action", required=True)
    what = ("download a dataset's official archives (resuming a partial one), check their checksums, unpack "
            "them into the layout its reader expects and count the frames per split")
    prep = actions.add_parser("prepare", help=what, description=what + "; see docs/data.md")
    prep.add_argument("dataset", choices=list(SOURCES), help="the dataset to get")
    prep.add_argument("--dest", required=True, help="where to put it, e.g. data/ (writes DEST/<dataset>/)")
    prep.add_argument("--mirror", metavar="URL_OR_DIR", help="take the archives, by file name, from this "
                      "address or folder instead of the official ones")
    prep.add_argument("--timeout", type=positive_float, default=TIMEOUT,
                      help=f"seconds to wait for the server to answer (default: {TIMEOUT:g})")


def _add_export(sub):
    p = sub.add_parser("export", help="a model as a TFLite file (float32, float16 or int8) or a SavedModel folder, "
                       "at one fixed input size")
    p.add_argument("--model", required=True, help="a .keras file written by `fcn train`")
    p.add_argument("--format", required=True, choices=ChoicesOf("fcn.export", "FORMATS"), metavar="FORMAT",
                   help="one of %(choices)s")
    p.add_argument("--quantize", default="none", choices=ChoicesOf("fcn.export", "QUANTIZATIONS"), metavar="Q",
                   help="TFLite only: none, fp16 (float16 weights), or int8 (weights and activations: needs "
                        "--calibration-dir)")
    p.add_argument("--output", required=True, help="the .tflite file, or the SavedModel folder, to write")
    p.add_argument("--image-size", type=parse_image_size,
                   help="HEIGHTxWIDTH the export runs at (default: the size recorded in the model file)")
    p.add_argument("--calibration-dir", metavar="DIR",
                   help="training images: a folder of images, or the root of the model's dataset; int8 is "
                        "calibrated on them, and a TFLite export is compared with the model on them")


def _add_video(sub):
    p = sub.add_parser("video", help="segment a video file, a folder of frames or a camera into an overlay video")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="a video file, or a folder of frame images (in name order)")
    source.add_argument("--camera", type=int, metavar="N", help="a camera's device number (stop it with Ctrl-C)")
    p.add_argument("--output", required=True, help="the video to write (.mp4)")
    p.add_argument("--fps", type=positive_float,
                   help="frame rate of the written video (default: the input's; 10 for a folder of frames)")
    p.add_argument("--image-size", type=parse_image_size,
                   help="HEIGHTxWIDTH to run the network at (default: the size recorded in the model file)")
    p.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    p.add_argument("--no-legend", dest="legend", action="store_false", help="leave out the legend of class colours")


def _add_demo(sub):
    p = sub.add_parser("demo", help="synthetic KITTI Road -> train -> evaluate -> figures, offline")
    p.add_argument("--data-dir", help="a KITTI data_road folder (default: generate synthetic data)")
    p.add_argument("--run-dir", default="runs/demo")
    # Into the (git-ignored) run folder: the committed figures/demo/ change only on purpose (`make figures`).
    p.add_argument("--figures-dir", help="where the loss curves and overlays go (default: RUN_DIR/figures; "
                                         "`make figures` updates the committed figures/demo/)")
    p.add_argument("--epochs", type=positive_int, default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fcn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_synth, _add_train, _add_predict, _add_evaluate, _add_data, _add_export, _add_video,
                _add_submit):
        add(sub)
    return parser


def run_train(args) -> None:
    from fcn.train import TrainConfig, fast_config, train

    overrides = {key: getattr(args, key) for key in (
        "dataset", "data_dir", "run_dir", "epochs", "minutes", "image_size", "batch_size", "learning_rate",
        "optimizer", "weight_decay", "lr_schedule", "warmup_epochs", "encoder", "init_from", "val_fraction", "max_train_images",
        "max_val_images", "augment", "scale_range", "progressive_resizing", "cache_decoded", "class_balancing", "class_weighting",
        "max_class_weight", "focal_gamma", "ohem_fraction", "ohem_min_kept", "label_smoothing", "ema_momentum", "precision", "jit_compile", "seed",
        "strategy",
    ) if getattr(args, key) is not None}
    if args.exclude_frames_in:
        overrides["exclude_frames"] = sorted(p.name for p in Path(args.exclude_frames_in).glob("*.png"))
        if not overrides["exclude_frames"]:
            raise FileNotFoundError(f"{args.exclude_frames_in}: no .png frames to exclude")
    if args.weights is not None:
        overrides["weights"] = None if args.weights.lower() == "none" else args.weights
    config = fast_config(**overrides) if args.fast else TrainConfig(**overrides)
    _, history = train(config, verbose=2)
    print(json.dumps({key: values[-1] for key, values in history.items()}, indent=2))


def run_predict(args) -> None:
    if args.format == "errors" or args.gt_dir is not None:
        return run_predict_errors(args)
    from fcn import predict
    from fcn.data import DATASETS

    if args.format == "devkit-bev":
        return _run_predict_bev(args)
    info = predict.read_model_info(args.model)  # checks the file before anything else is done
    images = predict.list_images(args.input)
    _check_output_folder(args.output)
    image_size = args.image_size or predict.run_image_size(args.model)
    for path in images:  # from the PNG headers, before the model (up to 500 MB) is loaded
        predict.check_image_size(path, image_size)
    model = predict.load_model(args.model)
    options = {}
    if args.format == "devkit":
        options["road_id"] = predict.road_class_of(args.model, model)
    elif info is not None and info["dataset"] in DATASETS:
        options["palette"] = DATASETS[info["dataset"]].palette
    elif args.format == "overlay" and model.output_shape[-1] != 2:  # label ids need no colours
        raise ValueError(f"{args.model}: no fcn description in the model file, so its class colours are unknown")
    where = f"{image_size[0]}x{image_size[1]}" if image_size else "each image's own size"
    print(f"running the network at {where} ({'--image-size' if args.image_size else 'from the model file'})")
    written = predict.write_predictions(model, images, args.output, image_size, args.format, **options,
                                        tta_scales=args.tta_scales, tta_flip=args.tta_flip)
    print(f"wrote {len(written)} files to {args.output}")


def _run_predict_bev(args) -> None:
    """devkit result maps in bird's-eye view; every image's calib is read and checked before the model loads."""
    from fcn import predict

    predict.read_model_info(args.model)
    images = predict.list_images(args.input)
    _check_output_folder(args.output)
    image_size = args.image_size or predict.run_image_size(args.model)
    lookups = predict.bev_lookups(images, args.calib_dir)
    model = predict.load_model(args.model)
    road_id = predict.road_class_of(args.model, model)
    written = predict.write_bev_predictions(model, lookups, args.output, image_size, road_id,
                                            tta_scales=args.tta_scales, tta_flip=args.tta_flip)
    print(f"wrote {len(written)} bird's-eye-view result maps to {args.output}")


def run_submit(args) -> None:
    from fcn import submit

    result = submit.write_kitti_road_submission(args.model, args.data_dir, args.output, args.image_size,
                                                tta_scales=args.tta_scales, tta_flip=args.tta_flip)
    counts = ", ".join(f"{category} {count}" for category, count in result["frames"].items())
    print(f"wrote {result['output']}: {sum(result['frames'].values())} bird's-eye-view road maps ({counts}), "
          f"{result['bytes'] / 1e6:.1f} MB")


def run_predict_errors(args) -> None:
    from fcn import predict
    from fcn.data import ground_truth_of

    if args.format != "errors" or args.gt_dir is None:
        raise ValueError("--format errors and --gt-dir go together: error maps need the ground truth")
    info = _dataset_of_model(args.model)  # how its ground truth is named and read
    images = predict.list_images(args.input)
    if not Path(args.gt_dir).is_dir():
        raise FileNotFoundError(f"{args.gt_dir}: ground-truth folder not found")
    labels = [ground_truth_of(info, image, args.gt_dir) for image in images]
    _check_output_folder(args.output)
    image_size = args.image_size or predict.run_image_size(args.model)
    model = predict.load_model(args.model)
    predict.check_model_classes(args.model, model, info)
    written = predict.write_error_maps(model, images, labels, args.output, info, image_size,
                                       tta_scales=args.tta_scales, tta_flip=args.tta_flip)
    print(f"wrote {len(written)} error maps to {args.output}")


def _dataset_of_model(model_path):
    from fcn import predict
    from fcn.data import DATASETS

    info = predict.read_model_info(model_path)
    if info is None or info["dataset"] not in DATASETS:
        what = "no fcn description in the model file" if info is None else f"unknown dataset {info['dataset']!r}"
        raise ValueError(f"{model_path}: {what}, so how its ground truth is read is unknown")
    return DATASETS[info["dataset"]]


def _check_output_file(path) -> None:
    """Refuse, before any work, an output file that cannot be written: one line naming it."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file name")
    parent = next(p for p in path.parents if p.exists())
    if not parent.is_dir():
        raise NotADirectoryError(f"{path}: cannot be written, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{path}: cannot be written, {parent} is not writable")


def _write_per_frame(args, rows: list[dict], columns) -> None:
    from fcn import per_frame

    per_frame.write_csv(args.per_frame, rows, columns)
    print(f"wrote the scores of {len(rows)} frames, worst first, to {args.per_frame}",
          file=sys.stderr if args.json else sys.stdout)


def _check_output_folder(path) -> None:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: output path is a file, not a folder")
    parent = next(p for p in [path, *path.parents] if p.exists())
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{parent}: not writable, so {path} cannot be written")


def run_evaluate(args) -> None:
    if args.kind == "segmentation":
        return run_evaluate_segmentation(args)
    from fcn import metrics, per_frame

    if args.per_frame:
        _check_output_file(args.per_frame)
    # Bird's-eye view first, so a missing or bad calib file stops the run before any other scoring.
    bev = metrics.evaluate_kitti_road_bev(args.gt_dir, args.results_dir, args.calib_dir,
                                          progress=not args.json) if args.bev else None
    if args.per_frame:
        scores, rows = per_frame.kitti_road_per_frame(args.gt_dir, args.results_dir, progress=not args.json)
        _write_per_frame(args, rows, per_frame.ROAD_COLUMNS)
    else:
        scores = metrics.evaluate_kitti_road(args.gt_dir, args.results_dir, progress=not args.json)
    keys = ("MaxF", "AvgPrec", "PRE_wp", "REC_wp", "FPR_wp", "FNR_wp", "BestThresh")
    if args.json:
        views = {"perspective": scores, "bev": bev}
        table = {view: {c: {k: s[k] for k in keys} for c, s in view_scores.items()}
                 for view, view_scores in views.items() if view_scores is not None}
        print(json.dumps(table if bev is not None else table["perspective"], indent=2))
        return
    print(metrics.format_kitti_road_table(scores))
    if bev is not None:
        print()
        print(metrics.format_kitti_road_table(bev, "bird's-eye view"))


def run_evaluate_segmentation(args) -> None:
    from fcn import metrics, per_frame, predict
    from fcn.data import get_dataset

    info = get_dataset(args.dataset)
    if args.per_frame:
        _check_output_file(args.per_frame)
    samples = _evaluation_samples(info, args)
    model = predict.load_model(args.model)
    predict.check_model_classes(args.model, model, info)
    image_size = args.image_size or predict.run_image_size(args.model)
    rows = [] if args.per_frame else None
    scores = predict.evaluate_segmentation(model, samples, info, image_size, progress=not args.json,
                                           tta_scales=args.tta_scales, tta_flip=args.tta_flip, per_frame=rows)
    if args.per_frame:
        _write_per_frame(args, rows, per_frame.segmentation_columns(info.class_names))
    print(json.dumps(_nan_to_none(scores), indent=2) if args.json else metrics.format_segmentation_table(scores))


def _evaluation_samples(info, args) -> list:
    # The frames are listed (and their label sizes checked) before the model is loaded.
    from fcn.data import list_eval_folder, list_split

    if args.eval_dir is not None:
        return list_eval_folder(info, args.eval_dir, args.split)
    return list_split(info, args.data_dir, args.split or "val", args.val_fraction, args.seed)


def _nan_to_none(value):
    # Classes absent from both truth and prediction have IoU NaN; strict JSON spells that null.
    if isinstance(value, dict):
        return {key: _nan_to_none(v) for key, v in value.items()}
    return None if isinstance(value, float) and value != value else value


def run_synth(args) -> None:
    from fcn.data import synthetic

    _check_output_folder(args.out_dir)
    root = synthetic.generate(args.dataset, args.out_dir, seed=args.seed)
    print(f"wrote synthetic {args.dataset} data to {root}")


def run_demo(args) -> None:
    from fcn import demo

    figures_dir = args.figures_dir or demo.default_figures_dir(args.run_dir)
    for folder in (args.run_dir, figures_dir):  # before minutes of training, not after
        _check_output_folder(folder)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise FileNotFoundError(f"{args.data_dir}: no such data folder")
    demo.run_demo(data_dir=args.data_dir, run_dir=args.run_dir, figures_dir=figures_dir, epochs=args.epochs)


def run_data(args) -> None:
    from fcn.data import prepare

    _check_output_folder(args.dest)
    root = prepare.prepare(args.dataset, args.dest, mirror=args.mirror, timeout=args.timeout)
    print(f"ready: fcn train --dataset {args.dataset} --data-dir {root}")


def run_export(args) -> None:
    from fcn import export

    result = export.export_model(args.model, args.output, args.format, args.quantize, args.image_size,
                                 args.calibration_dir)
    height, width = result["image_size"]
    print(f"wrote {result['output']} ({args.format}, quantize {args.quantize}, input {height}x{width}, "
          f"{result['bytes'] / 1e6:.1f} MB)")
    check = result["check"]
    if check is not None:
        print(f"against {args.model} on {check['images']} of the calibration images: the same class on "
              f"{100 * check['pixel_agreement']:.2f} % of pixels, logits within {check['max_abs_logit_diff']:.3g} "
              f"(largest logit {check['logit_range']:.3g})")


def run_video(args) -> None:
    from fcn import video

    result = video.segment_video(args.model, args.output, args.input, args.camera, args.fps, args.image_size,
                                 args.max_frames, args.legend)
    width, height = result["size"]
    print(f"wrote {result['frames']} frames ({width}x{height}, {result['fps']:g} fps) to {result['output']} "
          f"in {result['seconds']:.1f} s: {result['frames_per_second']:.1f} frames/s")
    if result["resized"]:
        print(f"{result['resized']} frames of another size were resized to {width}x{height}, the first frame's")


COMMANDS = {"train": run_train, "predict": run_predict, "evaluate": run_evaluate, "synth": run_synth,
            "demo": run_demo, "data": run_data, "export": run_export, "video": run_video, "submit": run_submit}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_calib_dir_given(parser, args)
    try:
        COMMANDS[args.command](args)
    except Exception as error:
        if "fcn.distribute" in sys.modules:  # a worker of a multi_worker run ends here, at once
            sys.modules["fcn.distribute"].leave_cluster(error)
        if not _is_input_error(error):
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
    else:
        return 0
    _stop_input_threads()
    return 1


def _check_calib_dir_given(parser, args) -> None:
    # BEV needs every frame's calibration: a usage error, reported before anything runs.
    if getattr(args, "bev", False) and not args.calib_dir:
        parser.error("evaluate kitti-road --bev needs --calib-dir (the frames' calib files)")
    if getattr(args, "format", None) == "devkit-bev" and not args.calib_dir:
        parser.error("predict --format devkit-bev needs --calib-dir (the images' calib files)")


def _stop_input_threads() -> None:
    # The failed step's tf.data iterator is still alive in the traceback's frames, with threads that call
    # into Python; left to interpreter shutdown they abort the process (SIGABRT). Destroy it now.
    import gc

    sys.last_traceback = sys.last_value = None
    gc.collect()


def _is_input_error(error: Exception) -> bool:
    # Bad files and arguments get one clear line; a bug still shows its traceback.
    if isinstance(error, (OSError, ValueError, RuntimeError)):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)


def _one_line(error: Exception) -> str:
    # A bad file met inside tf.data arrives as a TensorFlow error; show the file and the problem only.
    if "tensorflow" in sys.modules:
        from fcn.data import pipeline

        error = pipeline.input_error(error) or error
    return str(error).strip().splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
