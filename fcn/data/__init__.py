"""Dataset readers (one module per dataset) and the registry the trainer and command line use."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fcn.data import kitti_road


@dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs from a dataset reader."""

    name: str
    class_names: tuple[str, ...]
    palette: np.ndarray  # (C, 3) uint8 RGB per training id
    read_label: Callable  # path -> (H, W) uint8 training ids, 255 = ignore
    list_train_val: Callable  # (data_dir, val_fraction, seed) -> (train samples, val samples)
    default_data_dir: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _kitti_road_train_val(data_dir, val_fraction, seed):
    return kitti_road.split_train_val(kitti_road.list_samples(data_dir, "training"), val_fraction, seed)


DATASETS = {
    "kitti_road": DatasetInfo(
        name="kitti_road",
        class_names=kitti_road.CLASS_NAMES,
        palette=kitti_road.PALETTE,
        read_label=kitti_road.read_label,
        list_train_val=_kitti_road_train_val,
        default_data_dir="data/kitti_road/data_road",
    ),
}


def get_dataset(name: str) -> DatasetInfo:
    """Look up a dataset by name (see DATASETS)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name]
