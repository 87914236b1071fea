"""Dataset readers (one module per dataset) and the registry the trainer and command line use."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fcn.data import camvid, cityscapes, cvc_kitti, kitti_road, kitti_semantics


@dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs from a dataset reader."""

    name: str
    class_names: tuple[str, ...]
    palette: np.ndarray  # (C, 3) uint8 RGB per training id
    read_label: Callable  # path -> (H, W) uint8 training ids, 255 = ignore
    list_train_val: Callable  # (data_dir, val_fraction, seed) -> (train samples, val samples)
    default_data_dir: str
    # The training id that means "road" where a dataset is road vs not-road (KITTI Road), else None.
    road_class: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _kitti_road_train_val(data_dir, val_fraction, seed):
    return kitti_road.split_train_val(kitti_road.list_samples(data_dir, "training"), val_fraction, seed)


def _kitti_semantics_train_val(data_dir, val_fraction, seed):
    samples = kitti_semantics.list_samples(data_dir, "training")
    return kitti_semantics.split_train_val(samples, val_fraction, seed)


def _official_train_val(reader):
    """CamVid, CVC and Cityscapes have official splits: val_fraction and seed do not apply."""

    def list_train_val(data_dir, val_fraction, seed):
        return reader.list_train_val(data_dir)

    return list_train_val


def _info(name, reader, list_train_val, default_data_dir, road_class=None) -> DatasetInfo:
    # Every reader module exposes CLASS_NAMES, PALETTE and read_label under the same names.
    return DatasetInfo(name, tuple(reader.CLASS_NAMES), reader.PALETTE, reader.read_label, list_train_val,
                       default_data_dir, road_class)


DATASETS = {
    "kitti_road": _info("kitti_road", kitti_road, _kitti_road_train_val, "data/kitti_road/data_road",
                        road_class=kitti_road.CLASS_NAMES.index("road")),
    "camvid": _info("camvid", camvid, _official_train_val(camvid), "data/camvid"),
    "cvc_kitti": _info("cvc_kitti", cvc_kitti, _official_train_val(cvc_kitti), "data/kitti_semantic_cvc"),
    "kitti_semantics": _info("kitti_semantics", kitti_semantics, _kitti_semantics_train_val,
                             "data/kitti_semantics/data_semantics"),
    "cityscapes": _info("cityscapes", cityscapes, _official_train_val(cityscapes), "data/cityscapes"),
}


def get_dataset(name: str) -> DatasetInfo:
    """Look up a dataset by name (see DATASETS)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name]
