"""The training worker: a thread that steps the trainer, applies commands between steps, posts events.

    runner = Runner(cfg, sink=print)
    runner.start()
    runner.submit(Pause())
    ...
    runner.submit(Stop())
    runner.join()

Commands are applied only between steps; a Stop among them wins. A paused runner blocks on its
command queue (no sleep loop). Events go to `sink`, which is called on the training thread and
must not block: the dashboard posts a Textual message, tests use a QueueSink. An exception in
training becomes an ErrorRaised event, a checkpoint (when the weights are still finite) and a
clean stop. For tests and tools that want no thread, `setup()` then `tick()` drive the same loop
deterministically.
"""

from __future__ import annotations

import dataclasses
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
from engine.checkpoint import CheckpointError, check_compatible, load_checkpoint, save_checkpoint
from engine.config import ConfigError, TrainConfig
from engine.data import DatasetError, ImageData, load_dataset
from engine.evaluator import QualityWorker
from engine.health import HealthMonitor
from engine.runs import RunDir, RunError, resolve_run, write_grid_png
from engine.trainer import Trainer, resolve_device

Sink = Callable[[ev.Event], None]
_USER_ERRORS = (ConfigError, DatasetError, CheckpointError, RunError)
_QUALITY_DRAIN_S = 20.0  # at the end of a run, how long to wait for the last quality figures


@dataclass(frozen=True)
class _Delivered:
    """An event from the quality worker, queued with the commands so a paused runner wakes for it."""

    event: ev.Event


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
        self._commands: queue.SimpleQueue[ev.Command | _Delivered] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.trainer: Trainer | None = None
        self.run: RunDir | None = None
        self.state = ev.RunState.STARTING
        self.hparam_history: list[dict[str, Any]] = []
        self.health = HealthMonitor(cfg)
        self.quality: QualityWorker | None = None
        self.last_quality: ev.QualityMeasured | None = None
        self._pending_steps = 0
        self._train_s = 0.0  # training wall time, pauses excluded (carried across resumes)
        self._interval_start = 0.0
        self._interval_images = 0
        self._last_fixed_step = -1
        self._last_fixed_grid: Any = None
        self._saved_step = -1
        self._done = False

    # ------------------------------------------------------------------ API
    def start(self) -> threading.Thread:
        """Run the whole loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run_forever, name="gan-tui-trainer", daemon=True)
        self._thread.start()
        return self._thread

    def submit(self, command: ev.Command) -> None:
        """Queue a command; it is applied between steps. Never blocks."""
        self._commands.put(command)

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

    def run_forever(self) -> None:
        """setup(), then tick() until done; every failure ends as events, never silently."""
        try:
            self.setup()
        except Exception as exc:  # noqa: BLE001 - reported to the user, not swallowed
            self._fail(exc, save=False)
            return
        while self.tick(block=True):
            pass

    def setup(self) -> None:
        """Load data, build or restore the trainer, open the run folder, post RunStarted."""
        device = resolve_device(self.cfg.device)
        resumed_payload = None
        if self._resume:
            self.run = resolve_run(self._runs_dir, self._resume)
            ckpt = self.run.latest_checkpoint()
            if ckpt is None:
                raise CheckpointError(f"run {self.run.path} has no checkpoint to resume from")
            resumed_payload = load_checkpoint(ckpt)
        data = self._data or load_dataset(self.cfg.dataset, self.cfg.data_root, self.cfg.seed)
        self.cfg = self.cfg.resolve_preset(data.num_classes)  # "auto" is saved resolved in config.json
        if resumed_payload is not None and self.run is not None:
            check_compatible(TrainConfig.from_dict(resumed_payload["config"]), self.cfg, self.run.path)
        self.trainer = Trainer(self.cfg, data, device)
        if resumed_payload is not None and self.run is not None:
            self.trainer.load_state_dict(resumed_payload["trainer"])
            self.hparam_history = list(resumed_payload["hparam_history"])
            self._train_s = float(resumed_payload.get("train_s", 0.0))
            last = self.run.truncate_log(self.trainer.step)
            self.cfg.save(self.run.config_path)
            self.run.append_log(_record("resumed", self.trainer.step, lost_steps=last - self.trainer.step))
            if last > self.trainer.step:
                self._warn(f"resumed at step {self.trainer.step}: {last - self.trainer.step} steps after the last checkpoint were lost", "resume")
        else:
            self.run = RunDir.create(self._runs_dir, self._run_name, self.cfg)
            torch.save(self.trainer.fixed_noise.cpu(), self.run.path / "fixed_noise.pt")
        info = self.trainer.data.info
        self._emit(
            ev.RunStarted(
                run_dir=str(self.run.path),
                config=self.cfg.to_dict(),
                device=str(device),
                device_name=_device_name(device),
                dataset=info.describe(),
                dataset_note=info.note,
                step=self.trainer.step,
                total_steps=self.total_steps,
                resumed=resumed_payload is not None,
            )
        )
        if info.note:
            self._warn(info.note, "dataset")
        self._set_state(ev.RunState.RUNNING)
        self._post_fixed_samples()
        if self.cfg.quality_every:
            self.quality = QualityWorker(self.trainer.data, device, self.cfg.quality_samples, self.cfg.latent_dim,
                                         self.cfg.seed, lambda e: self._commands.put(_Delivered(e)), self._judge_cache)
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
        commands: list[ev.Command | _Delivered] = []
        if block and self.state == ev.RunState.PAUSED and self._pending_steps == 0:
            commands.append(self._commands.get())  # a paused runner sleeps here, not in a loop
        while True:
            try:
                commands.append(self._commands.get_nowait())
            except queue.Empty:
                break
        if any(isinstance(c, ev.Stop) for c in commands):
            stop = next(c for c in commands if isinstance(c, ev.Stop))
            self._finish(ev.RunState.STOPPED, "stopped by the user", save=stop.save)
            return
        for command in commands:
            self._apply(command)

    def _apply(self, command: ev.Command | _Delivered) -> None:
        assert self.trainer is not None and self.run is not None
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
            try:
                images = self.trainer.sample(self.trainer.fresh_noise(command.seed, command.count), command.digit)
            except ValueError as exc:  # a class this run cannot draw
                self._warn(f"no samples drawn: {exc}", "samples")
                return
            self._emit(ev.SamplesGenerated(self.trainer.step, images, fixed=False, digit=command.digit))
        elif isinstance(command, ev.RollBack):
            self._roll_back(command.to, command.lr_scale)
        else:
            self._warn(f"unknown command {command!r} ignored", "command")

    def _set_hyperparams(self, values: dict[str, Any]) -> None:
        assert self.trainer is not None and self.run is not None
        try:
            new_cfg = self.cfg.with_hyperparams(**values)
        except (ConfigError, TypeError) as exc:
            self._warn(f"hyperparameters not changed: {exc}", "hyperparams")
            return
        old, new = self.cfg.hyperparams(), new_cfg.hyperparams()
        if old == new:
            return
        self.cfg = new_cfg
        self.trainer.set_hyperparams(new_cfg)
        self._saved_step = -1  # a checkpoint at this step would now hold other hyperparameters
        step = self.trainer.step
        entry = {"step": step, "old": old, "new": new}
        self.hparam_history.append(entry)
        self.run.append_log(_record("hparams", step, old=old, new=new))
        self.cfg.save(self.run.config_path)
        self._emit(ev.HyperparamsChanged(step, old, new))

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
        step, cfg = trainer.step, self.cfg
        paused_for_nan = False
        if step % cfg.log_every == 0 or self._pending_steps == 0 and self.state == ev.RunState.PAUSED:
            paused_for_nan = not self._log_metrics()
        if not paused_for_nan and step % cfg.sample_every == 0:
            self._post_fixed_samples()
        if not paused_for_nan and self.quality is not None and step % cfg.quality_every == 0:
            self.quality.submit(step, trainer.sampler)
        if not paused_for_nan and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
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
        )
        self.run.append_log({"type": "metrics", **dataclasses.asdict(metrics)})
        self._emit(metrics)
        self._alarms(self.health.on_metrics(metrics))
        if not stats.finite:
            self._pause(f"non-finite loss or gradient before step {trainer.step}")
            return False
        return True

    def _post_fixed_samples(self) -> None:
        trainer = self.trainer
        assert trainer is not None and self.run is not None
        images = trainer.sample()
        path = self.run.save_grid(trainer.step, images)
        self._last_fixed_step, self._last_fixed_grid = trainer.step, images
        self._emit(ev.SamplesGenerated(trainer.step, images, fixed=True, path=str(path)))

    # ------------------------------------------------------- saving/exports
    def _save(self, reason: str) -> bool:
        """Write a checkpoint; a failure (full disk) is a warning, the old checkpoints stay."""
        trainer = self.trainer
        if trainer is None or self.run is None:
            return False
        path = self.run.checkpoint_path(trainer.step)
        if self._saved_step == trainer.step and path.is_file():
            self._emit(ev.CheckpointSaved(trainer.step, str(path), reason))  # nothing changed since
            return True
        payload = {
            "config": self.cfg.to_dict(),
            "trainer": trainer.state_dict(),
            "hparam_history": self.hparam_history,
            "train_s": self._train_s,
        }
        try:
            save_checkpoint(path, payload)
        except OSError as exc:
            self._warn(f"checkpoint at step {trainer.step} NOT saved: {exc.strerror or exc} ({path.parent})", "checkpoint")
            return False
        self._saved_step = trainer.step
        self._remember_quality(trainer.step)
        self.run.prune_checkpoints(self.cfg.keep_checkpoints)
        self._emit(ev.CheckpointSaved(trainer.step, str(path), reason))
        return True

    def _remember_quality(self, step: int) -> None:
        """Give the checkpoint at `step` its quality: now if measured, else when the measurement lands."""
        assert self.trainer is not None and self.run is not None
        if self.last_quality is not None and self.last_quality.step == step:
            try:
                self.run.record_checkpoint_quality(step, _quality_record(self.last_quality))
            except OSError:
                pass  # the checkpoint is saved; only "roll back to best" will not know its figure
        elif self.quality is not None:
            self.quality.submit(step, self.trainer.sampler, keep=True)

    def _export(self, target: str) -> None:
        trainer = self.trainer
        assert trainer is not None and self.run is not None
        if self._last_fixed_step != trainer.step:
            self._post_fixed_samples()
        path = Path(target) if target else self.run.exports_dir / f"samples_step_{trainer.step:08d}.png"
        try:
            write_grid_png(path, self._last_fixed_grid)
        except (OSError, ValueError) as exc:
            self._warn(f"samples NOT exported to {path}: {exc}", "export")
            return
        self._emit(ev.SamplesExported(trainer.step, str(path)))

    # ---------------------------------------------------------- quality/health
    def _on_quality_event(self, event: ev.Event) -> None:
        assert self.run is not None
        if isinstance(event, ev.QualityMeasured):
            self.last_quality = event
            self._log_quietly(_record("quality", event.step, **_quality_record(event)))
            if self.run.checkpoint_path(event.step).is_file():
                try:
                    self.run.record_checkpoint_quality(event.step, _quality_record(event))
                except OSError:
                    pass  # the figure is still in the log and on screen
            self._emit(event)
            self._alarms(self.health.on_quality(event))
        elif isinstance(event, ev.JudgeReady):
            self._log_quietly(_record("judge", 0, accuracy=event.accuracy, held_out=event.held_out,
                                      source=event.source, n=event.n, fd_floor=event.fd_floor))
            self._emit(event)
        elif isinstance(event, ev.WarningRaised):
            self._warn(event.message, event.kind)

    def _alarms(self, changes: list[ev.AlarmRaised | ev.AlarmCleared]) -> None:
        assert self.run is not None
        for change in changes:
            if isinstance(change, ev.AlarmRaised):
                self._log_quietly(_record("alarm", change.step, kind=change.kind, message=change.message))
            else:
                self._log_quietly(_record("alarm_cleared", change.step, kind=change.kind))
            self._emit(change)

    def _log_quietly(self, record: dict[str, Any]) -> None:
        # A full disk must not end a run over a log line; the event still reaches every screen.
        assert self.run is not None
        try:
            self.run.append_log(record)
        except OSError:
            pass

    # --------------------------------------------------------------- rollback
    def _roll_back(self, target: str, lr_scale: float) -> None:
        """Restore a checkpoint's nets, optimizers and RNG in place; later records and checkpoints are set aside."""
        trainer = self.trainer
        assert trainer is not None and self.run is not None
        try:
            path = self.run.find_checkpoint(target, up_to_step=trainer.step)
            payload = load_checkpoint(path)
            check_compatible(TrainConfig.from_dict(payload["config"]), self.cfg, self.run.path)
        except (RunError, CheckpointError, ConfigError) as exc:
            self._warn(f"not rolled back: {exc}", "rollback")
            return
        was_nonfinite = "nonfinite" in self.health.active
        from_step = trainer.step
        trainer.load_state_dict(payload["trainer"])  # keeps the current live hyperparameters
        self.hparam_history = list(payload["hparam_history"])
        self._train_s = float(payload.get("train_s", 0.0))
        self._pending_steps = 0
        if self.quality is not None:
            self.quality.invalidate()
        self.last_quality = None
        try:
            self.run.truncate_log(trainer.step)
            self.run.abandon_checkpoints_after(trainer.step)
        except OSError as exc:
            self._warn(f"rolled back, but the log and newer checkpoints could not be set aside: {exc}", "rollback")
        self._log_quietly(_record("rollback", trainer.step, from_step=from_step, path=str(path)))
        self._saved_step = trainer.step
        self._alarms(self.health.clear_all(trainer.step))
        self._emit(ev.RolledBack(from_step, trainer.step, str(path), self.cfg.lr_g, self.cfg.lr_d))
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
            if save:
                self._save("final" if state == ev.RunState.FINISHED else "stop")
        self._close_quality(wait=save)
        self._set_state(state, reason)
        self._done = True
        step = self.trainer.step if self.trainer else 0
        self._emit(ev.RunFinished(step, state, str(self.run.path) if self.run else ""))

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
        text = "".join(traceback.format_exception(exc))
        where = ""
        if self.run is not None:
            try:
                with self.run.error_path.open("a") as f:
                    f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} step {self.trainer.step if self.trainer else 0}\n{text}\n")
                where = str(self.run.error_path)
            except OSError:
                pass
        step = self.trainer.step if self.trainer else 0
        # Errors the user can fix (a wrong path, a damaged checkpoint) read best without a type name.
        message = str(exc) if isinstance(exc, _USER_ERRORS) else f"{type(exc).__name__}: {exc}"
        self._emit(ev.ErrorRaised(step, message, text, where))
        if save and self.trainer is not None and _weights_finite(self.trainer):
            self._save("error")
        self._close_quality(wait=False)
        self._set_state(ev.RunState.FAILED, str(exc))
        self._done = True
        self._emit(ev.RunFinished(step, ev.RunState.FAILED, str(self.run.path) if self.run else ""))

    def _set_state(self, state: ev.RunState, reason: str = "") -> None:
        self.state = state
        if self.run is not None:
            try:
                self.run.write_state(state.value, self.trainer.step if self.trainer else 0)
            except OSError:
                pass  # a full disk must not stop the state change itself
        self._emit(ev.StateChanged(state, self.trainer.step if self.trainer else 0, reason))

    def _warn(self, message: str, kind: str) -> None:
        step = self.trainer.step if self.trainer else 0
        if self.run is not None:
            try:
                self.run.append_log(_record("warning", step, kind=kind, message=message))
            except OSError:
                pass
        self._emit(ev.WarningRaised(step, message, kind))

    def _emit(self, event: ev.Event) -> None:
        try:
            self._sink(event)
        except Exception:  # noqa: BLE001 - a broken consumer must never stop training
            traceback.print_exc()

    def _start_interval(self) -> None:
        self._interval_start = time.perf_counter()
        self._interval_images = 0


def _record(record_type: str, step: int, **fields: Any) -> dict[str, Any]:
    # Every log line carries the metrics keys so a consumer can read the file as one table.
    return {"type": record_type, "step": step, "d_loss": None, "g_loss": None, "images_per_s": None, **fields}


def _quality_record(q: ev.QualityMeasured) -> dict[str, Any]:
    fields = dataclasses.asdict(q)
    del fields["step"]
    fields["class_hist"] = list(q.class_hist)
    return fields


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


def _weights_finite(trainer: Trainer) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in (trainer.G, trainer.D) for p in m.parameters())
