"""Cityscapes (Cordts et al., CVPR 2016): 19 classes (or 7 categories), official folder layout.

    leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png      RGB, 2048x1024
    gtFine/<split>/<city>/<stem>_gtFine_labelIds.png       label ids 0..33 (mode L)

with <stem> = <city>_<sequence 6 digits>_<frame 6 digits> and split train, val or test. Labels are read
from `labelIds` and mapped with the official table (fcn.data.cityscapes_labels); `labelTrainIds` files,
where present, are not used. The official train and val splits are used as they are.

Results for the official evaluation (cityscapesscripts' evalPixelLevelSemanticLabeling) are PNGs of
*label ids* at full resolution, one per frame, named `<stem>*.png` anywhere under the results folder (the
script matches `<city>_<seq>_<frame>*.png` and fails on two matches): see `write_result`.

Memory: prediction runs at the training size and the (H, W, C) probabilities are resized back to
2048x1024 (fcn.predict.predict_probabilities with image_size=...); 19 float32 channels at full size are
~160 MB per image, so predict one image at a time, never the network at 2048x1024 on this CPU machine.
"""

import re
from pathlib import Path

import numpy as np

from fcn.data import cityscapes_labels, label_check
from fcn.data.frame import Frame
from fcn.imageio import ImageFileError, check_label_pair, read_unchanged, write_png

CLASS_NAMES = cityscapes_labels.CLASS_NAMES
NUM_CLASSES = cityscapes_labels.NUM_CLASSES
IGNORE_ID = cityscapes_labels.IGNORE_ID
PALETTE = cityscapes_labels.PALETTE
CATEGORIES = cityscapes_labels.CATEGORIES
SPLITS = ("train", "val", "test")

_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"
_STEM = re.compile(r"^([a-z][a-z0-9-]*)_(\d{6})_(\d{6})")


class Sample(Frame):
    """A Cityscapes frame; its name is the stem <city>_<seq>_<frame>."""

    @property
    def city(self) -> str:
        return self.name.split("_")[0]


def label_name(image_name: str) -> str:
    """The gtFine labelIds file name of an image: <stem>_leftImg8bit.png -> <stem>_gtFine_labelIds.png."""
    image_name = Path(image_name).name
    if not image_name.endswith(_IMAGE_SUFFIX):
        raise ValueError(f"{image_name}: not a Cityscapes image name (<city>_<seq>_<frame>{_IMAGE_SUFFIX})")
    return image_name[: -len(_IMAGE_SUFFIX)] + _LABEL_SUFFIX


def label_path(root, split: str, stem: str) -> Path:
    """gtFine labelIds file of a frame."""
    return Path(root) / "gtFine" / split / stem.split("_")[0] / f"{stem}{_LABEL_SUFFIX}"


def list_samples(root, split: str = "train", check_sizes: bool = True) -> list[Sample]:
    """All frames of a split that have an image, sorted by name, each with its labelIds file.

    Raises FileNotFoundError if the split has no images (see list_label_files for gt-only splits) and
    ImageFileError naming the file for a missing or empty label, or one whose size differs from its image.
    """
    image_dir = Path(root) / "leftImg8bit" / _check_split(split)
    images = sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}"))
    if not images:
        raise FileNotFoundError(
            f"{image_dir}: no <city>/*{_IMAGE_SUFFIX} images (expected the Cityscapes layout)"
        )
    samples = []
    for image in images:
        stem = image.name[: -len(_IMAGE_SUFFIX)]
        sample = Sample(image, label_path(root, split, stem), stem)
        if check_sizes:
            check_label_pair(sample.image, sample.label)
        samples.append(sample)
    return samples


def splits_in(root) -> list[str]:
    """The splits a Cityscapes-layout folder holds: those with both leftImg8bit/<split>/ and gtFine/<split>/."""
    root = Path(root)
    return [split for split in SPLITS
            if (root / "leftImg8bit" / split).is_dir() and (root / "gtFine" / split).is_dir()]


def list_label_files(root, split: str = "val") -> list[Path]:
    """All gtFine labelIds files of a split, sorted (also for splits whose images are absent)."""
    label_dir = Path(root) / "gtFine" / _check_split(split)
    labels = sorted(label_dir.glob(f"*/*{_LABEL_SUFFIX}"))
    if not labels:
        raise FileNotFoundError(f"{label_dir}: no <city>/*{_LABEL_SUFFIX} files")
    return labels


def list_train_val(root) -> tuple[list[Sample], list[Sample]]:
    """The official train and val splits."""
    return list_samples(root, "train"), list_samples(root, "val")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def read_label(path, categories: bool = False) -> np.ndarray:
    """Read a `*_gtFine_labelIds.png` into train ids (or category ids with categories=True).

    Returns:
        (H, W) uint8 in [0, 19) (or [0, 7)), IGNORE_ID = 255. Raises ImageFileError naming the file for
        a multi-channel map or ids outside the Cityscapes table.
    """
    label_ids = read_unchanged(path)
    if label_ids.ndim != 2:
        raise ImageFileError(f"{path}: label ids must be a single-channel image, got shape {label_ids.shape}")
    with label_check.naming_file(path):
        train_ids = cityscapes_labels.label_ids_to_train_ids(label_ids)
    return cityscapes_labels.train_ids_to_categories(train_ids) if categories else train_ids


def result_name(stem: str) -> str:
    """File name of a frame's result, found by the official script's `<city>_<seq>_<frame>*.png` match."""
    match = _STEM.match(stem)
    if match is None:
        raise ValueError(f"{stem!r}: not a Cityscapes frame name (<city>_<6 digits>_<6 digits>)")
    return f"{match.group(0)}_labelIds.png"


def write_result(path, train_ids: np.ndarray) -> Path:
    """Write predicted train ids as an official result file: a label-id PNG (mode L), full resolution.

    Args:
        path: the output file; its name must start with the frame stem (see result_name).
        train_ids: (H, W) integer train ids in [0, 19); 255 is written as 0 (unlabeled).
    """
    path = Path(path)
    if _STEM.match(path.name) is None or path.suffix != ".png":
        raise ValueError(
            f"{path}: result names must be <city>_<seq>_<frame>*.png, e.g. aachen_000000_000019_labelIds.png"
        )
    if np.ndim(train_ids) != 2:
        raise ValueError(f"train_ids must be (H, W), got shape {np.shape(train_ids)}")
    return write_png(path, cityscapes_labels.train_ids_to_label_ids(train_ids))
