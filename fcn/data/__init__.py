"""Dataset readers (one module per dataset) and the registry the trainer and command line use."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcn.data import camvid, cityscapes, cvc_kitti, kitti_road, kitti_semantics
from fcn.imageio import ImageFileError


def _same_name(image_name: str) -> str:
    # CamVid, CVC and KITTI semantics name an image's label file like the image.
    return Path(image_name).name


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
    # Labelled splits beyond train and val: {split: data_dir -> samples} (CamVid's official test split).
    more_splits: dict | None = None
    no_test: str = ""  # why a dataset has no labelled test split, for the error message
    # An evaluation folder in the dataset's own layout: (folder, split or None) -> labelled samples.
    list_folder: Callable | None = None
    folder_layout: str = ""  # what that folder holds, for messages and help
    # An image's file name -> the file name of its ground truth (in a folder of the dataset's label files).
    label_name: Callable = _same_name

    @property
    def splits(self) -> tuple[str, ...]:
        """The labelled splits `list_split` lists."""
        return ("train", "val", *(self.more_splits or {}))

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


def _info(name, reader, list_train_val, default_data_dir, road_class=None, **evaluation) -> DatasetInfo:
    # Every reader module exposes CLASS_NAMES, PALETTE and read_label under the same names.
    return DatasetInfo(name, tuple(reader.CLASS_NAMES), reader.PALETTE, reader.read_label, list_train_val,
                       default_data_dir, road_class, **evaluation)


def _split_root(reader, layout: str):
    """A folder holding official splits (CamVid, Cityscapes): --split picks one; None, the only one there."""

    def list_folder(folder, split):
        present = reader.splits_in(folder)
        if split is None and len(present) > 1:
            raise ValueError(f"{folder}: holds the splits {', '.join(present)}; pick one with --split")
        split = split or (present[0] if present else "val")
        if split not in present:
            raise FileNotFoundError(f"{folder}: no {split} split ({layout}); it holds {', '.join(present) or 'none'}")
        return reader.list_samples(folder, split)

    return list_folder


def _one_split(list_folder):
    """A folder of one split (CVC, KITTI): --split does not apply."""

    def list_one(folder, split):
        if split is not None:
            raise ValueError(f"--split {split}: {folder} holds one split; leave out --split")
        return list_folder(folder)

    return list_one


DATASETS = {
    "kitti_road": _info("kitti_road", kitti_road, _kitti_road_train_val, "data/kitti_road/data_road",
                        road_class=kitti_road.CLASS_NAMES.index("road"),
                        no_test="KITTI Road's testing/ frames have no ground truth",
                        list_folder=_one_split(kitti_road.list_folder), folder_layout="image_2/ + gt_image_2/",
                        label_name=kitti_road.gt_name),
    "camvid": _info("camvid", camvid, _official_train_val(camvid), "data/camvid",
                    more_splits={"test": lambda data_dir: camvid.list_samples(data_dir, "test")},
                    list_folder=_split_root(camvid, "<split>/ + <split>annot/"),
                    folder_layout="<split>/ + <split>annot/ (SegNet layout)"),
    "cvc_kitti": _info("cvc_kitti", cvc_kitti, _official_train_val(cvc_kitti), "data/kitti_semantic_cvc",
                       no_test="the CVC set has Training_00 and Validation_07 only",
                       list_folder=_one_split(cvc_kitti.list_folder), folder_layout="RGB/ + GT/"),
    "kitti_semantics": _info("kitti_semantics", kitti_semantics, _kitti_semantics_train_val,
                             "data/kitti_semantics/data_semantics",
                             no_test="the benchmark's testing/ frames have no labels",
                             list_folder=_one_split(kitti_semantics.list_folder),
                             folder_layout="image_2/ + semantic/"),
    "cityscapes": _info("cityscapes", cityscapes, _official_train_val(cityscapes), "data/cityscapes",
                        no_test="Cityscapes' test labels are not public",
                        list_folder=_split_root(cityscapes, "leftImg8bit/<split>/ + gtFine/<split>/"),
                        folder_layout="leftImg8bit/<split>/ + gtFine/<split>/", label_name=cityscapes.label_name),
}


def get_dataset(name: str) -> DatasetInfo:
    """Look up a dataset by name (see DATASETS)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name]


def list_split(info: DatasetInfo, data_dir, split: str, val_fraction: float = 0.2, seed: int = 0) -> list:
    """The labelled samples of one split of a dataset; a ValueError names the splits it has otherwise.

    train and val are those training uses (list_train_val: official, or drawn with val_fraction and seed).
    """
    if split not in info.splits:
        why = f" ({info.no_test})" if split == "test" and info.no_test else ""
        raise ValueError(f"{info.name} has no labelled {split!r} split; it has {', '.join(info.splits)}{why}")
    if split in ("train", "val"):
        train, val = info.list_train_val(data_dir, val_fraction, seed)
        return train if split == "train" else val
    return info.more_splits[split](data_dir)


def list_eval_folder(info: DatasetInfo, folder, split: str | None = None) -> list:
    """Every labelled frame of a folder in the dataset's own layout (info.folder_layout), e.g. a held-out copy.

    split picks one split of a folder that holds several (CamVid, Cityscapes); None: the only one there.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: evaluation folder not found ({info.name}: {info.folder_layout})")
    return info.list_folder(folder, split)


def ground_truth_of(info: DatasetInfo, image, gt_dir) -> Path:
    """The ground-truth file of an image in gt_dir, a folder of the dataset's label files (e.g. gt_image_2/).

    Raises ValueError for an image name the dataset does not use, ImageFileError naming the file for a
    missing ground truth.
    """
    label = Path(gt_dir) / info.label_name(Path(image).name)
    if not label.is_file():
        raise ImageFileError(f"{label}: ground truth missing for image {image}")
    return label
