"""Callbacks of a training run: the task's validation score, and the per-epoch commit with its time budget."""

import dataclasses
import time

import keras

from fcn import distribute, modelfile, predict
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


class CommitEpoch(keras.callbacks.Callback):
    """At the end of each epoch: checkpoint, commit it to the run folder (fcn/runs.py), mind the time budget.

    With a budget of `minutes`, training stops after the epoch at which another epoch of the same length
    would overrun it, so the run ends within the budget with every file complete. Time is counted over the
    whole run, resumes included, and recorded per epoch (history "seconds") and in total (state.json).

    With several workers (fcn/distribute.py) every worker runs this callback, but only the chief writes: the
    others keep the same state in memory and take their part in the collective save in a temporary folder.
    The chief's clock decides the budget, so that every worker stops after the same epoch.
    """

    def __init__(self, run: RunFolder, state: RunState, config: dict, info: dict, minutes: float | None = None,
                 placement: distribute.Placement = distribute.SINGLE):
        super().__init__()
        self.run, self.state, self.config, self.info, self.minutes = run, state, config, info, minutes
        self.placement = placement
        self.epoch_start = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - self.epoch_start
        logs = {key: float(value) for key, value in (logs or {}).items()}
        state = dataclasses.replace(self.state, epochs_done=epoch + 1, seconds=self.state.seconds + seconds,
                                    stopped_by_budget=False,
                                    history=[*self.state.history, {"epoch": epoch + 1, **logs,
                                                                   "seconds": round(seconds, 3)}])
        if state.is_improvement(logs.get(state.monitor)):
            state.best_epoch, state.best_value = epoch + 1, logs[state.monitor]
        if self.placement.agree(self.minutes is not None and state.seconds + seconds > 60 * self.minutes):
            state.stopped_by_budget = True
            self.model.stop_training = True
            print(f"stopping after epoch {epoch + 1}: another epoch would overrun the budget of {self.minutes:g} "
                  f"minutes ({state.seconds / 60:.1f} minutes used)")
        if self.placement.is_chief:
            modelfile.save_model(self.model, self.run.checkpoint(epoch + 1), self.info)
            self.run.commit(state, self.config)
        else:  # several workers train on JAX, where a save reads arrays that every worker holds a part of
            self.placement.save_elsewhere(self.model.save)
        self.state = state
