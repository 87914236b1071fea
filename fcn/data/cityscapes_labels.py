"""The Cityscapes label table (id, name, trainId, category, colour), shared by Cityscapes and KITTI semantics.

Label maps on disk hold label *ids* 0..33; networks train on the 19 *train ids* 0..18 (255 = ignore), and
official result files hold label ids again. The table is the one of cityscapesscripts' `helpers/labels.py`
(license plate, id -1, only occurs in polygon files and is left out).

Categories: the official category-level evaluation scores 7 categories (void excluded). Pixels whose
class is ignored (train id 255) stay ignored at category level too, as in the official evaluation.
"""

from typing import NamedTuple

import numpy as np

from fcn.data import label_check

IGNORE_ID = 255


class Label(NamedTuple):
    id: int
    name: str
    train_id: int
    category: str
    colour: tuple[int, int, int]


LABELS = (
    Label(0, "unlabeled", 255, "void", (0, 0, 0)),
    Label(1, "ego vehicle", 255, "void", (0, 0, 0)),
    Label(2, "rectification border", 255, "void", (0, 0, 0)),
    Label(3, "out of roi", 255, "void", (0, 0, 0)),
    Label(4, "static", 255, "void", (0, 0, 0)),
    Label(5, "dynamic", 255, "void", (111, 74, 0)),
    Label(6, "ground", 255, "void", (81, 0, 81)),
    Label(7, "road", 0, "flat", (128, 64, 128)),
    Label(8, "sidewalk", 1, "flat", (244, 35, 232)),
    Label(9, "parking", 255, "flat", (250, 170, 160)),
    Label(10, "rail track", 255, "flat", (230, 150, 140)),
    Label(11, "building", 2, "construction", (70, 70, 70)),
    Label(12, "wall", 3, "construction", (102, 102, 156)),
    Label(13, "fence", 4, "construction", (190, 153, 153)),
    Label(14, "guard rail", 255, "construction", (180, 165, 180)),
    Label(15, "bridge", 255, "construction", (150, 100, 100)),
    Label(16, "tunnel", 255, "construction", (150, 120, 90)),
    Label(17, "pole", 5, "object", (153, 153, 153)),
    Label(18, "polegroup", 255, "object", (153, 153, 153)),
    Label(19, "traffic light", 6, "object", (250, 170, 30)),
    Label(20, "traffic sign", 7, "object", (220, 220, 0)),
    Label(21, "vegetation", 8, "nature", (107, 142, 35)),
    Label(22, "terrain", 9, "nature", (152, 251, 152)),
    Label(23, "sky", 10, "sky", (70, 130, 180)),
    Label(24, "person", 11, "human", (220, 20, 60)),
    Label(25, "rider", 12, "human", (255, 0, 0)),
    Label(26, "car", 13, "vehicle", (0, 0, 142)),
    Label(27, "truck", 14, "vehicle", (0, 0, 70)),
    Label(28, "bus", 15, "vehicle", (0, 60, 100)),
    Label(29, "caravan", 255, "vehicle", (0, 0, 90)),
    Label(30, "trailer", 255, "vehicle", (0, 0, 110)),
    Label(31, "train", 16, "vehicle", (0, 80, 100)),
    Label(32, "motorcycle", 17, "vehicle", (0, 0, 230)),
    Label(33, "bicycle", 18, "vehicle", (119, 11, 32)),
)

_TRAINED = sorted(
    (label for label in LABELS if label.train_id != IGNORE_ID), key=lambda label: label.train_id
)
CLASS_NAMES = tuple(label.name for label in _TRAINED)
NUM_CLASSES = len(CLASS_NAMES)  # 19
PALETTE = np.array([label.colour for label in _TRAINED], dtype=np.uint8)  # (19, 3) RGB per train id

# Category index = cityscapesscripts' catId - 1 (void, catId 0, is not evaluated).
CATEGORIES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
CATEGORY_PALETTE = np.array(
    [
        [128, 64, 128],
        [70, 70, 70],
        [153, 153, 153],
        [107, 142, 35],
        [70, 130, 180],
        [220, 20, 60],
        [0, 0, 142],
    ],
    dtype=np.uint8,
)

# Sentinel for ids absent from the table: distinct from every train id and from IGNORE_ID.
_UNKNOWN = -1
_ID_TO_TRAIN = np.full(256, _UNKNOWN, dtype=np.int16)
for _label in LABELS:
    _ID_TO_TRAIN[_label.id] = _label.train_id
# Train id -> label id; IGNORE_ID -> 0 (unlabeled), which the official evaluation skips.
_TRAIN_TO_ID = np.full(256, _UNKNOWN, dtype=np.int16)
_TRAIN_TO_ID[IGNORE_ID] = 0
for _label in _TRAINED:
    _TRAIN_TO_ID[_label.train_id] = _label.id
_TRAIN_TO_CATEGORY = np.full(256, _UNKNOWN, dtype=np.int16)
_TRAIN_TO_CATEGORY[IGNORE_ID] = IGNORE_ID
for _label in _TRAINED:
    _TRAIN_TO_CATEGORY[_label.train_id] = CATEGORIES.index(_label.category)


def _apply(table: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind not in "ui":
        raise ValueError(f"{what} must be integers, got dtype {values.dtype}")
    # Values beyond the table (e.g. a 16-bit instance map read as ids) are foreign too, listed like the rest.
    in_range = (values >= 0) & (values < len(table))
    mapped = table[np.where(in_range, values, 0)]
    known = in_range & (mapped != _UNKNOWN)
    label_check.check_known(values, known, f"{what} outside the Cityscapes label table")
    return mapped.astype(np.uint8)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """The one mapping from Cityscapes label ids (as stored in `*_labelIds.png`) to training ids.

    Args:
        label_ids: (H, W) integer label ids in 0..33.
    Returns:
        (H, W) uint8 train ids in [0, 19) or IGNORE_ID. Raises ValueError for ids not in the table.
    """
    return _apply(_ID_TO_TRAIN, label_ids, "label ids")


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Train ids (predictions) -> label ids, the encoding of official result files; 255 -> 0 (unlabeled)."""
    return _apply(_TRAIN_TO_ID, train_ids, "train ids")


def train_ids_to_categories(train_ids: np.ndarray) -> np.ndarray:
    """Train ids -> category index into CATEGORIES, (H, W) uint8 in [0, 7) or IGNORE_ID."""
    return _apply(_TRAIN_TO_CATEGORY, train_ids, "train ids")
