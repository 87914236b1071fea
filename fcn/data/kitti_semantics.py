"""KITTI semantic segmentation benchmark (Alhaija et al., IJCV 2018): Cityscapes labels on KITTI frames.

    data_semantics/training/image_2/<id6>_10.png        RGB, ~1242x375 (sizes vary per frame)
    data_semantics/training/semantic/<id6>_10.png       Cityscapes label ids (mode L)  <- labels read here
    data_semantics/training/semantic_rgb/<id6>_10.png   Cityscapes colours (ids 0..4 all black: not decodable)
    data_semantics/training/instance/<id6>_10.png       16-bit, value // 256 = label id
    data_semantics/testing/image_2/<id6>_10.png         no ground truth

Label ids map to the 19 Cityscapes train ids (fcn.data.cityscapes_labels). The benchmark has no official
validation split: split_train_val draws a seeded one (see there).
"""

import re
from pathlib import Path

import numpy as np

from fcn.data import cityscapes_labels, label_check
from fcn.data.frame import Frame
from fcn.imageio import ImageFileError, check_label_pair, read_unchanged

CLASS_NAMES = cityscapes_labels.CLASS_NAMES
NUM_CLASSES = cityscapes_labels.NUM_CLASSES
IGNORE_ID = cityscapes_labels.IGNORE_ID
PALETTE = cityscapes_labels.PALETTE

_IMAGE_NAME = re.compile(r"^\d{6}_10\.png$")


Sample = Frame


def list_samples(root, split: str = "training", check_sizes: bool = True) -> list[Sample]:
    """All frames of a split, sorted by name, each with its `semantic` map (training only).

    Raises ImageFileError naming the file for a missing or empty label map, or one whose size
    differs from its image.
    """
    if split not in ("training", "testing"):
        raise ValueError(f"split must be 'training' or 'testing', got {split!r}")
    return _list_frames(Path(root) / split, split == "training", check_sizes)


def list_folder(folder, check_sizes: bool = True) -> list[Sample]:
    """All labelled frames of a folder with image_2/ + semantic/ (e.g. training/ or a held-out copy)."""
    return _list_frames(Path(folder), True, check_sizes)


def _list_frames(folder: Path, labelled: bool, check_sizes: bool) -> list[Sample]:
    image_dir = folder / "image_2"
    images = sorted(p for p in image_dir.glob("*.png") if _IMAGE_NAME.match(p.name))
    if not images:
        raise FileNotFoundError(
            f"{image_dir}: no <id6>_10.png images (expected the KITTI data_semantics layout)"
        )
    samples = []
    for image in images:
        label = folder / "semantic" / image.name if labelled else None
        if label is not None and check_sizes:
            check_label_pair(image, label)
        samples.append(Sample(image, label, image.stem))
    return samples


def read_label(path) -> np.ndarray:
    """Read a `semantic` label-id map into train ids: (H, W) uint8 in [0, 19) or IGNORE_ID.

    Raises ImageFileError naming the file for a multi-channel map or ids outside the Cityscapes table.
    """
    label_ids = read_unchanged(path)
    if label_ids.ndim != 2:
        raise ImageFileError(f"{path}: label ids must be a single-channel image, got shape {label_ids.shape}")
    with label_check.naming_file(path):
        return cityscapes_labels.label_ids_to_train_ids(label_ids)


def split_train_val(samples: list[Sample], val_fraction: float = 0.2, seed: int = 0):
    """Deterministic train/validation split (the benchmark defines none).

    The frames are shuffled with numpy's default_rng(seed) and the first round(val_fraction * n) go to
    validation; both parts are returned sorted by name. Same samples, fraction and seed -> same split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = int(round(val_fraction * len(samples)))
    val = [samples[i] for i in order[:n_val]]
    train = [samples[i] for i in order[n_val:]]
    return sorted(train, key=lambda s: s.name), sorted(val, key=lambda s: s.name)
