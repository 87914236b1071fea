"""Callbacks of a training run: the task's validation score, and the per-epoch commit with its time budget."""

import dataclasses
import time

import keras

from fcn import distribute, modelfile, optim, predict
from fcn.runs import RunFolder, RunState


def score_name(dataset: str) -> str:
    """The validation score that picks a run's best epoch: KITTI Road's MaxF, mean IoU elsewhere."""
    return "val_maxf" if dataset == "kitti_road" else "val_miou"


class ValidationScore(keras.callbacks.Callback):
    """Adds the task's own metric on the validation split to each epoch's logs, before anything saves them.

    KITTI Road: the devkit's MaxF over all validation pixels (um, umm and uu pooled, the benchmark's
    URBAN_ROAD), at each frame's full resolution. Other datasets: mean IoU at full resolution. These are the
    numbers `fcn evaluate` reports, so the best epoch is chosen by what is finally scored, not by val_loss.
    """

    def __init__(self, samples, info, image_size):
        super().__init__()
        self.samples, self.info, self.image_size = samples, info, image_size
        self.name = score_name(info.name)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.info.road_class is not None:
            scores = predict.evaluate_road(self.model, self.samples, self.image_size, road_id=self.info.road_class,
                                           pooled=True)
            logs[self.name] = scores["urban_road"]["MaxF"]
        else:
            logs[self.name] = predict.evaluate_segmentation(self.model, self.samples, self.info,
                                                            self.image_size)["mean_iou"]


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Results from the exponential moving average of the weights (an optimizer with use_ema), training on the
    weights themselves.

    Keras' SwapEMAWeights swaps the average into the model for val_loss. First in the list of callbacks, this one
    also swaps it in at the end of each epoch, and `swap_back`, last in the list, swaps it out again: the
    validation score and the checkpoint (so best.keras and final.keras) see the average as the model's weights,
    and the checkpoint keeps the training weights in the optimizer's average slots. A checkpoint loaded to go on
    training is swapped once (swap_averaged_weights). At the end of model.fit, Keras puts the average into the
    model (finalize_variable_values): the model that training returns is the averaged one, as in its files.
    """

    def __init__(self):
        super().__init__(swap_on_epoch=False)
        self.swap_back = _SwapBack(self)

    def on_epoch_end(self, epoch, logs=None):
        self.put_average_in_model(True)

    def put_average_in_model(self, wanted: bool) -> None:
        # The flag and the swap are Keras' own (SwapEMAWeights): kept together here, so they never disagree.
        if self._ema_weights_in_model != wanted:
            self._swap_variables()
            self._ema_weights_in_model = wanted


class _SwapBack(keras.callbacks.Callback):
    """The last callback of an epoch: the training weights back into the model (see AveragedWeights)."""

    def __init__(self, averaged: AveragedWeights):
        super().__init__()
        self.averaged = averaged

    def on_epoch_end(self, epoch, logs=None):
        self.averaged.put_average_in_model(False)


def swap_averaged_weights(model: keras.Model) -> None:
    """Exchange the model's trainable weights and its optimizer's moving averages of them (use_ema)."""
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(model)
    swap._swap_variables()


class CommitEpoch(keras.callbacks.Callback):
    """At the end of each epoch: checkpoint, commit it to the run folder (fcn/runs.py), mind the time budget.

    With a budget of `minutes`, training stops after the epoch at which another epoch of the same length
    would overrun it, so the run ends within the budget with every file complete. Time is counted over the
    whole run, resumes included, and recorded per epoch (history "seconds") and in total (state.json).

    With several workers (fcn/distribute.py) every worker runs this callback, but only the chief writes: the
    others keep the same state in memory and take their part in the collective save in a temporary folder.
    The chief's clock decides the budget, so that every worker stops after the same epoch.

    With a budget and a decaying learning rate (`schedule`, a fcn.optim.WarmupDecay), the schedule is sized by
    the budget: after optim.PLAN_AFTER_EPOCHS epochs their measured length fixes how many epochs fit (at most
    `max_epochs`), the decay is stretched or shrunk to end there, and the run stops after that epoch, at a
    learning rate near 0. As each of optim.REPLAN_AT_BUDGET_SHARES of the budget is passed, the plan is made
    again from the median epoch since, the last time from the median of the last few epochs, so that a late
    slowdown still ends the decay at the budget (on TensorFlow the compiled step reads the new length; on JAX it
    is rebuilt if the plan changed). The plan is committed in state.json (schedule_epochs, schedule_replans), so
    a resume keeps it.

    With progressive resizing (`small_share`: that share of the epochs at a smaller size first), the first plan
    also fixes how many epochs train small (state.small_epochs), guessing a full-size epoch's length from the
    pixel ratio; training stops after the last small epoch (fcn.train then goes on at the full size), and the
    plan is made again from the second full-size epoch, measured.
    """

    def __init__(self, run: RunFolder, state: RunState, config: dict, info: dict, minutes: float | None = None,
                 placement: distribute.Placement = distribute.SINGLE, schedule: optim.WarmupDecay | None = None,
                 steps_per_epoch: int = 1, max_epochs: int | None = None, small_share: float | None = None,
                 full_to_small_pixels: float = 1.0):
        super().__init__()
        self.run, self.state, self.config, self.info, self.minutes = run, state, config, info, minutes
        self.placement = placement
        self.schedule = schedule if minutes is not None else None
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs
        # Progressive resizing: the share of the epochs trained small, and how many times more pixels a
        # full-size image has (a first guess of how much longer a full-size epoch takes, until one is measured).
        self.small_share, self.full_to_small_pixels = small_share, full_to_small_pixels
        self.epoch_start = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def _plan_schedule(self, state: RunState, epoch_seconds: float) -> None:
        max_epochs = self.max_epochs or state.epochs_done
        if self.small_share is not None and state.small_epochs is None:  # the first plan of a progressive run
            planned, small = optim.plan_two_sizes(state.seconds, epoch_seconds, epoch_seconds * self.full_to_small_pixels,
                                                  self.minutes, state.epochs_done, self.small_share, max_epochs)
            state.small_epochs = self.placement.share(small)
        else:
            planned = optim.plan_epochs(state.seconds, epoch_seconds, self.minutes, state.epochs_done, max_epochs)
        state.schedule_epochs = self.placement.share(planned)  # the chief's plan on every worker
        if self.schedule.resize(state.schedule_epochs * self.steps_per_epoch):  # JAX: the length is compiled in
            self.model.make_train_function(force=True)
        small = f", the first {state.small_epochs} at the smaller size" if state.small_epochs is not None else ""
        print(f"learning-rate schedule sized by the budget: {state.schedule_epochs} epochs in all{small} "
              f"({epoch_seconds:.1f} s per epoch, {self.minutes:g} minutes)")

    def _replans_due(self, state: RunState) -> int:
        """How many of the re-plan shares of the budget the run has passed; the count so far (nothing new to
        plan) once the schedule has ended, or while a progressive run has not yet measured its full size."""
        if state.epochs_done >= state.schedule_epochs:
            return state.schedule_replans
        if state.small_epochs is not None and state.epochs_done < state.small_epochs + 2:
            return state.schedule_replans  # a progressive run waits for two full-size epochs (the first retraces)
        passed = sum(state.seconds >= share * 60 * self.minutes for share in optim.REPLAN_AT_BUDGET_SHARES)
        # A progressive run's first plan guessed the full-size epochs: it plans again once they are measured.
        return max(passed, 1) if state.small_epochs is not None else passed

    def _replan_if_due(self, state: RunState) -> None:
        due = self._replans_due(state)
        if self.placement.agree(due > state.schedule_replans):  # the chief's clock decides, as for the budget
            state.schedule_replans = self.placement.share(due)
            last = state.schedule_replans >= len(optim.REPLAN_AT_BUDGET_SHARES)
            self._plan_schedule(state, self._median_epoch_seconds(
                state, optim.LAST_REPLAN_RECENT_EPOCHS if last else None))

    @staticmethod
    def _median_epoch_seconds(state: RunState, last: int | None = None) -> float:
        # The epochs since the first plan (of a progressive run: since the switch to the full size), less the
        # first of them, which may have rebuilt (retraced) the training step (JAX; a new image size); of those
        # only the `last` few where given.
        first = optim.PLAN_AFTER_EPOCHS if state.small_epochs is None else state.small_epochs
        rows = state.history[first + 1:]
        seconds = sorted(row["seconds"] for row in (rows[-last:] if last else rows))
        return seconds[len(seconds) // 2] if seconds else state.history[-1]["seconds"]

    def _stop_reason(self, state: RunState, last_epoch_seconds: float) -> str | None:
        if state.schedule_epochs is not None and state.epochs_done >= state.schedule_epochs:
            return "the learning-rate schedule sized by the budget has ended"
        if self.minutes is not None and state.seconds + last_epoch_seconds > 60 * self.minutes:
            return f"another epoch would overrun the budget of {self.minutes:g} minutes"
        return None

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - self.epoch_start
        logs = {key: float(value) for key, value in (logs or {}).items()}
        state = dataclasses.replace(self.state, epochs_done=epoch + 1, seconds=self.state.seconds + seconds,
                                    stopped_by_budget=False,
                                    history=[*self.state.history, {"epoch": epoch + 1, **logs,
                                                                   "seconds": round(seconds, 3)}])
        if state.is_improvement(logs.get(state.monitor)):
            state.best_epoch, state.best_value = epoch + 1, logs[state.monitor]
        if self.schedule is not None and state.schedule_epochs is None and state.epochs_done >= optim.PLAN_AFTER_EPOCHS:
            self._plan_schedule(state, seconds)
        elif self.schedule is not None and state.schedule_epochs is not None:
            self._replan_if_due(state)
        reason = self._stop_reason(state, seconds)
        if self.placement.agree(reason is not None):
            state.stopped_by_budget = True
            self.model.stop_training = True
            print(f"stopping after epoch {epoch + 1}: {reason or 'the chief ran out of time'} "
                  f"({state.seconds / 60:.1f} minutes used)")
        elif state.small_epochs_just_ended():  # every worker holds the chief's plan: all stop here
            self.model.stop_training = True  # fcn.train goes on at the full size
            print(f"epoch {epoch + 1}: the last one at the smaller size (progressive resizing)")
        if self.placement.is_chief:
            modelfile.save_model(self.model, self.run.checkpoint(epoch + 1), self.info)
            self.run.commit(state, self.config)
        else:  # several workers train on JAX, where a save reads arrays that every worker holds a part of
            self.placement.save_elsewhere(self.model.save)
        self.state = state
