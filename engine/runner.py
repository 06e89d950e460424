"""The training worker: a thread that steps the trainer, applies commands between steps, posts events.

    runner = Runner(cfg, sink=print)
    runner.start()
    runner.submit(Pause())
    ...
    runner.submit(Stop())
    runner.join()

Commands are applied only between steps, in order; a Stop ends the run after those sent before it
(pausing and stepping aside) and drops those sent after it. A paused runner blocks on its
command queue (no sleep loop). Events go to `sink`, which is called on the training thread and
must not block: the dashboard posts a Textual message, tests use a QueueSink. An exception in
training becomes an ErrorRaised event, a checkpoint (when the weights are still finite) and a
clean stop; the failure path itself never raises, and every run ends with RunFinished. For tests
and tools that want no thread, `setup()` then `tick()` drive the same loop deterministically
(`settle()` waits for the run folder's queued writes).

The runner owns its run folder for its whole life (engine/lock.py): a second trainer on a live
folder is refused before it touches anything. Every write into the folder goes through the run's
Journal (engine/journal.py) on a writer thread: training never waits on the disk, and a failed
write (a full disk) is one warning per kind, retried, never the end of the run.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from engine import events as ev
from engine.checkpoint import CheckpointError, check_compatible, encode_checkpoint, load_training_checkpoint
from engine.config import SEED_LIMIT, ConfigError, TrainConfig
from engine.data import DatasetError, ImageData, load_dataset
from engine.devices import (
    configure_determinism,
    describe_failure,
    device_name,
    is_sticky_device_error,
    memory_reading,
    resolve_device,
    training_threads,
)
from engine.evaluator import QualityWorker
from engine.health import HealthMonitor
from engine.journal import Journal, WriteNote, append_text, describe_error
from engine.lock import RunLock, RunLocked
from engine.runs import (RunDir, RunError, export_target, log_line, log_record, parse_log_line, resolve_run,
                         write_grid_png)
from engine.schedule import Cadence
from engine.tensorboard import TensorBoardLogger, open_tensorboard
from engine.trainer import Trainer

Sink = Callable[[ev.Event], None]
_USER_ERRORS = (ConfigError, DatasetError, CheckpointError, RunError, RunLocked)
_QUALITY_DRAIN_S = 20.0  # at the end of a run, how long to wait for the last quality figures
_END_FLUSH_S = 30.0  # at the end of a run, how long to wait for the disk to take the queued writes
_DEVICE_STATS_EVERY_S = 5.0  # GPU memory readings travel with metrics records at most this often
_GRID_SHARE = 0.02  # most of the training thread's time that sample grids may take (they space out to keep it)


@dataclass(frozen=True)
class _Delivered:
    """An event from the quality worker, queued with the commands so a paused runner wakes for it."""

    event: ev.Event


class _Wake:
    """Queued with the commands when a write finished, so a paused runner applies the outcome at once."""


_WAKE = _Wake()


class QueueSink:
    """A sink that never blocks: events wait in an unbounded queue until a consumer takes them."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()

    def __call__(self, event: ev.Event) -> None:
        self.queue.put(event)

    def drain(self) -> list[ev.Event]:
        """Every event posted so far."""
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def wait_for(self, kind: type, timeout: float = 60.0) -> ev.Event:
        """Block until an event of `kind` arrives (events before it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind.__name__} within {timeout} s")
            event = self.queue.get(timeout=remaining)
            if isinstance(event, kind):
                return event


class Runner:
    """Runs one training run (new or resumed) and talks only through commands and events."""

    def __init__(
        self,
        cfg: TrainConfig,
        sink: Sink,
        runs_dir: Path | str = "runs",
        run_name: str | None = None,
        resume: str | None = None,
        data: ImageData | None = None,
        judge_cache: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self._sink = sink
        self._runs_dir = Path(runs_dir)
        self._run_name = run_name
        self._resume = resume
        self._data = data
        self._judge_cache = judge_cache
        # SimpleQueue: put() is safe from a signal handler, at any moment (setup, paused, a rollback).
        self._commands: queue.SimpleQueue[ev.Command | _Delivered | _Wake] = queue.SimpleQueue()
        self._written: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()  # journal outcomes
        self.journal: Journal | None = None
        self._lock: RunLock | None = None
        self._thread: threading.Thread | None = None
        self.trainer: Trainer | None = None
        self.run: RunDir | None = None
        self.state = ev.RunState.STARTING
        self.hparam_history: list[dict[str, Any]] = []
        self.health = HealthMonitor(cfg)
        self.quality: QualityWorker | None = None
        self.last_quality: ev.QualityMeasured | None = None
        self.tensorboard: TensorBoardLogger | None = None
        self._pending_steps = 0
        self._train_s = 0.0  # training wall time, pauses excluded (carried across resumes)
        self._interval_start = 0.0
        self._interval_images = 0
        self._last_fixed_step = -1
        self._last_fixed_grid: Any = None
        self._saved_step = -1
        self._saving_step = -1  # a checkpoint of this step is queued for the disk...
        self._saving_generation = -1  # ...holding the hyperparameters of this generation
        self._hp_generation = 0  # bumped by every hyperparameter change (a queued checkpoint may predate it)
        self._done = False
        # Side work by wall time with step bounds (engine/schedule.py); set up in setup() from the config.
        self._cadence = _cadences(cfg)

    # ------------------------------------------------------------------ API
    def start(self) -> threading.Thread:
        """Run the whole loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run_forever, name="gan-tui-trainer", daemon=True)
        self._thread.start()
        return self._thread

    def submit(self, command: ev.Command) -> None:
        """Queue a command; it is applied between steps. Never blocks; safe from a signal handler."""
        self._commands.put(command)

    def settle(self, timeout: float = 60.0) -> None:
        """Wait for the run folder's queued writes and apply their outcomes now (CheckpointSaved,
        SamplesExported, write warnings). The thread does this by itself; for tick()-driven use."""
        deadline = time.monotonic() + timeout  # a hung disk (a dead NFS server) must not hold a run's end for long
        for _ in range(4):  # an outcome may queue a follow-up write (a checkpoint's pruning)
            if self.journal is not None:
                self.journal.flush(max(0.0, deadline - time.monotonic()))
            self._take_written()
            if self.journal is None or not self.journal.queued:
                return

    def abandon(self) -> None:
        """Let go of the run folder without finishing, as a killed process would (tests, tools)."""
        self._done = True
        self._close_quality(wait=False)
        if self.journal is not None:
            self.journal.close()
        if self._lock is not None:
            self._lock.release()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def total_steps(self) -> int:
        """Where the run ends: cfg.steps, or cfg.epochs converted at the current batch size and d_steps."""
        if self.cfg.epochs > 0 and self.trainer is not None:
            per_step = self.cfg.batch_size * self.cfg.d_steps
            remaining = self.cfg.epochs * len(self.trainer.data.images) - self.trainer.images_seen
            return self.trainer.step + max(0, math.ceil(remaining / per_step))
        return self.cfg.steps

    @property
    def done(self) -> bool:
        """True once the run has ended (RunFinished posted, the folder's lock released)."""
        return self._done

    def fail(self, exc: BaseException) -> None:
        """End the run over an error raised outside tick() (a driver's own failure): events, no save."""
        if not self._done:
            self._fail(exc, save=False)

    def run_forever(self) -> None:
        """setup(), then tick() until done; every failure ends as events, never silently."""
        try:
            self.setup()
        except Exception as exc:  # noqa: BLE001 - reported to the user, not swallowed
            self._fail(exc, save=False)
            return
        try:
            while self.tick(block=True):
                pass
        except BaseException as exc:  # noqa: BLE001 - the last line of defence: the run still ends with events
            if not self._done:
                self._fail(exc, save=False)

    def setup(self) -> None:
        """Load data, build or restore the trainer, open the run folder, post RunStarted."""
        device = resolve_device(self.cfg.device)
        configure_determinism(self.cfg.deterministic)
        if device.type == "cpu":
            # This thread's team only (torch keeps the count per thread): the side threads set their own.
            torch.set_num_threads(training_threads(self.cfg.threads))
        resumed_payload = None
        checkpoint_hp: dict[str, Any] | None = None  # a resumed checkpoint's live hyperparameters
        skipped: list[str] = []
        # The folder's lock comes first: a second trainer on a live run must touch nothing of it.
        if self._resume:
            run = resolve_run(self._runs_dir, self._resume)
            self._lock = RunLock.acquire(run.path)
            self.run = run
            resumed_payload, _, skipped = _newest_intact_checkpoint(run)
        else:
            path = RunDir.path_for(self._runs_dir, self._run_name, self.cfg)
            self._lock = RunLock.acquire(path)
        data = self._data or load_dataset(self.cfg.dataset, self.cfg.data_root, self.cfg.seed)
        self.cfg = self.cfg.resolve_preset(data.num_classes)  # "auto" is saved resolved in config.json
        if resumed_payload is not None and self.run is not None:
            check_compatible(TrainConfig.from_dict(resumed_payload["config"]), self.cfg, self.run.path)
        self.trainer = Trainer(self.cfg, data, device)
        notes: list[str] = []
        if resumed_payload is not None and self.run is not None:
            notes = self.trainer.load_state_dict(resumed_payload["trainer"])
            self.hparam_history = list(resumed_payload["hparam_history"])
            self._train_s = float(resumed_payload.get("train_s", 0.0))
            self._open_journal()
            try:
                last = self.run.truncate_log(self.trainer.step)
            except Exception as exc:  # noqa: BLE001 - a full disk: the log keeps its later lines, the run goes on
                assert self.journal is not None
                self.journal.failed("metrics", exc, "metrics log (set back to the checkpoint)")
                last = self.trainer.step
            self._write_config()
            self._append(log_record("resumed", self.trainer.step, lost_steps=last - self.trainer.step))
            checkpoint_hp = TrainConfig.from_dict(resumed_payload["config"]).hyperparams()
            if checkpoint_hp == self.cfg.hyperparams():
                self._saved_step = self.trainer.step  # the file holds exactly this state: an error save must not replace it
        else:
            self.run = RunDir.create(self._runs_dir, path.name, self.cfg)
            self._open_journal()
            assert self.journal is not None
            self.journal.write(self.run.path / "fixed_noise.pt", _tensor_bytes(self.trainer.fixed_noise.cpu()), "config",
                               "fixed_noise.pt", retry=True)
        try:  # at once, not queued: from here on `ls` and a launcher see which process owns the run
            self.run.write_state(ev.RunState.STARTING.value, self.trainer.step)
        except Exception as exc:  # noqa: BLE001 - a full disk: said once, the run goes on
            assert self.journal is not None
            self.journal.failed("state", exc)
        self.tensorboard = open_tensorboard(self.cfg, self.run.path, lambda e: self._commands.put(_Delivered(e)))
        info = self.trainer.data.info
        self._emit(
            ev.RunStarted(
                run_dir=str(self.run.path),
                config=self.cfg.to_dict(),
                device=str(device),
                device_name=device_name(device, self.trainer.amp_dtype),
                dataset=info.describe(),
                dataset_note=info.note,
                step=self.trainer.step,
                total_steps=self.total_steps,
                resumed=resumed_payload is not None,
            )
        )
        if info.note:
            self._warn(info.note, "dataset")
        for problem in skipped:
            self._warn(f"{problem}; resumed from an older checkpoint instead", "resume")
        if resumed_payload is not None and last > self.trainer.step:
            self._warn(f"resumed at step {self.trainer.step}: {last - self.trainer.step} steps after the last checkpoint were lost", "resume")
        for note in notes:
            self._warn(note, "rng")
        if checkpoint_hp is not None and checkpoint_hp != self.cfg.hyperparams():
            # config.json (a change made after the checkpoint, whose record the log just set aside) or a
            # flag: the run goes on with these, and its history says so from the checkpoint's step.
            self._record_hyperparams(checkpoint_hp, self.cfg.hyperparams(), reason="resume")
        self._set_state(ev.RunState.RUNNING)
        self._cadence = _cadences(self.cfg, self.trainer.step)  # clocks start with training, not with loading
        self._post_fixed_samples()
        self._post_device_stats(force=True)
        if self.cfg.quality_every:
            self.quality = QualityWorker(self.trainer.data, device, self.cfg.quality_samples, self.cfg.latent_dim,
                                         self.cfg.seed, lambda e: self._commands.put(_Delivered(e)), self._judge_cache,
                                         share=self.cfg.quality_share, judge_share=self.cfg.judge_share)
            self.quality.start()

    def tick(self, block: bool = False) -> bool:
        """Apply pending commands, then run at most one step. False once the run is over."""
        if self._done:
            return False
        try:
            self._apply_commands(block)
            if self._done:
                return False
            if self.state == ev.RunState.RUNNING or self._pending_steps > 0:
                self._train_one()
        except Exception as exc:  # noqa: BLE001 - any failure becomes an event and a clean stop
            self._fail(exc, save=True)
            return False
        return not self._done

    # ------------------------------------------------------------ commands
    def _apply_commands(self, block: bool) -> None:
        commands: list[ev.Command | _Delivered | _Wake] = []
        if block and self.state == ev.RunState.PAUSED and self._pending_steps == 0:
            commands.append(self._commands.get())  # a paused runner sleeps here, not in a loop
        while True:
            try:
                commands.append(self._commands.get_nowait())
            except queue.Empty:
                break
        self._take_written()
        stop_at = next((i for i, c in enumerate(commands) if isinstance(c, ev.Stop)), None)
        if stop_at is not None:
            # What was sent before the Stop was acknowledged to its sender, so it still happens (a
            # learning-rate change reaches the final checkpoint); pausing and stepping are moot now,
            # as is everything sent after it, but the quality worker's results are still logged.
            for i, command in enumerate(commands):
                if isinstance(command, _Delivered) or (i < stop_at and not isinstance(command, (ev.Pause, ev.Resume, ev.Step))):
                    self._apply(command)
            stop = commands[stop_at]
            assert isinstance(stop, ev.Stop)
            self._finish(ev.RunState.STOPPED, "stopped by the user", save=stop.save)
            return
        for command in commands:
            self._apply(command)

    def _apply(self, command: ev.Command | _Delivered | _Wake) -> None:
        assert self.trainer is not None and self.run is not None
        if isinstance(command, _Wake):
            return
        if isinstance(command, _Delivered):
            self._on_quality_event(command.event)
        elif isinstance(command, ev.Pause):
            self._pause("paused by the user")
        elif isinstance(command, ev.Resume):
            if self.state == ev.RunState.PAUSED:
                self._start_interval()
                self._set_state(ev.RunState.RUNNING)
        elif isinstance(command, ev.Step):
            if self.state == ev.RunState.PAUSED:
                self._pending_steps += max(1, int(command.count))
        elif isinstance(command, ev.SetHyperparams):
            self._set_hyperparams(command.values)
        elif isinstance(command, ev.SaveCheckpoint):
            self._save("requested")
        elif isinstance(command, ev.ExportSamples):
            self._export(command.path)
        elif isinstance(command, ev.SampleFresh):
            self._sample_fresh(command.seed, command.digit, command.count)
        elif isinstance(command, ev.RollBack):
            self._roll_back(command.to, command.lr_scale)
        else:
            self._warn(f"unknown command {command!r} ignored", "command")

    def _set_hyperparams(self, values: dict[str, Any]) -> None:
        assert self.trainer is not None and self.run is not None
        try:
            new_cfg = self.cfg.with_hyperparams(**values)
        except (ConfigError, TypeError, ValueError, OverflowError) as exc:
            self._warn(f"hyperparameters not changed: {exc}", "hyperparams")
            return
        old, new = self.cfg.hyperparams(), new_cfg.hyperparams()
        if old == new:
            return
        self.cfg = new_cfg
        self.trainer.set_hyperparams(new_cfg)
        self._record_hyperparams(old, new)
        self._write_config()

    def _record_hyperparams(self, old: dict[str, Any], new: dict[str, Any], **fields: Any) -> None:
        """A change of the live hyperparameters, now in effect: history, log record, event."""
        assert self.trainer is not None
        self._saved_step = -1  # a checkpoint at this step would now hold other hyperparameters
        self._hp_generation += 1
        step = self.trainer.step
        self.hparam_history.append({"step": step, "old": old, "new": new, **fields})
        self._append(log_record("hparams", step, old=old, new=new, **fields))
        self._emit(ev.HyperparamsChanged(step, old, new))

    def _sample_fresh(self, seed: int | None, digit: int | None = None, count: int | None = None) -> None:
        assert self.trainer is not None
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT):
            self._warn(f"no fresh samples: seed must be a whole number from 0 to {SEED_LIMIT - 1}, got {seed!r}", "command")
            return
        try:
            images = self.trainer.sample(self.trainer.fresh_noise(seed, count), digit)
        except (RuntimeError, ValueError, OverflowError, TypeError) as exc:  # a class this run cannot draw, too
            self._warn(f"no fresh samples: {exc}", "command")
            return
        self._emit(ev.SamplesGenerated(self.trainer.step, images, fixed=False, digit=digit))

    # ------------------------------------------------------------- training
    def _train_one(self) -> None:
        trainer = self.trainer
        assert trainer is not None and self.run is not None
        if trainer.step >= self.total_steps:
            self._finish(ev.RunState.FINISHED, "reached the planned length", save=True)
            return
        if self._interval_start == 0.0 or self.state == ev.RunState.PAUSED:
            self._start_interval()  # a single step while paused is timed on its own
        trainer.train_step()
        self._interval_images += self.cfg.batch_size * self.cfg.d_steps
        if self._pending_steps > 0:
            self._pending_steps -= 1
        step, due = trainer.step, self._cadence
        paused_for_nan = False
        if due["log"].due(step) or self._pending_steps == 0 and self.state == ev.RunState.PAUSED:
            paused_for_nan = not self._log_metrics()
        if not paused_for_nan and due["grid"].due(step):
            self._post_fixed_samples()
        if not paused_for_nan and self.quality is not None and due["quality"].due(step) and (
            self.cfg.quality_share >= 1 or self.quality.accepting  # a busy or resting worker would drop the copy
        ):
            self.quality.submit(step, trainer.sampler)
            due["quality"].mark(step)
        if not paused_for_nan and due["checkpoint"].due(step):
            if self._log_metrics():  # never checkpoint weights that went non-finite
                self._save("periodic")

    def _log_metrics(self) -> bool:
        """Read the device stats, log and post them; pause and warn if they are not finite."""
        trainer = self.trainer
        assert trainer is not None and self.run is not None
        stats = trainer.read_stats()
        if stats is None:
            return True
        now = time.perf_counter()
        interval = now - self._interval_start
        self._train_s += interval
        rate = self._interval_images / interval if interval > 0 else 0.0
        self._start_interval()
        self._cadence["log"].mark(trainer.step)
        metrics = ev.MetricsLogged(
            step=trainer.step,
            epoch=trainer.epoch,
            d_loss=stats.d_loss,
            g_loss=stats.g_loss,
            d_real=stats.d_real,
            d_fake=stats.d_fake,
            grad_norm_g=stats.grad_norm_g,
            grad_norm_d=stats.grad_norm_d,
            lr_g=self.cfg.lr_g,
            lr_d=self.cfg.lr_d,
            images_per_s=rate,
            elapsed_s=self._train_s,
            amp_skipped=stats.skipped,
        )
        self._append({"type": "metrics", **dataclasses.asdict(metrics)})
        self._emit(metrics)
        self._post_device_stats(force=False)
        self._alarms(self.health.on_metrics(metrics))
        if not stats.finite:
            self._pause(f"non-finite loss or gradient before step {trainer.step}")
            return False
        return True

    def _post_fixed_samples(self) -> None:
        trainer = self.trainer
        assert trainer is not None and self.run is not None
        if trainer.device.type == "cuda":
            # sample() waits for the queued steps anyway; waiting first keeps them out of the grid's cost.
            torch.cuda.synchronize(trainer.device)
        start = time.perf_counter()
        images = trainer.sample()
        cost = time.perf_counter() - start
        step, path = trainer.step, self.run.grid_path(trainer.step)
        self._write("samples", lambda: write_grid_png(path, images), f"sample grid at step {step}")
        self._last_fixed_step, self._last_fixed_grid = trainer.step, images
        self._cadence["grid"].mark(trainer.step, cost)
        self._emit(ev.SamplesGenerated(trainer.step, images, fixed=True, path=str(path)))

    # ------------------------------------------------------- saving/exports
    def _save(self, reason: str) -> bool:
        """Queue a checkpoint for the disk; CheckpointSaved follows once it is written. A failure (a
        full disk) is a warning from the journal, and the older checkpoints stay intact."""
        trainer = self.trainer
        if trainer is None or self.run is None or self.journal is None:
            return False
        step = trainer.step
        path = self.run.checkpoint_path(step)
        if self._saving_step == step and self._saving_generation == self._hp_generation:
            if reason not in ("final", "stop", "error"):
                return True  # already on its way to the disk; its CheckpointSaved will come
            self.settle()  # the run is ending: let the queued one land, then it serves as this save too
        if self._saved_step == step and path.is_file():
            self._emit(ev.CheckpointSaved(step, str(path), reason))  # nothing changed since
            return True
        payload = {
            "config": self.cfg.to_dict(),
            "trainer": trainer.state_dict(),
            "hparam_history": self.hparam_history,
            "train_s": self._train_s,
        }
        what = f"checkpoint at step {step}"
        try:
            data = encode_checkpoint(payload)  # in memory, now: the live tensors change with the next step
        except Exception as exc:  # noqa: BLE001 - torch.save raises RuntimeError as well as OSError
            self.journal.failed("checkpoint", exc, what)
            self._take_written()
            return False
        self._saving_step = step
        self._saving_generation = generation = self._hp_generation
        self.journal.write(path, data, "checkpoint", what,
                           done=self._later(lambda ok, _e: self._checkpoint_written(step, path, reason, generation, ok)))
        self._cadence["checkpoint"].mark(step)
        if self.quality is not None and reason != "error" and (self.last_quality is None or self.last_quality.step != step):
            # The copy is made now, with the weights this checkpoint holds: by the time the file has
            # landed, training has moved on (its measurement is filed under this step).
            self.quality.submit(step, trainer.sampler, keep=True)
        return True

    def _checkpoint_written(self, step: int, path: Path, reason: str, generation: int, ok: bool) -> None:
        if self._saving_step == step:
            self._saving_step = -1
        if not ok or self.run is None:
            return  # the journal warned (once); the older checkpoints are intact
        if generation == self._hp_generation:
            self._saved_step = step
        if self.last_quality is not None and self.last_quality.step == step:  # measured before the file existed
            self._record_quality(step, _quality_record(self.last_quality))
        run, keep = self.run, self.cfg.keep_checkpoints
        self._write("checkpoint", lambda: run.prune_checkpoints(keep), "pruning old checkpoints")
        self._emit(ev.CheckpointSaved(step, str(path), reason))

    def _record_quality(self, step: int, record: dict[str, Any]) -> None:
        run = self.run
        assert run is not None
        self._write("quality", lambda: run.record_checkpoint_quality(step, record), f"quality of the checkpoint at step {step}",
                    retry=True)

    def _export(self, target: str) -> None:
        trainer = self.trainer
        assert trainer is not None and self.run is not None
        try:
            path = export_target(self.run, target, f"samples_step_{trainer.step:08d}.png")
        except RunError as exc:
            self._warn(f"samples NOT exported: {exc}", "export")
            return
        if self._last_fixed_step != trainer.step:
            self._post_fixed_samples()
        step, images = trainer.step, self._last_fixed_grid

        def exported(ok: bool, _error: BaseException | None) -> None:
            if ok:
                self._emit(ev.SamplesExported(step, str(path)))

        self._write("export", lambda: write_grid_png(path, images), f"samples export {path.name}", self._later(exported))

    # ---------------------------------------------------------- quality/health
    def _on_quality_event(self, event: ev.Event) -> None:
        assert self.run is not None
        if isinstance(event, ev.QualityMeasured):
            self.last_quality = event
            self._append(log_record("quality", event.step, **_quality_record(event)))
            if event.step in (self._saved_step, self._saving_step) or self.run.checkpoint_path(event.step).is_file():
                self._record_quality(event.step, _quality_record(event))
            self._emit(event)
            self._alarms(self.health.on_quality(event))
        elif isinstance(event, ev.JudgeReady):
            self._append(log_record("judge", 0, accuracy=event.accuracy, held_out=event.held_out,
                                 source=event.source, n=event.n, fd_floor=event.fd_floor))
            self._emit(event)
        elif isinstance(event, ev.WarningRaised):
            self._warn(event.message, event.kind)
        elif isinstance(event, ev.JudgeProgress):
            self._emit(event)

    def _alarms(self, changes: list[ev.AlarmRaised | ev.AlarmCleared]) -> None:
        assert self.run is not None
        for change in changes:
            if isinstance(change, ev.AlarmRaised):
                self._append(log_record("alarm", change.step, kind=change.kind, message=change.message))
            else:
                self._append(log_record("alarm_cleared", change.step, kind=change.kind))
            self._emit(change)

    # --------------------------------------------------------------- rollback
    def _roll_back(self, target: str, lr_scale: float) -> None:
        """Restore a checkpoint's nets, optimizers, RNG and hyperparameters in place, all or nothing;
        later records and checkpoints are set aside. lr_scale != 1 then scales the learning rates."""
        trainer = self.trainer
        assert trainer is not None and self.run is not None
        self.settle()  # checkpoints queued so far are on disk and pruned: the choice below sees them all
        try:
            path = self.run.find_checkpoint(target, up_to_step=trainer.step)
            payload, saved_cfg = load_training_checkpoint(path)
            check_compatible(saved_cfg, self.cfg, self.run.path)
            restored_cfg = self.cfg.with_hyperparams(**saved_cfg.hyperparams())
            history = list(payload["hparam_history"])
            train_s = float(payload.get("train_s", 0.0))
            if lr_scale != 1.0:  # checked now, so a scale that cannot apply refuses the whole rollback
                restored_cfg.with_hyperparams(lr_g=restored_cfg.lr_g * lr_scale, lr_d=restored_cfg.lr_d * lr_scale)
        except (RunError, CheckpointError, ConfigError, TypeError, ValueError, OverflowError) as exc:
            self._warn(f"not rolled back: {exc}", "rollback")
            return
        backup = copy.deepcopy(trainer.state_dict())
        live_cfg = self.cfg
        try:
            trainer.set_hyperparams(restored_cfg)
            notes = trainer.load_state_dict(payload["trainer"])
        except Exception as exc:  # noqa: BLE001 - a checkpoint that loads but does not fit: undo, go on unchanged
            trainer.set_hyperparams(live_cfg)
            trainer.load_state_dict(backup)
            self._warn(f"not rolled back: checkpoint {path} does not fit this run ({describe_error(exc)}); nothing changed", "rollback")
            return
        was_nonfinite = "nonfinite" in self.health.active
        from_step = int(backup["step"])
        old_hp, new_hp = live_cfg.hyperparams(), restored_cfg.hyperparams()
        self.cfg = restored_cfg
        self.hparam_history = history
        self._train_s = train_s
        for note in notes:
            self._warn(note, "rng")
        for cadence in self._cadence.values():
            cadence.mark(trainer.step)
        self._pending_steps = 0
        if self.quality is not None:
            self.quality.invalidate()
        self.last_quality = None
        step = trainer.step
        assert self.journal is not None
        # Lines a full disk kept waiting describe the steps thrown away too: they must not land after this.
        self.journal.drop_unwritten(self.run.metrics_path, lambda line: (parse_log_line(line) or {}).get("step", 0) <= step)
        try:
            self.run.truncate_log(trainer.step)
            self.run.abandon_checkpoints_after(trainer.step)
        except Exception as exc:  # noqa: BLE001 - a full disk: the rollback itself stands
            self._warn(f"rolled back, but the log and newer checkpoints could not be set aside: {describe_error(exc)}", "rollback")
        self._append(log_record("rollback", trainer.step, from_step=from_step, path=str(path), hyperparams=new_hp))
        self._saved_step = trainer.step
        self._hp_generation += 1
        self._alarms(self.health.clear_all(trainer.step))
        self._emit(ev.RolledBack(from_step, trainer.step, str(path), self.cfg.lr_g, self.cfg.lr_d,
                                 hyperparams=new_hp, replaced=old_hp if old_hp != new_hp else {}))
        if old_hp != new_hp:
            self._append(log_record("hparams", trainer.step, old=old_hp, new=new_hp, reason="rollback"))
            self._write_config()
            self._emit(ev.HyperparamsChanged(trainer.step, old_hp, new_hp))
        if lr_scale != 1.0:
            self._set_hyperparams({"lr_g": self.cfg.lr_g * lr_scale, "lr_d": self.cfg.lr_d * lr_scale})
        self._start_interval()
        self._post_fixed_samples()
        if was_nonfinite and self.state == ev.RunState.PAUSED:
            self._set_state(ev.RunState.RUNNING, f"rolled back to step {trainer.step}")

    # ---------------------------------------------------------- state/events
    def _pause(self, reason: str) -> None:
        if self.state == ev.RunState.RUNNING:
            self._log_metrics_quietly()  # close the interval so pauses never count as training time
            if self.state == ev.RunState.RUNNING:
                self._set_state(ev.RunState.PAUSED, reason)
        self._pending_steps = 0

    def _finish(self, state: ev.RunState, reason: str, save: bool) -> None:
        if self.trainer is not None:
            self._log_metrics_quietly()
            if self._last_fixed_step != self.trainer.step:  # grids go by time: the run's last one shows where it ended
                self._quietly("drawing the last samples", self._post_fixed_samples)
            if save:
                self._save("final" if state == ev.RunState.FINISHED else "stop")
        self.settle()  # the final checkpoint is on disk (or its failure known) before the run says so
        self._close_quality(wait=save)
        self._set_state(state, reason)
        self._end(state)

    def _end(self, state: ev.RunState) -> None:
        """The last act of every run: writes settled, state.json true (or said not to be), the folder
        released, RunFinished posted. Never raises."""
        step = self._step()
        try:
            self.settle(_END_FLUSH_S)
            if self.journal is not None and "state" in self.journal.failing and self.run is not None:
                try:
                    self.run.write_state(state.value, step)  # one last try, so `ls` tells the truth
                except Exception as exc:  # noqa: BLE001 - said in the event stream instead
                    self._emit(ev.WarningRaised(step, f"state.json could not be written ({describe_error(exc)}); "
                                                      f"`gan-tui ls` may show this run as interrupted, it is {state.value}",
                                                "disk:state"))
            if self.journal is not None and not self.journal.close(timeout=_END_FLUSH_S):
                self._emit(ev.WarningRaised(step, f"the disk did not take the run's last writes within {_END_FLUSH_S:.0f} s; "
                                                  "they may be missing", "disk:end"))
        except Exception:  # noqa: BLE001 - nothing may stop the final event
            traceback.print_exc()
        finally:
            finished = ev.RunFinished(step, state, str(self.run.path) if self.run else "")
            if self.tensorboard is not None:
                try:  # its last writes land while the folder is still this run's
                    self.tensorboard(finished)
                    self.tensorboard.close()
                except Exception:  # noqa: BLE001 - nothing may stop the final event
                    traceback.print_exc()
            if self._lock is not None:
                self._lock.release()
            self._done = True
            self._emit(finished)  # the closed TensorBoard logger ignores it

    def _close_quality(self, wait: bool) -> None:
        """Let measurements under way land (a final checkpoint's quality), then end the worker."""
        if self.quality is None:
            return
        if wait and self.quality.ready:
            self.quality.wait_idle(_QUALITY_DRAIN_S)
            while True:
                try:
                    item = self._commands.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Delivered):
                    self._on_quality_event(item.event)
        self.quality.close()

    def _log_metrics_quietly(self) -> None:
        # A final partial interval still belongs in the log; its finiteness only matters for saving.
        if self.trainer is not None and self.trainer.unread_steps:
            self._log_metrics()

    def _fail(self, exc: BaseException, save: bool) -> None:
        """Report a failure and end the run. Never raises: each part that fails again (a full disk, a
        broken device) becomes a warning and the rest still happens."""
        step = self._step()
        # A poisoned CUDA context raises again on any device call: no save, no finiteness check. A
        # failure inside a step (out of memory after D's update, say) leaves nets, optimizers and
        # RNG part-way through it: saved, that state would pass for step `step` and resume wrong.
        torn = self.trainer is not None and self.trainer.mid_step
        save = save and not is_sticky_device_error(exc) and not torn
        newest = None
        if torn and self.run is not None:
            self._quietly("writing the run folder", self.settle)  # a checkpoint on its way counts
            newest = self.run.latest_checkpoint()
        explained = ""
        try:
            explained = describe_failure(exc, self.cfg.batch_size, resumable=not torn or newest is not None) or ""
        except Exception:  # noqa: BLE001 - the plain message below still says what happened
            pass
        if explained and torn and newest is not None:
            explained += f" (it failed inside step {step + 1}, so the newest checkpoint, {newest.name}, is where it resumes from)"
        if explained and save and self.trainer is not None:
            # Out of memory: the weights are fine, so the checkpoint comes first and the message says where.
            self._save_after_failure()
            self._quietly("writing the checkpoint", self.settle)  # on disk before the message says so
            saved = self.run is not None and self.run.checkpoint_path(step).is_file()
            save = False
            explained += f" (checkpoint at step {step} saved)" if saved else " (no checkpoint could be saved)"
        text = "".join(traceback.format_exception(exc))
        where = ""
        if self.run is not None and self._lock is not None:  # never write into a folder this runner does not own
            try:
                append_text(self.run.error_path, f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} step {step}\n{text}\n")
                where = str(self.run.error_path)
            except Exception:  # noqa: BLE001 - the traceback still goes out in the event
                pass
        # Errors the user can fix (a wrong path, a damaged checkpoint) read best without a type name.
        message = str(exc) if isinstance(exc, _USER_ERRORS) else f"{type(exc).__name__}: {exc}"
        self._emit(ev.ErrorRaised(step, explained or message, text, where))
        if save and self.trainer is not None:
            self._save_after_failure()
        self._quietly("writing the run folder", self.settle)
        self._quietly("stopping the quality worker", lambda: self._close_quality(wait=False))
        self._quietly("recording the failure", lambda: self._set_state(ev.RunState.FAILED, str(exc)))
        self._end(ev.RunState.FAILED)

    def _quietly(self, what: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - the failure path goes on whatever fails inside it
            self._emit(ev.WarningRaised(self._step(), f"{what} failed too: {describe_error(exc)}", "error"))

    def _save_after_failure(self) -> str:
        """The 'error' checkpoint if the weights are finite; never raises (the final events must follow)."""
        try:
            if self.trainer is not None and _weights_finite(self.trainer) and self._save("error"):
                return str(self.run.checkpoint_path(self.trainer.step)) if self.run else ""
        except Exception as exc:  # noqa: BLE001 - a second failure while failing is reported, not raised
            self._warn(f"no checkpoint after the error: {type(exc).__name__}: {exc}", "checkpoint")
        return ""

    def _post_device_stats(self, force: bool) -> None:
        """GPU name and memory, so every viewer (attached ones too) can show them; nothing on the CPU."""
        assert self.trainer is not None
        if not (force or self._cadence["device"].due(self.trainer.step)):
            return
        reading = memory_reading(self.trainer.device)
        if reading is None:
            return
        self._cadence["device"].mark(self.trainer.step)
        trainer = self.trainer
        self._emit(ev.DeviceStats(trainer.step, str(trainer.device), device_name(trainer.device, trainer.amp_dtype),
                                  reading.allocated_mb, reading.reserved_mb, reading.total_mb, reading.peak_mb))

    def _set_state(self, state: ev.RunState, reason: str = "") -> None:
        self.state = state
        if self.run is not None:
            run, value, step = self.run, state.value, self._step()
            self._write("state", lambda: run.write_state(value, step), retry=True)
        self._emit(ev.StateChanged(state, self._step(), reason))

    def _warn(self, message: str, kind: str) -> None:
        step = self._step()
        self._append(log_record("warning", step, kind=kind, message=message))
        self._emit(ev.WarningRaised(step, message, kind))

    def _emit(self, event: ev.Event) -> None:
        if self.tensorboard is not None:
            self.tensorboard(event)  # only queues; the log is written on the logger's thread
        try:
            self._sink(event)
        except Exception:  # noqa: BLE001 - a broken consumer must never stop training
            traceback.print_exc()

    def _start_interval(self) -> None:
        self._interval_start = time.perf_counter()
        self._interval_images = 0

    def _step(self) -> int:
        return self.trainer.step if self.trainer is not None else 0

    # ------------------------------------------------------------- the journal
    def _open_journal(self) -> None:
        self.journal = Journal(on_note=lambda note: self._later_call(lambda: self._on_write_note(note)))

    def _on_write_note(self, note: WriteNote) -> None:
        # Logged through the journal too: a metrics failure keeps the line and writes it once there is room.
        self._warn(note.message, note.warning_kind)

    def _append(self, record: dict[str, Any]) -> None:
        """One line into metrics.jsonl, through the writer thread."""
        if self.journal is not None and self.run is not None:
            self.journal.append(self.run.metrics_path, log_line(record), "metrics")

    def _write(self, kind: str, action: Callable[[], Any], what: str = "",
               done: Callable[[bool, BaseException | None], None] | None = None, retry: bool = False) -> None:
        if self.journal is not None:
            self.journal.call(kind, action, what, done, retry)

    def _write_config(self) -> None:
        assert self.run is not None
        run, cfg = self.run, self.cfg
        self._write("config", lambda: run.write_config(cfg), retry=True)

    def _later(self, done: Callable[[bool, BaseException | None], None]) -> Callable[[bool, BaseException | None], None]:
        """A journal callback (writer thread) turned into work for the training thread."""
        return lambda ok, error: self._later_call(lambda: done(ok, error))

    def _later_call(self, action: Callable[[], None]) -> None:
        self._written.put(action)
        self._commands.put(_WAKE)  # a paused runner wakes and applies it at once

    def _take_written(self) -> None:
        while True:
            try:
                action = self._written.get_nowait()
            except queue.Empty:
                return
            action()


def _newest_intact_checkpoint(run: RunDir) -> tuple[dict[str, Any], TrainConfig, list[str]]:
    """The newest checkpoint that loads and validates, with a note for every newer one skipped."""
    found = run.checkpoints()
    if not found:
        raise CheckpointError(f"run {run.path} has no checkpoint to resume from")
    skipped: list[str] = []
    for _step, path in reversed(found):
        try:
            payload, cfg = load_training_checkpoint(path)
        except CheckpointError as exc:
            skipped.append(str(exc))
            continue
        return payload, cfg, skipped
    raise CheckpointError(f"run {run.path} has no intact checkpoint to resume from: {skipped[0]}"
                          + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    return buffer.getvalue()



def _quality_record(q: ev.QualityMeasured) -> dict[str, Any]:
    fields = dataclasses.asdict(q)
    del fields["step"]
    fields["class_hist"] = list(q.class_hist)
    return fields


def _cadences(cfg: TrainConfig, step: int = 0) -> dict[str, Cadence]:
    """Each kind of side work's timetable: wall time with step bounds, or plain step counts (seconds 0)."""
    cadences = {
        "log": Cadence(cfg.log_every, cfg.log_every_s),
        "grid": Cadence(cfg.sample_every, cfg.sample_every_s, share=_GRID_SHARE),
        "checkpoint": Cadence(cfg.checkpoint_every, cfg.checkpoint_every_s),
        # The step bound only: quality's time rule is the worker's share of the machine (see `accepting`).
        "quality": Cadence(cfg.quality_every, 0.0 if cfg.quality_share >= 1 else 1e-9),
        "device": Cadence(1, _DEVICE_STATS_EVERY_S),
    }
    for cadence in cadences.values():
        cadence.mark(step)
    return cadences


def _weights_finite(trainer: Trainer) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in (trainer.G, trainer.D) for p in m.parameters())
