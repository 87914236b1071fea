"""Training: a thin layer over `model.fit` that gives every run its own folder.

    runs/<name>/config.json    the TrainConfig of the run
    runs/<name>/history.csv    one row per epoch (appended when a run resumes)
    runs/<name>/best.keras     the model with the lowest validation loss so far
    runs/<name>/final.keras    the model after the last epoch
    runs/<name>/backup/        BackupAndRestore state: rerunning the same command resumes after a crash
    runs/<name>/logs/          TensorBoard
"""

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import keras

from fcn.data import get_dataset
from fcn.data.class_weights import cached_median_frequency_weights
from fcn.data.pipeline import Augmentation, make_dataset
from fcn.imageio import write_bytes_atomic
from fcn.losses import MaskedSparseCrossEntropy, PixelAccuracy
from fcn.model import build_fcn8


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the full recipe; see fast_config for CPU tests."""

    dataset: str = "kitti_road"
    data_dir: str = "data/kitti_road/data_road"
    run_dir: str = "runs/kitti_road"
    encoder: str = "vgg16"
    weights: str | None = "imagenet"
    # Height x width the images are resized to; 160x576 keeps KITTI's ~1:3.3 aspect at 0.43 scale.
    image_size: tuple[int, int] = (160, 576)
    batch_size: int = 4
    epochs: int = 30
    # Adam at 1e-4 for a pretrained encoder; from scratch (weights=None) 1e-3 converges faster.
    learning_rate: float = 1e-4
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    # Median-frequency class balancing through per-pixel sample weights (for many-class datasets).
    class_balancing: bool = False
    max_train_images: int | None = None
    max_val_images: int | None = None
    # Frame file names (e.g. "um_000000.png") kept out of training and validation, e.g. a held-out test copy.
    exclude_frames: list[str] = field(default_factory=list)
    mixed_precision: bool = False
    jit_compile: bool = False
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.image_size = tuple(int(v) for v in self.image_size)
        if len(self.image_size) != 2 or min(self.image_size) < 32:
            raise ValueError(f"image_size must be (height, width), each at least 32, got {self.image_size}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be positive")

    def save(self, path) -> None:
        write_bytes_atomic(Path(path), json.dumps(dataclasses.asdict(self), indent=2).encode())

    @classmethod
    def load(cls, path) -> "TrainConfig":
        return cls(**json.loads(Path(path).read_text()))


def fast_config(**overrides) -> TrainConfig:
    """A run small enough for CPU tests and the demo: light encoder, tiny images, few images, no download."""
    settings = dict(encoder="vgg16_mini", weights=None, image_size=(64, 192), batch_size=2, epochs=2,
                    learning_rate=1e-3, max_train_images=8, max_val_images=4)
    return TrainConfig(**{**settings, **overrides})


@contextlib.contextmanager
def _dtype_policy(mixed_precision: bool):
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_datasets(config: TrainConfig):
    """(train_ds, val_ds, train_samples, val_samples) for a config."""
    info = get_dataset(config.dataset)
    train, val = info.list_train_val(config.data_dir, config.val_fraction, config.seed)
    excluded = set(config.exclude_frames)
    train = [s for s in train if s.image.name not in excluded]
    val = [s for s in val if s.image.name not in excluded]
    train, val = train[: config.max_train_images], val[: config.max_val_images]
    if not train or not val:
        raise ValueError(f"{config.data_dir}: need training and validation images, got {len(train)} and {len(val)}")
    augmentation = Augmentation() if config.augment else None
    weights = None
    if config.class_balancing:
        # Cached beside the runs (never inside the dataset folder), keyed by the list of training files.
        weights = cached_median_frequency_weights([s.label for s in train], info.read_label, info.num_classes,
                                                  Path(config.run_dir).parent / ".cache")
    train_ds = make_dataset([s.image for s in train], [s.label for s in train], info.read_label,
                            config.image_size, config.batch_size, augmentation, shuffle=True, seed=config.seed,
                            class_weights=weights)
    val_ds = make_dataset([s.image for s in val], [s.label for s in val], info.read_label,
                          config.image_size, config.batch_size, None)
    return train_ds, val_ds, train, val


def compile_model(model: keras.Model, config: TrainConfig, num_classes: int) -> keras.Model:
    """Adam + masked cross-entropy; pixel accuracy and mean IoU skip the ignore id."""
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=MaskedSparseCrossEntropy(),
        metrics=[PixelAccuracy(), keras.metrics.MeanIoU(num_classes, ignore_class=255, sparse_y_pred=False,
                                                        name="mean_iou")],
        jit_compile=config.jit_compile,
    )
    return model


def make_callbacks(run_dir: Path) -> list:
    """Best-model checkpoint, CSV history, TensorBoard, resume after interruption, stop on NaN."""
    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
    ]


def train(config: TrainConfig, verbose: int | str = "auto", extra_callbacks=()):
    """Train FCN-8 as configured. Returns (model, history dict of per-epoch lists).

    Rerunning an interrupted run with the same run_dir resumes from its last finished epoch.
    """
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.json")
    keras.utils.set_random_seed(config.seed)
    info = get_dataset(config.dataset)
    train_ds, val_ds, _, _ = build_datasets(config)
    with _dtype_policy(config.mixed_precision):
        model = build_fcn8(info.num_classes, encoder=config.encoder, weights=config.weights)
        compile_model(model, config, info.num_classes)
        history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                            callbacks=make_callbacks(run_dir) + list(extra_callbacks), verbose=verbose,
                            shuffle=False)  # the tf.data pipeline shuffles itself
    save_model(model, run_dir / "final.keras")
    return model, history.history


def save_model(model: keras.Model, path) -> Path:
    """Save a .keras file via a temporary name, so an interrupted save never replaces a good file."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path
