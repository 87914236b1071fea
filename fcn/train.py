"""Training: a thin layer over `model.fit` that gives every run its own folder and survives crashes.

See fcn/runs.py for the files of a run. Rerunning the same command resumes an interrupted run at the
epoch after its last finished one, with the data order and augmentation that epoch would have had; a
finished run says so (pass a larger --epochs to continue it).
"""

import contextlib
import dataclasses
import gc
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from fcn import callbacks, distribute, modelfile, optim
from fcn import precision as precisions
from fcn.data import get_dataset, pipeline
from fcn.data.class_weights import WEIGHTINGS, cached_median_frequency_weights
from fcn.data.pipeline import Augmentation, make_dataset
from fcn.losses import MaskedSparseCrossEntropy, PixelAccuracy
from fcn.model import ENCODERS, build_fcn8
from fcn.runs import RunFolder, RunState


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the full recipe; see fast_config for CPU tests."""

    dataset: str = "kitti_road"
    data_dir: str = "data/kitti_road/data_road"
    run_dir: str = "runs/kitti_road"
    encoder: str = "vgg16"
    weights: str | None = "imagenet"
    # Start from another run's model (a .keras file, e.g. one pre-trained on synthetic frames): every layer
    # whose weights fit is copied after the encoder's `weights`; the rest (e.g. score layers for another
    # number of classes) keep their initialisation. Used when the run starts, not when it resumes.
    init_from: str | None = None
    # Height x width the images are resized to; 160x576 keeps KITTI's ~1:3.3 aspect at 0.43 scale.
    image_size: tuple[int, int] = (160, 576)
    # 8 keeps a CPU's cores busier than 4: VGG16's training step ran 1.29x faster per image, at 86 % of the
    # machine's convolution peak (benchmarks/README.md, settings); the paper's SGD used minibatches of 20.
    batch_size: int = 8
    epochs: int = 30
    # Adam at 1e-4 for a pretrained encoder; from scratch (weights=None) 1e-3 converges faster.
    learning_rate: float = 1e-4
    # Optimizer and schedule (fcn/optim.py): the defaults are the plain recipe, Adam at a constant rate.
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    # Random scale of the training size (e.g. (0.5, 2.0)) then a crop of it, instead of the plain crop.
    scale_range: tuple[float, float] | None = None
    # Progressive resizing (share, scale): the first `share` of the epochs train on images `scale` times the
    # image_size on each side, the rest at image_size (the batch, and so the steps per epoch, stay the same).
    # With a budget the share is of the epochs the budget's plan holds (fcn/callbacks.py CommitEpoch).
    progressive_resizing: tuple[float, float] | None = None
    # Keep decoded training images in memory after the first epoch: "auto" where they fit (2 GB at most).
    cache_decoded: str = "auto"
    # Median-frequency class balancing through per-pixel sample weights (for many-class datasets),
    # optionally softened (square root) and capped.
    class_balancing: bool = False
    class_weighting: str = "median_frequency"
    max_class_weight: float | None = None
    # Rare-class remedies in the loss: a focal term, and online hard-example mining (keep the hardest pixels).
    focal_gamma: float = 0.0
    ohem_fraction: float = 1.0
    ohem_min_kept: int = 0
    # Label smoothing eps: the loss aims at 1 - eps on the true class and eps / C on each (0: plain targets).
    label_smoothing: float = 0.0
    # Exponential moving average of the weights (Polyak averaging), updated after each step with this momentum
    # (e.g. 0.99: about the last 100 steps): validation, best.keras and final.keras use the average; None: off.
    ema_momentum: float | None = None
    max_train_images: int | None = None
    max_val_images: int | None = None
    # Frame file names (e.g. "um_000000.png") kept out of training and validation, e.g. a held-out test copy.
    exclude_frames: list[str] = field(default_factory=list)
    # "float32", "bfloat16" (Keras' mixed_bfloat16: CPUs with native bfloat16), "float16" (mixed_float16: GPUs)
    # or "auto", which is resolved here to one of those (fcn/precision.py), so the run records what it used.
    precision: str = "float32"
    jit_compile: bool = False
    # Wall-clock budget of the whole run in minutes (None: no budget): training stops cleanly at the end of
    # the last epoch that fits, with every file complete (see fcn/callbacks.py CommitEpoch).
    minutes: float | None = None
    # Where to train (fcn/distribute.py): "default" (one device), "mirrored" (every GPU of this machine) or
    # "multi_worker" (several machines, TF_CONFIG; Keras' JAX backend). batch_size is the global batch.
    strategy: str = "default"
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        # Every setting is checked here, before any work starts, with a message naming it.
        self.image_size = tuple(int(v) for v in self.image_size)
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose from {sorted(ENCODERS)}")
        self.precision = precisions.choose(self.precision, self.encoder)
        if self.scale_range is not None:
            self.scale_range = tuple(float(v) for v in self.scale_range)
            Augmentation(scale_range=self.scale_range)  # checks the range
        if self.progressive_resizing is not None:
            share, scale = self.progressive_resizing = tuple(float(v) for v in self.progressive_resizing)
            if not (0 < share < 1 and 0 < scale < 1):
                raise ValueError(f"progressive_resizing must be (share of the epochs, scale), each in (0, 1), got "
                                 f"{self.progressive_resizing}")
            if self.minutes is not None and self.lr_schedule == "constant":
                raise ValueError("progressive_resizing with a budget (minutes) needs a cosine or poly lr_schedule: "
                                 "its plan decides how many epochs train small")
        if self.cache_decoded not in ("auto", "on", "off"):
            raise ValueError(f"cache_decoded must be 'auto', 'on' or 'off', got {self.cache_decoded!r}")
        if self.class_weighting not in WEIGHTINGS:
            raise ValueError(f"unknown class_weighting {self.class_weighting!r}; choose from {WEIGHTINGS}")
        self.make_loss()  # checks focal_gamma, the OHEM settings and label_smoothing
        if len(self.image_size) != 2 or min(self.image_size) < 32:
            raise ValueError(f"image_size must be (height, width), each at least 32, got {self.image_size}")
        for name in ("batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_train_images", "max_val_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (or None for all), got {getattr(self, name)}")
        if not (math.isfinite(self.learning_rate) and 0 < self.learning_rate < 1):
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"minutes must be a positive number of minutes, got {self.minutes}")
        if self.strategy not in distribute.STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose from {distribute.STRATEGIES}")
        if self.ema_momentum is not None and not 0 < self.ema_momentum < 1:
            raise ValueError(f"ema_momentum must be in (0, 1) (or None: off), got {self.ema_momentum}")
        if self.ema_momentum is not None and self.strategy == "multi_worker":
            # Swapping the averages in reads every variable whole, which a worker of several does not hold.
            raise ValueError("ema_momentum is not supported with strategy 'multi_worker'")
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {optim.OPTIMIZERS}")
        if self.lr_schedule not in optim.SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose from {optim.SCHEDULES}")
        if not (0 <= self.weight_decay < 1) or (self.weight_decay and self.optimizer == "adam"):
            raise ValueError(f"weight_decay must be in [0, 1) and needs optimizer adamw or sgd, got "
                             f"{self.weight_decay} with {self.optimizer}")
        if not 0 <= self.warmup_epochs < self.epochs or (self.warmup_epochs and self.lr_schedule == "constant"):
            raise ValueError(f"warmup_epochs must be in [0, epochs) and needs a cosine or poly lr_schedule, got "
                             f"{self.warmup_epochs} with {self.lr_schedule}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        get_dataset(self.dataset)  # unknown names raise, listing the known ones
        if self.weights is not None and self.encoder == "vgg16_mini":
            raise ValueError("pretrained weights do not exist for encoder 'vgg16_mini'; use weights=None")

    @property
    def small_size(self) -> tuple[int, int] | None:
        """The image size of the first epochs with progressive resizing (at least 32 a side), else None."""
        if self.progressive_resizing is None:
            return None
        return tuple(max(32, round(self.progressive_resizing[1] * side)) for side in self.image_size)

    def make_loss(self) -> MaskedSparseCrossEntropy:
        """The masked cross-entropy with this run's rare-class settings."""
        return MaskedSparseCrossEntropy(focal_gamma=self.focal_gamma, ohem_fraction=self.ohem_fraction,
                                        ohem_min_kept=self.ohem_min_kept, label_smoothing=self.label_smoothing)

    def check_paths(self) -> None:
        """The files and folders the run reads and writes are usable (checked when training starts)."""
        if self.weights not in (None, "imagenet") and not Path(self.weights).is_file():
            raise FileNotFoundError(f"{self.weights}: {self.encoder} weights file not found")
        if not Path(self.data_dir).is_dir():
            raise FileNotFoundError(f"{self.data_dir}: dataset folder not found")
        run_dir = Path(self.run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"{run_dir}: the run folder's path is a file")
        parent = next(p for p in [run_dir, *run_dir.parents] if p.exists())
        if not os.access(parent, os.W_OK):
            raise PermissionError(f"{parent}: not writable, so the run folder {run_dir} cannot be written")

    @classmethod
    def load(cls, path) -> "TrainConfig":
        return cls(**upgrade_saved_config(json.loads(Path(path).read_text())))


def upgrade_saved_config(saved: dict) -> dict:
    """A config.json of an earlier fcn in today's terms: `mixed_precision: true` was float16, and a setting
    added since (label_smoothing, say) has its default, which is what the earlier fcn did."""
    saved = dict(saved)
    if "mixed_precision" in saved:
        saved.setdefault("precision", "float16" if saved.pop("mixed_precision") else "float32")
    for setting in dataclasses.fields(TrainConfig):
        if setting.name not in saved:
            default = setting.default_factory() if setting.default_factory is not dataclasses.MISSING else setting.default
            saved[setting.name] = json.loads(json.dumps(default))  # as config.json holds it (tuples as lists)
    return saved


def fast_config(**overrides) -> TrainConfig:
    """A run small enough for CPU tests and the demo: light encoder, tiny images, few images, no download."""
    settings = dict(encoder="vgg16_mini", weights=None, image_size=(64, 192), batch_size=2, epochs=2,
                    learning_rate=1e-3, max_train_images=8, max_val_images=4)
    return TrainConfig(**{**settings, **overrides})


def list_split(config: TrainConfig) -> tuple[list, list]:
    """(train, val) samples of a config: the dataset's split without the excluded frames, each capped by
    max_train_images / max_val_images. A ValueError naming the data folder if either is empty."""
    info = get_dataset(config.dataset)
    train, val = info.list_train_val(config.data_dir, config.val_fraction, config.seed)
    excluded = set(config.exclude_frames)
    train = [s for s in train if s.image.name not in excluded]
    val = [s for s in val if s.image.name not in excluded]
    train, val = train[: config.max_train_images], val[: config.max_val_images]
    if not train or not val:
        raise ValueError(f"{config.data_dir}: need training and validation images, got {len(train)} and {len(val)}")
    return train, val


def build_datasets(config: TrainConfig, first_epoch: int = 0, train_size: tuple[int, int] | None = None,
                   samples: tuple[list, list] | None = None):
    """(train_ds, val_ds, train_samples, val_samples) for a config.

    train_ds holds the batches of epochs first_epoch .. config.epochs - 1, one after the other, at train_size
    (default: config.image_size, at which val_ds always is). `samples`: the config's (train, val) samples where
    list_split has listed them already.
    """
    info = get_dataset(config.dataset)
    train, val = samples or list_split(config)
    augmentation = Augmentation(scale_range=config.scale_range) if config.augment else None
    train_images = [s.image for s in train]
    cache = config.cache_decoded == "on" or (config.cache_decoded == "auto" and pipeline.fits_in_memory(train_images))
    weights = None
    if config.class_balancing:
        # Cached beside the runs (never inside the dataset folder), keyed by the list of training files.
        weights = cached_median_frequency_weights([s.label for s in train], info.read_label, info.num_classes,
                                                  Path(config.run_dir).parent / ".cache",
                                                  weighting=config.class_weighting, max_weight=config.max_class_weight)
    train_ds = make_dataset(train_images, [s.label for s in train], info.read_label,
                            train_size or config.image_size, config.batch_size, augmentation, shuffle=True, seed=config.seed,
                            class_weights=weights, epochs=config.epochs, first_epoch=first_epoch, cache_decoded=cache)
    val_ds = make_dataset([s.image for s in val], [s.label for s in val], info.read_label,
                          config.image_size, config.batch_size, None)
    return train_ds, val_ds, train, val


def compile_model(model: keras.Model, config: TrainConfig, num_classes: int, steps_per_epoch: int = 1,
                  schedule_epochs: int | None = None) -> keras.Model:
    """Optimizer and schedule of the config + masked cross-entropy; pixel accuracy and mean IoU skip ignore.

    The schedule spans config.epochs, or `schedule_epochs` where a budget has sized it (RunState)."""
    total_steps = (schedule_epochs or config.epochs) * steps_per_epoch
    rate = optim.learning_rate(config.learning_rate, config.lr_schedule, total_steps=total_steps,
                               warmup_steps=round(config.warmup_epochs * steps_per_epoch))
    model.compile(
        optimizer=optim.make_optimizer(config.optimizer, rate, config.weight_decay, config.ema_momentum),
        loss=config.make_loss(),
        metrics=[PixelAccuracy(), keras.metrics.MeanIoU(num_classes, ignore_class=255, sparse_y_pred=False,
                                                        name="mean_iou")],
        # On JAX an uncompiled step runs op by op (and, across workers, collective by collective).
        jit_compile=config.jit_compile or keras.backend.backend() == "jax",
    )
    # The optimizer's variables now, not inside the first traced step: TensorFlow traces a step that creates
    # variables a second time (2.6 s of a tiny run's 9, more for a larger model).
    model.optimizer.build(model.trainable_variables)
    return model


def _check_same_run(run: RunFolder, config: TrainConfig) -> None:
    # Resuming with other settings would mix two runs in one history; only the epochs and minutes may grow,
    # and the strategy may change (a run begun on one machine can go on on several, or the other way round).
    saved = upgrade_saved_config(json.loads(run.config.read_text()))
    new = json.loads(json.dumps(dataclasses.asdict(config)))
    changed = sorted(key for key in new if key not in ("epochs", "minutes", "strategy") and saved.get(key) != new[key])
    if changed:
        details = ", ".join(f"{key} {saved.get(key)!r} -> {new[key]!r}" for key in changed)
        raise ValueError(f"{run.path} holds a run with other settings ({details}); rerun with the same "
                         "options to resume it, or choose a new --run-dir")


def train(config: TrainConfig, verbose: int | str = 2, extra_callbacks=()):
    """Train FCN-8 as configured. Returns (model, history: {metric: per-epoch list} over the whole run).

    Rerunning with the same run_dir resumes an interrupted run; a finished run is returned as it is. With
    several workers (strategy multi_worker) every worker runs this with the same config and reads the run
    folder; only the chief writes it.
    """
    config.check_paths()
    placement = distribute.make_placement(config.strategy)
    run = RunFolder(config.run_dir)
    # One process writes a run folder at a time (fcn/runs.py): here the chief; the other workers only read it.
    # A folder that the lock created, and that a failed first epoch leaves empty, goes with the lock.
    with run.lock() if placement.is_chief else contextlib.nullcontext():
        return _train(config, placement, run, verbose, extra_callbacks)


def _train(config: TrainConfig, placement: distribute.Placement, run: RunFolder, verbose, extra_callbacks):
    state = run.read_state()
    if state is not None:
        _check_same_run(run, config)
        if placement.is_chief:
            run.recover(state)
        if _is_finished(state, config):
            if placement.is_chief:
                run.finish(state)
            print(f"{run.path}: finished, {state.epochs_done} epochs in {state.seconds / 60:.1f} minutes "
                  f"({_how_to_continue(state)})")
            return modelfile.load_model(run.checkpoint(state.epochs_done)), state.history_columns()
        print(f"{run.path}: resuming after epoch {state.epochs_done} of {state.schedule_epochs or config.epochs}")
    elif config.init_from is not None and not Path(config.init_from).is_file():  # needed to start, not to resume
        raise FileNotFoundError(f"{config.init_from}: model to start from (init_from) not found")
    if state is None:
        state = RunState(monitor=callbacks.score_name(config.dataset), mode="max")
        if config.small_size is not None and not (config.minutes and config.lr_schedule != "constant"):
            state.small_epochs = int(config.progressive_resizing[0] * config.epochs + 0.5)  # no plan to wait for
    keras.utils.set_random_seed(config.seed)
    info = get_dataset(config.dataset)
    train_samples, val_samples = list_split(config)
    steps = placement.steps_per_epoch(len(train_samples), len(val_samples), config.batch_size)
    created = not run.path.exists()
    if placement.is_chief:
        run.path.mkdir(parents=True, exist_ok=True)
    try:
        with precisions.dtype_policy(config.precision), placement.scope():
            model = _resume_or_build(run, state, config, info.num_classes, steps)
            small = config.small_size
            commit = callbacks.CommitEpoch(run, state, dataclasses.asdict(config), _model_info(config),
                                           config.minutes, placement, optim.decay_schedule(model.optimizer), steps,
                                           config.epochs, small_share=config.progressive_resizing and config.progressive_resizing[0],
                                           full_to_small_pixels=math.prod(config.image_size) / math.prod(small or config.image_size))
            averaged = [callbacks.AveragedWeights()] if config.ema_momentum is not None else []
            fit_callbacks = [
                keras.callbacks.TerminateOnNaN(),
                *averaged,
                callbacks.ValidationScore(val_samples, info, config.image_size),
                commit,
                *([keras.callbacks.TensorBoard(str(run.path / "logs"), write_graph=False, profile_batch=0)]
                  if placement.is_chief else []),
                *extra_callbacks,
                *[callback.swap_back for callback in averaged],
            ]
            # One model.fit per image size: with progressive resizing CommitEpoch stops the first after the
            # last small epoch, and the second goes on at the full size.
            while True:
                if averaged and commit.state.epochs_done > state.epochs_done:
                    # The last fit ended with the average in the model (AveragedWeights): train on from the
                    # training weights its last checkpoint holds.
                    _load_training_weights(model, run.checkpoint(commit.state.epochs_done), config)
                size = training_size(config, commit.state)
                if small is not None:
                    print(f"training at {size[0]}x{size[1]} from epoch {commit.state.epochs_done + 1}")
                train_ds, val_ds, _, _ = build_datasets(config, commit.state.epochs_done, size,
                                                        (train_samples, val_samples))
                train_ds = placement.shard_batches(train_ds, config.batch_size,
                                                   steps * (config.epochs - commit.state.epochs_done))
                _fit(model, train_ds, val_ds, commit.state, config, fit_callbacks, verbose, steps)
                if not commit.state.small_epochs_just_ended() or _is_finished(commit.state, config):
                    break  # the end: of the epochs, of a budget, or another stop
    except BaseException:
        if placement.is_chief and run.read_state() is None:
            run.discard(created)
        raise
    if placement.is_chief:
        run.finish(commit.state)
    return model, commit.state.history_columns()


def training_size(config: TrainConfig, state: RunState) -> tuple[int, int]:
    """The image size of the next epoch: the small one of progressive resizing until its epochs are done."""
    if config.small_size is None or (state.small_epochs is not None and state.epochs_done >= state.small_epochs):
        return config.image_size
    return config.small_size


def _is_finished(state: RunState, config: TrainConfig) -> bool:
    # Done when every epoch is, or when another epoch as long as the last one would overrun the budget.
    if state.epochs_done >= min(config.epochs, state.schedule_epochs or config.epochs):
        return True
    last_epoch = state.history[-1].get("seconds", 0.0) if state.history else 0.0
    return config.minutes is not None and state.seconds + last_epoch > 60 * config.minutes


def _how_to_continue(state: RunState) -> str:
    if state.schedule_epochs is not None and state.epochs_done >= state.schedule_epochs:
        return "its learning-rate schedule, sized by the budget, has ended; start a new run to train longer"
    return f"pass more epochs{' or minutes' if state.stopped_by_budget else ''} to continue it"


def _model_info(config: TrainConfig) -> dict:
    info = get_dataset(config.dataset)
    return modelfile.model_info(config.dataset, info.class_names, config.image_size, config.encoder,
                                road_class=info.road_class, precision=config.precision)


def _resume_or_build(run: RunFolder, state: RunState, config: TrainConfig, num_classes: int,
                     steps_per_epoch: int) -> keras.Model:
    model = build_fcn8(num_classes, encoder=config.encoder, weights=None if state.epochs_done else config.weights)
    compile_model(model, config, num_classes, steps_per_epoch, state.schedule_epochs)
    if state.epochs_done:
        _load_training_weights(model, run.checkpoint(state.epochs_done), config)
    elif config.init_from is not None:
        copied, kept = init_from_model(model, config.init_from, config.encoder)
        print(f"{config.init_from}: started from its weights ({copied} layers copied"
              + (f"; kept this run's initialisation for {', '.join(kept)})" if kept else ")"))
    return model


def _load_training_weights(model: keras.Model, checkpoint: Path, config: TrainConfig) -> None:
    """Weights and the optimizer's state (moments, step count, loss scale, averages) of a checkpoint, to train on.

    The compile settings are the config's own, which _check_same_run has found unchanged. With ema_momentum the
    checkpoint holds the averaged weights as the model's and the training weights in the optimizer
    (callbacks.AveragedWeights): they are swapped back.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(checkpoint)
    skipped = [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
    if skipped:  # Keras only warns; resuming without the optimizer's state would be a silent restart
        raise ValueError(f"{checkpoint}: does not fit this run's model ({skipped[0]})")
    if config.ema_momentum is not None:
        callbacks.swap_averaged_weights(model)


def init_from_model(model: keras.Model, path, encoder: str) -> tuple[int, list[str]]:
    """Copy the weights of the model in `path` into `model` layer by layer, where their shapes fit.

    Both are FCN-8s built by build_fcn8 with the same encoder, so their layers pair up in order (names can
    carry different numeric suffixes). Returns (layers copied, names of the layers left as they were).
    """
    info = modelfile.read_info(path) or {}
    if info.get("encoder", encoder) != encoder:
        raise ValueError(f"{path}: a {info['encoder']} model cannot start a {encoder} run (encoders differ)")
    source = modelfile.load_model(path)
    if len(source.layers) != len(model.layers):
        raise ValueError(f"{path}: {len(source.layers)} layers, this run's {encoder} FCN-8 has "
                         f"{len(model.layers)}; not a model of the same architecture")
    copied, kept = 0, []
    for target, layer in zip(model.layers, source.layers, strict=True):
        weights = layer.get_weights()
        if not weights and not target.weights:
            continue
        if [w.shape for w in weights] == [tuple(v.shape) for v in target.weights]:
            target.set_weights(weights)
            copied += 1
        else:
            kept.append(target.name)
    if not copied:
        raise ValueError(f"{path}: no layer's weights fit this run's model")
    return copied, kept


def _fit(model, train_ds, val_ds, state, config, fit_callbacks, verbose, steps) -> None:
    problem = None
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=state.epochs_done,
                  steps_per_epoch=steps, callbacks=fit_callbacks, verbose=verbose,
                  shuffle=False)  # the tf.data pipeline orders each epoch itself
    except tf.errors.OpError as error:
        problem = pipeline.input_error(error)
        if problem is None:
            raise
    if problem is not None:
        # Raised out here, so the failed iterator (held by the frames of the error above) is gone first.
        gc.collect()
        raise problem
