"""A run folder that survives being killed at any moment.

    runs/<name>/config.json              the run's TrainConfig
    runs/<name>/state.json               epochs done, best epoch, every epoch's metrics: the commit record
    runs/<name>/history.csv              one row per finished epoch (written from state.json)
    runs/<name>/checkpoint/epoch-N.keras model + optimizer after epoch N (the latest one is kept)
    runs/<name>/best.keras               the best epoch's model (by the monitored validation metric)
    runs/<name>/final.keras              the last epoch's model, once the run has finished

An epoch ends in three steps: its checkpoint is written (temporary file, then rename), then state.json is
replaced in one rename (the commit), then everything derived from the state is brought up to date (best.keras,
history.csv, old checkpoints removed). A kill before the commit loses that epoch only; a kill after it is
mended by `recover`, which every rerun calls first. best.keras and final.keras are hard links to
checkpoint files, so they are never half-written and cost no copy. A write that fails (a full disk) stops the
run the same way, naming the file (fcn/imageio.py FileWriteError), with every earlier file as it was.

One process writes a run folder at a time: it holds an operating-system lock (flock) on `.lock` inside the
folder while it trains (see RunFolder.lock). The kernel drops the lock when the process dies, so a kill never
leaves a stale one; readers (predict, evaluate) take no lock and see only whole files.
"""

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import math
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fcn.imageio import reporting_write_errors, write_bytes_atomic

STATE_VERSION = 1


class RunInUseError(RuntimeError):
    """The run folder is being written by another process."""


@dataclass
class RunState:
    """What state.json records. Epochs are counted from 1."""

    epochs_done: int = 0
    monitor: str = "val_loss"
    # "max" where higher is better (MaxF, IoU), "min" for losses.
    mode: str = "min"
    best_epoch: int | None = None
    best_value: float | None = None
    # Wall-clock seconds of training over the whole run, resumes included; whether a time budget ended it.
    seconds: float = 0.0
    stopped_by_budget: bool = False
    # With a time budget and a decaying learning rate: the epochs the schedule spans, fixed from the measured
    # epoch time after the first epochs (fcn/optim.py plan_epochs); a resume keeps it. None until then.
    schedule_epochs: int | None = None
    # How many of optim.REPLAN_AT_BUDGET_SHARES the run has passed and planned again at.
    schedule_replans: int = 0
    # With progressive resizing (TrainConfig.progressive_resizing): the epochs trained at the smaller size;
    # later ones train at the full size. Fixed with the schedule's plan (or from the epochs, without a budget).
    small_epochs: int | None = None
    history: list[dict] = field(default_factory=list)

    def is_improvement(self, value) -> bool:
        """Whether `value` of the monitored metric beats the best so far."""
        if value is None or not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def small_epochs_just_ended(self) -> bool:
        """Whether the epoch just done was progressive resizing's last at the smaller size, and no budget stopped
        the run there: training then goes on at the full size (CommitEpoch stops the first model.fit)."""
        return self.small_epochs == self.epochs_done and not self.stopped_by_budget

    def history_columns(self) -> dict[str, list[float]]:
        """{metric: per-epoch values}, like Keras' History.history (epochs in order)."""
        keys = [key for row in self.history for key in row if key != "epoch"]
        return {key: [row.get(key, float("nan")) for row in self.history] for key in dict.fromkeys(keys)}


class RunFolder:
    """The files of one run (see the module docstring)."""

    def __init__(self, path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.state = self.path / "state.json"
        self.history = self.path / "history.csv"
        self.best = self.path / "best.keras"
        self.final = self.path / "final.keras"
        self.checkpoints = self.path / "checkpoint"
        self.lock_file = self.path / ".lock"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:04d}.keras"

    def read_state(self) -> RunState | None:
        """The committed state, or None if no epoch has been committed yet."""
        if not self.state.is_file():
            return None
        try:
            record = json.loads(self.state.read_text())
            if record.pop("version", None) != STATE_VERSION:
                raise ValueError("unknown version")
            if "schedule_replanned" in record:  # written before 2026-12-04: one re-plan, at half the budget
                record["schedule_replans"] = 2 if record.pop("schedule_replanned") else 0
            return RunState(**record)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{self.state}: unreadable run state ({error}); this file is written in one "
                             "rename, so it was edited or damaged by hand") from None

    def commit(self, state: RunState, config: dict) -> None:
        """Record a finished epoch whose checkpoint is already written, then update what derives from it."""
        if not self.checkpoint(state.epochs_done).is_file():
            raise FileNotFoundError(f"{self.checkpoint(state.epochs_done)}: commit before its checkpoint")
        write_bytes_atomic(self.config, json.dumps(config, indent=2).encode())
        record = {"version": STATE_VERSION, **dataclasses.asdict(state)}
        write_bytes_atomic(self.state, json.dumps(record, indent=2).encode())
        self.recover(state)

    def recover(self, state: RunState) -> None:
        """Bring best.keras, history.csv and the checkpoints in line with a committed state (idempotent)."""
        best = self.checkpoint(state.best_epoch) if state.best_epoch else None
        if best is not None and best.is_file():
            _link_atomic(best, self.best)
        self._write_history(state)
        keep = {self.checkpoint(state.epochs_done).name}
        for path in self.checkpoints.glob("*"):
            if path.name not in keep:
                path.unlink()
        for path in self.path.glob(".*.tmp*"):  # a save or write interrupted by a kill
            path.unlink()

    def finish(self, state: RunState) -> None:
        """Mark the run finished: final.keras is the last epoch's model."""
        _link_atomic(self.checkpoint(state.epochs_done), self.final)

    @contextlib.contextmanager
    def lock(self):
        """Hold this run folder for this process, or raise RunInUseError at once. Yields whether the folder
        was created here (so that a run failing before its first commit can remove it: see discard).

        The lock file is removed, and a folder created here and left empty is removed, before the lock is
        released; a process that opened the removed file finds on locking it that it is no longer the
        folder's lock file, and tries again.
        """
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = self._lock_fd()
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            yield created
        finally:
            self.lock_file.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):  # not empty: the run's files stay
                    self.path.rmdir()
            os.close(fd)  # releases the lock

    def _lock_fd(self) -> int:
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").split()
                os.close(fd)
                raise RunInUseError(_in_use_message(self.path, holder)) from None
            except OSError as error:  # a file system without locks (some network mounts): see docs/training.md
                print(f"warning: {self.path}: cannot be locked ({error.strerror}); make sure no other process "
                      "writes this run", file=sys.stderr)
                return fd
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_file))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # the holder removed this file as it let go: lock the folder's current one

    def discard(self, created: bool) -> None:
        """Remove what a run that failed before its first commit wrote, so it does not look like a run."""
        if created:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in ("checkpoint", "logs", "history.csv", "config.json", "best.keras"):
            target = self.path / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)

    def _write_history(self, state: RunState) -> None:
        columns = ["epoch", *state.history_columns()]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, restval="NA", lineterminator="\n")
        writer.writeheader()
        writer.writerows(state.history)
        write_bytes_atomic(self.history, buffer.getvalue().encode())


def _in_use_message(path: Path, holder: list[str]) -> str:
    pid, host = (holder + ["?", "?"])[:2]
    who = "this process" if (pid, host) == (str(os.getpid()), socket.gethostname()) else "another fcn process"
    return (f"{path}: in use by {who} (pid {pid} on {host}); wait for it to end or stop it, or choose "
            "another run folder")


def _link_atomic(source: Path, target: Path) -> None:
    """Make `target` name the same file as `source`, replacing it in one rename (copy where links fail)."""
    if target.is_file() and os.path.samefile(source, target):
        return
    tmp = target.with_name(f".{target.name}.tmp.link")
    with reporting_write_errors(target, tmp):
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
