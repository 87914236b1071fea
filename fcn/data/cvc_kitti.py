"""CVC "KITTI semantic" (Ros et al., WACV 2015): 11 classes on KITTI odometry frames.

    <root>/Training_00/RGB/%06d.png     RGB (odometry sequence 00)
    <root>/Training_00/GT/%06d.png      RGB colour code (COLOURS, one colour per class, void black)
    <root>/Validation_07/{RGB,GT}/...   the same for sequence 07

Splits: "train" = Training_00, "val" = Validation_07. Ground truth is decoded by exact colour match;
a colour outside the map is an error naming the file and the colours, never made a class or "ignore".
"""

from pathlib import Path

import numpy as np

from fcn.data import label_check
from fcn.data.frame import Frame
from fcn.imageio import check_label_pair, read_rgb

CLASS_NAMES = (
    "Sky",
    "Building",
    "Road",
    "Sidewalk",
    "Fence",
    "Vegetation",
    "Pole",
    "Car",
    "Sign",
    "Pedestrian",
    "Cyclist",
)
NUM_CLASSES = 11
VOID = 11
IGNORE_ID = 255
# RGB colour of each CVC index, void last: the ground truth is stored as these colours
# (the map of fvisin/dataset_loaders, dataset_loaders/images/kitti.py).
COLOURS = (
    (128, 128, 128),  # 0 Sky
    (128, 0, 0),  # 1 Building
    (128, 64, 128),  # 2 Road
    (0, 0, 192),  # 3 Sidewalk (not CamVid's Pavement colour)
    (64, 64, 128),  # 4 Fence
    (128, 128, 0),  # 5 Vegetation
    (192, 192, 128),  # 6 Pole
    (64, 0, 128),  # 7 Car
    (192, 128, 128),  # 8 Sign
    (64, 64, 0),  # 9 Pedestrian
    (0, 128, 192),  # 10 Cyclist
    (0, 0, 0),  # 11 void
)
PALETTE = np.array(COLOURS[:NUM_CLASSES], dtype=np.uint8)
SPLIT_FOLDERS = {"train": "Training_00", "val": "Validation_07"}
_FOREIGN_COLOURS = "colours outside the CVC colour map (11 classes and void black)"


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_KEYS = _pack(np.array(COLOURS))
_ORDER = np.argsort(_KEYS)
_SORTED_KEYS = _KEYS[_ORDER]
_SORTED_IDS = np.array([IGNORE_ID if i == VOID else i for i in _ORDER], dtype=np.uint8)


Sample = Frame


def list_samples(root, split: str = "train", check_sizes: bool = True) -> list[Sample]:
    """All frames of a split, sorted by name.

    Raises ImageFileError naming the file for a missing or empty ground truth, or one whose size
    differs from its image.
    """
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"split must be one of {tuple(SPLIT_FOLDERS)}, got {split!r}")
    return list_folder(Path(root) / SPLIT_FOLDERS[split], check_sizes)


def list_folder(folder, check_sizes: bool = True) -> list[Sample]:
    """All frames of one split folder (RGB/ + GT/, e.g. Validation_07 or a held-out copy), sorted by name."""
    folder = Path(folder)
    images = sorted((folder / "RGB").glob("*.png"))
    if not images:
        raise FileNotFoundError(
            f"{folder / 'RGB'}: no PNG images (expected the CVC {{RGB,GT}}/%06d.png layout)"
        )
    samples = [Sample(image, folder / "GT" / image.name, image.stem) for image in images]
    if check_sizes:
        for sample in samples:
            check_label_pair(sample.image, sample.label)
    return samples


def decode_cvc_colours(gt_rgb: np.ndarray) -> np.ndarray:
    """The one mapping from the CVC colour code to training ids, by exact colour match.

    Args:
        gt_rgb: (H, W, 3) uint8 RGB ground truth.
    Returns:
        (H, W) uint8 in [0, 11) or IGNORE_ID (void). Raises ValueError listing any colour outside COLOURS,
        with its pixel count.
    """
    if gt_rgb.ndim != 3 or gt_rgb.shape[2] != 3:
        raise ValueError(f"CVC ground truth must be (H, W, 3) RGB, got shape {gt_rgb.shape}")
    keys = _pack(gt_rgb)
    where = np.minimum(np.searchsorted(_SORTED_KEYS, keys), len(_SORTED_KEYS) - 1)
    label_check.check_known(gt_rgb, _SORTED_KEYS[where] == keys, _FOREIGN_COLOURS)
    return _SORTED_IDS[where]


def read_label(path) -> np.ndarray:
    """Read a colour ground truth into training ids (see decode_cvc_colours); errors name the file."""
    gt_rgb = read_rgb(path)
    with label_check.naming_file(path):
        return decode_cvc_colours(gt_rgb)


def list_train_val(root) -> tuple[list[Sample], list[Sample]]:
    """The official split: Training_00 for training, Validation_07 for validation."""
    return list_samples(root, "train"), list_samples(root, "val")
