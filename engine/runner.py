"""The conductor of a run: a thread that steps the trainer, applies commands between steps, posts events.

    runner = Runner(cfg, sink=print); runner.start(); runner.submit(Pause()); ...; runner.submit(Stop())

Commands (engine/commands.py) are applied only between steps, in order; a Stop ends the run after
those sent before it (pausing and stepping aside) and drops those sent after it. A paused runner
blocks on its command queue (no sleep loop). Events go to `sink`, called on the training thread;
it must not block. Any failure becomes an ErrorRaised event and a clean end; every run ends with
RunFinished. Tests and tools drive the same loop without a thread: `setup()`, then `tick()`.

Its other jobs live beside it: engine/setup.py (the start and a resume), engine/record.py (events
out, writes through the journal), engine/saver.py (checkpoints, grids, exports), engine/restore.py
(resume, rollback, PBT exploit), engine/monitoring.py (metrics, quality, alarms, device readings)
and engine/ending.py (finished, stopped, failed).
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import commands as cmd
from engine import ending, restore, setup
from engine import events as ev
from engine.config import ConfigError, TrainConfig
from engine.data import ImageData
from engine.health import HealthMonitor
from engine.lock import RunLock
from engine.monitoring import Monitor
from engine.record import QueueSink, RunRecord, Sink
from engine.runs import log_record
from engine.saver import Saver
from engine.schedule import run_cadences, steps_to_next_count
from engine.trainer import Trainer


@dataclass(frozen=True)
class _Delivered:
    """An event from a side thread (quality worker, TensorBoard), queued with the commands so a paused runner wakes for it."""

    event: ev.Event


_WAKE = object()  # queued with the commands when a write finished, so a paused runner applies the outcome at once


class Runner:
    """Runs one training run (new, resumed, or a PBT exploit) and talks only through commands and events."""

    def __init__(self, cfg: TrainConfig, sink: Sink, runs_dir: Path | str = "runs", run_name: str | None = None,
                 resume: str | None = None, data: ImageData | None = None, judge_cache: Path | None = None,
                 exploit: restore.Exploit | None = None) -> None:
        self.cfg = cfg
        self.runs_dir, self.run_name, self.resume_spec, self.exploit = Path(runs_dir), run_name, resume, exploit
        self.data, self.judge_cache = data, judge_cache
        # SimpleQueue: put() is safe from a signal handler, at any moment (setup, paused, a rollback).
        self._commands: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.record = RunRecord(sink, wake=lambda: self._commands.put(_WAKE), step=lambda: self.step)
        self.saver, self.monitor, self.health = Saver(self), Monitor(self), HealthMonitor(cfg)
        self.lock: RunLock | None = None
        self.trainer: Trainer | None = None
        self.state = ev.RunState.STARTING
        self.hparam_history: list[dict[str, Any]] = []
        self.notes: list[str] = []  # said once the run has started (batches reseeded across device types)
        self.train_s = 0.0  # training wall time, pauses excluded (carried across resumes)
        self._pending_steps = 0
        self._thread: threading.Thread | None = None
        self._done = False
        self.cadence = run_cadences(cfg)  # side work by wall time with step bounds (engine/schedule.py)

    # ------------------------------------------------------------------ API
    def start(self) -> threading.Thread:
        """Run the whole loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run_forever, name="gan-tui-trainer", daemon=True)
        self._thread.start()
        return self._thread

    def submit(self, command: cmd.Command) -> None:
        """Queue a command; it is applied between steps. Never blocks; safe from a signal handler."""
        self._commands.put(command)

    def deliver(self, event: ev.Event) -> None:
        """Hand an event from a side thread to the training thread (which logs and posts it)."""
        self._commands.put(_Delivered(event))

    def settle(self, timeout: float = 60.0) -> None:
        """Wait for the run folder's queued writes and apply their outcomes now (CheckpointSaved,
        SamplesExported, write warnings). The thread does this by itself; for tick()-driven use."""
        self.record.settle(timeout)

    def abandon(self) -> None:
        """Let go of the run folder without finishing, as a killed process would (tests, tools)."""
        self._done = True
        self.monitor.close(wait=False)
        if self.journal is not None:
            self.journal.close()
        self.release_folder()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def fail(self, exc: BaseException) -> None:
        """End the run over an error raised outside tick() (a driver's own failure): events, no save."""
        if not self._done:
            ending.fail(self, exc, save=False)

    def run_forever(self) -> None:
        """setup(), then tick() until done; every failure ends as events, never silently."""
        try:
            self.setup()
        except Exception as exc:  # noqa: BLE001 - reported to the user, not swallowed
            ending.fail(self, exc, save=False)
            return
        try:
            while self.tick(block=True):
                pass
        except BaseException as exc:  # noqa: BLE001 - the last line of defence: the run still ends with events
            if not self._done:
                ending.fail(self, exc, save=False)

    def setup(self) -> None:
        """Take the folder, build or restore the trainer, post RunStarted (engine/setup.py); then train."""
        setup.open_run(self)
        assert self.trainer is not None
        self.set_state(ev.RunState.RUNNING)
        self.cadence = run_cadences(self.cfg, self.trainer.step)  # clocks start with training, not with loading
        self.saver.post_grid()
        self.monitor.device_stats(force=True)
        self.monitor.start_quality(self.trainer.device)

    def tick(self, block: bool = False) -> bool:
        """Apply pending commands, then run at most one step. False once the run is over."""
        if self._done:
            return False
        try:
            self._apply_commands(block)
            if not self._done and (self.state == ev.RunState.RUNNING or self._pending_steps > 0):
                self._train_one()
        except Exception as exc:  # noqa: BLE001 - any failure becomes an event and a clean stop
            ending.fail(self, exc, save=True)
            return False
        return not self._done

    # ----------------------------------------------------------- state, read
    @property
    def total_steps(self) -> int:
        """Where the run ends: cfg.steps, or cfg.epochs converted at the current batch size and d_steps."""
        if self.cfg.epochs > 0 and self.trainer is not None:
            remaining = self.cfg.epochs * len(self.trainer.data.images) - self.trainer.images_seen
            return self.trainer.step + max(0, math.ceil(remaining / (self.cfg.batch_size * self.cfg.d_steps)))
        return self.cfg.steps

    done = property(lambda self: self._done, doc="True once the run has ended (RunFinished posted, the lock released).")
    step = property(lambda self: self.trainer.step if self.trainer is not None else 0, doc="The step the run is at.")
    run = property(lambda self: self.record.run, doc="The run folder (RunDir), once set up.")
    journal = property(lambda self: self.record.journal, doc="The run folder's writer (engine/journal.py).")
    tensorboard = property(lambda self: self.record.tensorboard, doc="The TensorBoard logger, if on.")
    quality = property(lambda self: self.monitor.quality, doc="The quality worker, if quality is measured.")
    last_quality = property(lambda self: self.monitor.last_quality, doc="The newest quality measurement.")
    owns_folder = property(lambda self: self.lock is not None and self.lock.held, doc="This runner holds the folder's lock.")

    # ------------------------------------------- command handlers (engine/commands.py)
    def pause(self, reason: str) -> None:
        if self.state == ev.RunState.RUNNING:
            self.log_metrics_now()  # close the interval so pauses never count as training time
            if self.state == ev.RunState.RUNNING:
                self.set_state(ev.RunState.PAUSED, reason)
        self._pending_steps = 0

    def resume(self) -> None:
        if self.state == ev.RunState.PAUSED:
            self.monitor.start_interval()
            self.set_state(ev.RunState.RUNNING)

    def queue_steps(self, count: int) -> None:
        if self.state == ev.RunState.PAUSED:
            self._pending_steps += max(1, int(count))

    def set_hyperparams(self, values: dict[str, Any], **fields: Any) -> None:
        assert self.trainer is not None
        try:
            new_cfg = self.cfg.with_hyperparams(**values)
        except (ConfigError, TypeError, ValueError, OverflowError) as exc:
            self.warn(f"hyperparameters not changed: {exc}", "hyperparams")
            return
        old, new = self.cfg.hyperparams(), new_cfg.hyperparams()
        if old != new:
            self.cfg = new_cfg
            self.trainer.set_hyperparams(new_cfg)
            self.record_hyperparams(old, new, **fields)  # fields: why, in the log and the history
            self.record.write_config(new_cfg)

    def roll_back(self, target: str, lr_scale: float) -> None:
        restore.roll_back(self, target, lr_scale)

    def stop(self, save: bool) -> None:
        ending.finish(self, ev.RunState.STOPPED, "stopped by the user", save=save)

    # ------------------------------------------------ for the modules beside it
    def record_hyperparams(self, old: dict[str, Any], new: dict[str, Any], **fields: Any) -> None:
        """A change of the live hyperparameters, now in effect: history, log record, event."""
        self.saver.hyperparams_changed()
        self.hparam_history.append({"step": self.step, "old": old, "new": new, **fields})
        self.record.append(log_record("hparams", self.step, old=old, new=new, **fields))
        self.emit(ev.HyperparamsChanged(self.step, old, new))

    def set_state(self, state: ev.RunState, reason: str = "") -> None:
        self.state = state
        self.record.write_state(state)
        self.emit(ev.StateChanged(state, self.step, reason))

    def emit(self, event: ev.Event) -> None:
        self.record.emit(event)

    def warn(self, message: str, kind: str) -> None:
        self.record.warn(message, kind)

    def log_metrics_now(self) -> bool:
        """Read, log and post the interval's figures; on non-finite ones pause and return False."""
        if self.monitor.log_metrics():
            return True
        self.pause(f"non-finite loss or gradient before step {self.step}")
        return False

    def discard_pending_steps(self) -> None:
        self._pending_steps = 0

    def take_delivered(self) -> None:
        """Apply side threads' events queued so far (the end of a run waits for the last figures)."""
        while True:
            try:
                item = self._commands.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Delivered):
                self.monitor.on_event(item.event)

    def release_folder(self) -> None:
        """The run is over: its folder is free for a resume or another tool."""
        if self.lock is not None:
            self.lock.release()
        self._done = True

    # --------------------------------------------------------------- the loop
    def _apply_commands(self, block: bool) -> None:
        items: list[Any] = []
        if block and self.state == ev.RunState.PAUSED and self._pending_steps == 0:
            items.append(self._commands.get())  # a paused runner sleeps here, not in a loop
        while True:
            try:
                items.append(self._commands.get_nowait())
            except queue.Empty:
                break
        self.record.take_written()
        stop_at = next((i for i, c in enumerate(items) if isinstance(c, cmd.Stop)), len(items))
        for i, item in enumerate(items):
            if isinstance(item, _Delivered):  # side threads' results are logged, also after a Stop
                self.monitor.on_event(item.event)
            elif item is _WAKE or i >= stop_at:
                continue  # after a Stop, commands are dropped; the Stop itself comes last
            elif stop_at == len(items) or not getattr(cmd.spec_of(item), "moot_at_stop", False):
                cmd.apply(self, item)  # what was sent before a Stop was acknowledged, so it happens
        if stop_at < len(items):
            cmd.apply(self, items[stop_at])

    def _train_one(self) -> None:
        trainer = self.trainer
        assert trainer is not None
        if trainer.step >= self.total_steps:
            ending.finish(self, ev.RunState.FINISHED, "reached the planned length", save=True)
            return
        if self.state == ev.RunState.PAUSED:
            self.monitor.start_interval()  # a single step while paused is timed on its own
        limit = min(self.total_steps - trainer.step, steps_to_next_count(self.cadence, trainer.step) or 2**62)
        ran = trainer.train_steps(min(limit, self._pending_steps) if self.state == ev.RunState.PAUSED else limit)
        for note in trainer.take_notes():
            self.warn(note, "graph")
        self.monitor.trained(ran * self.cfg.batch_size * self.cfg.d_steps)
        self._pending_steps = max(0, self._pending_steps - ran)
        step, due = trainer.step, self.cadence
        if due["log"].due(step) or self._pending_steps == 0 and self.state == ev.RunState.PAUSED:
            if not self.log_metrics_now():
                return  # paused for non-finite values: no grid, measurement or checkpoint of them
        if due["grid"].due(step):
            self.saver.post_grid()
        self.monitor.after_step(step)
        if due["checkpoint"].due(step) and self.log_metrics_now():  # never checkpoint weights that went non-finite
            self.saver.save("periodic")


__all__ = ["QueueSink", "Runner"]
