"""Optimizers and learning-rate schedules of the training recipes.

The paper trains FCN-VGG16 with SGD, momentum 0.9 and weight decay at a fixed rate; light encoders from
scratch are usually trained with AdamW and a warm-up followed by a cosine or polynomial ("poly", power 0.9,
as in DeepLab and MMSegmentation) decay. "adam" with a "constant" rate is the default: the recipe so far.
"""

import math

import keras
from keras import ops

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "poly")
# A schedule sized by a time budget is fixed after this many epochs: the first one also pays for tracing the
# model and filling the decoded-image cache, so the second is the first to run at the steady speed.
PLAN_AFTER_EPOCHS = 2
# One epoch is a noisy measure (on a shared 2-core machine epochs of one run varied from 25 to 45 s; a second
# epoch of 33 s planned 108 epochs where later ones took 21 s), so the plan is made again as each of these shares
# of the budget is passed: from the median epoch since the first plan, and at the last share from the median of
# the last few epochs only, since epochs also drift within a run (KITTI Road, 2026-12-04: 28-30 s early, 33-40 s
# late) and a late slowdown stopped runs 2-4 epochs before their decay's end. Early shares keep the rate from
# jumping much: a new length moves the decay's remaining part, and moves it less the earlier it comes.
REPLAN_AT_BUDGET_SHARES = (0.2, 0.5, 0.8)
LAST_REPLAN_RECENT_EPOCHS = 5


@keras.saving.register_keras_serializable(package="fcn")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `base_rate` over `warmup_steps`, then cosine or polynomial decay to 0 at `total_steps`.

    rate(step) = base * (step + 1) / warmup              for step < warmup
               = base * (1 + cos(pi * t)) / 2            cosine, t = (step - warmup) / (total - warmup) in [0, 1]
               = base * (1 - t) ** power                 poly
    """

    def __init__(self, base_rate: float, total_steps: int, warmup_steps: int = 0, kind: str = "cosine",
                 power: float = 0.9):
        if kind not in ("cosine", "poly"):
            raise ValueError(f"decay must be 'cosine' or 'poly', got {kind!r}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")
        self.base_rate, self.total_steps, self.warmup_steps = float(base_rate), int(total_steps), int(warmup_steps)
        self.kind, self.power = kind, float(power)
        # On TensorFlow the decay's length is also a variable, which a compiled step reads when it runs: a budget's
        # plan (resize) then reaches it without tracing the step again (about 10 s for MobileNetV2, twice a run).
        # JAX compiles the values of the variables it is not handed into the step: there a resize rebuilds it.
        self._length = None
        if keras.backend.backend() == "tensorflow":
            self._length = keras.Variable(float(self.total_steps), dtype="float32", trainable=False,
                                          name="decay_steps")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        total = self.total_steps if self._length is None else ops.cast(self._length, "float32")
        warm = self.base_rate * (step + 1.0) / max(self.warmup_steps, 1)
        t = ops.clip((step - self.warmup_steps) / (total - self.warmup_steps), 0.0, 1.0)
        if self.kind == "cosine":
            decayed = self.base_rate * 0.5 * (1.0 + ops.cos(math.pi * t))
        else:
            decayed = self.base_rate * ops.power(1.0 - t, self.power)
        return ops.where(step < self.warmup_steps, warm, decayed)

    def resize(self, total_steps: int) -> bool:
        """Make the decay end at `total_steps` (at least one step after the warm-up).

        Returns whether a compiled training step must be rebuilt to follow (model.make_train_function(force=True)):
        only where the old length is compiled into it (JAX) and the length changed."""
        old = self.total_steps
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        if self._length is not None:
            self._length.assign(float(self.total_steps))
            return False
        return self.total_steps != old

    def get_config(self):
        return {"base_rate": self.base_rate, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "kind": self.kind, "power": self.power}


def learning_rate(base_rate: float, schedule: str, total_steps: int, warmup_steps: int = 0):
    """A float for "constant" (no warm-up allowed there), else a WarmupDecay schedule."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose from {SCHEDULES}")
    if schedule == "constant":
        return base_rate
    return WarmupDecay(base_rate, total_steps, warmup_steps, kind=schedule)


def plan_epochs(seconds_so_far: float, last_epoch_seconds: float, minutes: float, epochs_done: int,
                max_epochs: int) -> int:
    """The epochs a schedule sized by a budget of `minutes` spans: those done, plus as many more as fit in
    what is left of the budget at the last epoch's length (at most max_epochs in all)."""
    remaining = 60 * minutes - seconds_so_far
    more = int(remaining // last_epoch_seconds) if last_epoch_seconds > 0 else max_epochs
    return max(epochs_done, min(max_epochs, epochs_done + max(more, 0)))


def plan_two_sizes(seconds_so_far: float, small_epoch_seconds: float, full_epoch_seconds: float, minutes: float,
                   epochs_done: int, small_share: float, max_epochs: int) -> tuple[int, int]:
    """(epochs in all, epochs at the small size) of a run whose first `small_share` of epochs train at a smaller
    size (progressive resizing): the most epochs whose rest fits in what is left of the budget, the small ones
    at `small_epoch_seconds`, the full-size ones at `full_epoch_seconds` (at most max_epochs in all)."""
    remaining = 60 * minutes - seconds_so_far
    for total in range(max(max_epochs, epochs_done), epochs_done, -1):
        small = max(epochs_done, int(small_share * total + 0.5))
        if (small - epochs_done) * small_epoch_seconds + (total - small) * full_epoch_seconds <= remaining:
            return total, small
    return epochs_done, epochs_done


def decay_schedule(optimizer) -> WarmupDecay | None:
    """The WarmupDecay an optimizer (or the loss-scale optimizer around it) follows, or None for a fixed rate."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = getattr(inner, "_learning_rate", None)  # Keras keeps the schedule object there
    return schedule if isinstance(schedule, WarmupDecay) else None


class _OneRatePerStep(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule's rate, computed at its first call and returned again by the calls after it."""

    def __init__(self, schedule):
        self.schedule, self.rate = schedule, None

    def __call__(self, step):
        if self.rate is None:
            self.rate = self.schedule(step)
        return self.rate


class _WeightDecayAtOneRate:
    """Decoupled weight decay that computes a scheduled learning rate once per step.

    Keras' optimizers read the learning rate anew for every variable they decay, so a step traced with a
    schedule holds one copy of the schedule per variable (168 for MobileNetV2's FCN-8): tracing that step took
    14.6 s instead of 10.8 with a constant rate. The step, and so the result, is otherwise Keras' own.
    """

    def _apply_weight_decay(self, variables):
        schedule = self._learning_rate
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            return super()._apply_weight_decay(variables)
        self._learning_rate = _OneRatePerStep(schedule)  # the step does not move during the decay
        try:
            return super()._apply_weight_decay(variables)
        finally:
            self._learning_rate = schedule


@keras.saving.register_keras_serializable(package="fcn")
class AdamW(_WeightDecayAtOneRate, keras.optimizers.AdamW):
    """keras.optimizers.AdamW, with a scheduled learning rate computed once per step (see above)."""


@keras.saving.register_keras_serializable(package="fcn")
class SGD(_WeightDecayAtOneRate, keras.optimizers.SGD):
    """keras.optimizers.SGD, with a scheduled learning rate computed once per step (see above)."""


def make_optimizer(name: str, rate, weight_decay: float = 0.0, ema_momentum: float | None = None
                   ) -> keras.optimizers.Optimizer:
    """Adam (weight decay not allowed: use adamw), AdamW (decoupled decay), or SGD with momentum 0.9.

    With `ema_momentum` the optimizer also keeps an exponential moving average of the weights, updated after
    every step (Keras' use_ema; fcn.callbacks.AveragedWeights puts it where results are taken from)."""
    ema = dict(use_ema=True, ema_momentum=ema_momentum) if ema_momentum is not None else {}
    if name == "adam":
        if weight_decay:
            raise ValueError("weight decay needs optimizer 'adamw' or 'sgd', not 'adam'")
        return keras.optimizers.Adam(rate, **ema)
    if name == "adamw":
        return AdamW(rate, weight_decay=weight_decay, **ema)
    if name == "sgd":
        return SGD(rate, momentum=0.9, weight_decay=weight_decay or None, **ema)
    raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")
