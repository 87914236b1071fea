"""KITTI Road (Fritsch, Kuehnl & Geiger, ITSC 2013): road vs not-road, official `data_road` layout.

    data_road/training/image_2/<cat>_<id>.png          RGB, ~1242x375 (sizes vary slightly)
    data_road/training/gt_image_2/<cat>_road_<id>.png  RGB colour code (below); um also has <cat>_lane_<id>.png
    data_road/training/calib/<cat>_<id>.txt
    data_road/testing/image_2/<cat>_<id>.png           no ground truth

Categories: um (urban marked), umm (urban multiple marked lanes), uu (urban unmarked).
Ground truth, as the official devkit reads it: road = blue channel > 0, evaluated = red channel > 0.
So magenta = road, red = not road, and black (don't care) or pure blue (road outside the evaluated area)
are never counted: they become IGNORE_ID here. These four colours are the whole encoding: any other colour
(a resized mask's blend, a green lane marking) is an error naming the file, never a guess.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcn.data import label_check
from fcn.imageio import check_label_pair, read_rgb

CATEGORIES = ("um", "umm", "uu")
CLASS_NAMES = ("not road", "road")
NUM_CLASSES = 2
IGNORE_ID = 255
# Overlay colours (RGB) per training id.
PALETTE = np.array([[0, 0, 0], [255, 0, 255]], dtype=np.uint8)
# Every colour of the on-disk gt (RGB): don't care, not road, road, road outside the evaluated area.
GT_COLOURS = {"black": (0, 0, 0), "red": (255, 0, 0), "magenta": (255, 0, 255), "blue": (0, 0, 255)}
_FOREIGN_COLOURS = f"colours outside the KITTI Road gt encoding ({', '.join(GT_COLOURS)})"

_IMAGE_NAME = re.compile(r"^(um|umm|uu)_(\d{6})\.png$")


@dataclass(frozen=True)
class Sample:
    """One frame: its image, its ground truth (None for testing), its category and id."""

    image: Path
    label: Path | None
    category: str
    frame_id: str

    @property
    def name(self) -> str:
        return f"{self.category}_{self.frame_id}"


def gt_name(image_name: str, kind: str = "road") -> str:
    """Ground-truth (and devkit result) file name for an image name: um_000000.png -> um_road_000000.png."""
    match = _IMAGE_NAME.match(Path(image_name).name)
    if match is None:
        raise ValueError(f"{image_name}: not a KITTI Road image name (<um|umm|uu>_<6 digits>.png)")
    return f"{match.group(1)}_{kind}_{match.group(2)}.png"


def list_samples(root, split: str = "training", check_sizes: bool = True) -> list[Sample]:
    """All frames of a split, sorted by name, each with its road ground truth (training only).

    Raises ImageFileError naming the file for a missing or empty ground truth, or one whose size
    differs from its image (read from the PNG headers, so this is cheap).
    """
    if split not in ("training", "testing"):
        raise ValueError(f"split must be 'training' or 'testing', got {split!r}")
    return _list_frames(Path(root) / split, split == "training", check_sizes)


def list_folder(folder, check_sizes: bool = True) -> list[Sample]:
    """All labelled frames of a folder with image_2/ + gt_image_2/ (e.g. training/ or a held-out copy)."""
    return _list_frames(Path(folder), True, check_sizes)


def _list_frames(folder: Path, labelled: bool, check_sizes: bool) -> list[Sample]:
    image_dir = folder / "image_2"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: no such folder (expected the KITTI data_road layout)")
    samples = []
    for image in sorted(image_dir.glob("*.png")):
        match = _IMAGE_NAME.match(image.name)
        if match is None:
            continue
        label = folder / "gt_image_2" / gt_name(image.name) if labelled else None
        if label is not None and check_sizes:
            check_label_pair(image, label)
        samples.append(Sample(image, label, match.group(1), match.group(2)))
    if not samples:
        raise FileNotFoundError(f"{image_dir}: no KITTI Road images (<um|umm|uu>_<id>.png)")
    return samples


def label_ids_from_gt(gt_rgb: np.ndarray) -> np.ndarray:
    """The one mapping from the on-disk colour code to training ids.

    Args:
        gt_rgb: (H, W, 3) uint8 RGB ground truth.
    Returns:
        (H, W) uint8: 1 = road, 0 = not road, IGNORE_ID = not evaluated (black or blue). Raises
        ValueError listing any colour outside GT_COLOURS, with its pixel count.
    """
    check_gt_colours(gt_rgb)
    road = gt_rgb[..., 2] > 0
    valid = gt_rgb[..., 0] > 0
    return np.where(valid, road, IGNORE_ID).astype(np.uint8)


def check_gt_colours(gt_rgb: np.ndarray) -> None:
    """Raise ValueError for a gt array that is not (H, W, 3) or holds a colour other than GT_COLOURS."""
    gt_rgb = np.asarray(gt_rgb)
    if gt_rgb.ndim != 3 or gt_rgb.shape[2] != 3:
        raise ValueError(f"KITTI Road ground truth must be (H, W, 3) RGB, got shape {gt_rgb.shape}")
    red, green, blue = gt_rgb[..., 0], gt_rgb[..., 1], gt_rgb[..., 2]
    # The four colours are exactly: red and blue each 0 or 255, green 0 (cheaper than four comparisons).
    known = (green == 0) & ((red == 0) | (red == 255)) & ((blue == 0) | (blue == 255))
    label_check.check_known(gt_rgb, known, _FOREIGN_COLOURS)


def read_gt(path) -> np.ndarray:
    """Read a gt file as (H, W, 3) uint8 RGB; ImageFileError naming the file for any foreign colour."""
    gt_rgb = read_rgb(path)
    with label_check.naming_file(path):
        check_gt_colours(gt_rgb)
    return gt_rgb


def read_label(path) -> np.ndarray:
    """Read a ground-truth file into training ids (see label_ids_from_gt); errors name the file."""
    gt_rgb = read_rgb(path)
    with label_check.naming_file(path):
        return label_ids_from_gt(gt_rgb)


def split_train_val(samples: list[Sample], val_fraction: float = 0.2, seed: int = 0):
    """Deterministic train/validation split, stratified by category.

    Each category's frames are shuffled with `seed` and the first round(val_fraction * n) go to
    validation, so um, umm and uu keep their proportions in both parts.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for category in CATEGORIES:
        members = [s for s in samples if s.category == category]
        order = rng.permutation(len(members))
        n_val = int(round(val_fraction * len(members)))
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return sorted(train, key=lambda s: s.name), sorted(val, key=lambda s: s.name)
