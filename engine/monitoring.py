"""What a run watches: its losses (metrics records), sample quality through the judge, health alarms,
GPU memory.

Metrics are means over an interval of steps, read from the device once per interval (the only host
sync of the hot loop), timed on the wall clock with pauses left out. The quality worker (engine/evaluator.py) measures copies of the sampling generator on its own
thread; its events come back through the runner's command queue (so a paused runner wakes for them)
and land here: logged, filed for the checkpoint of their step, posted, and judged by the health
monitor (engine/health.py), whose alarms are logged and posted too.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from engine import events as ev
from engine.devices import device_name, memory_reading
from engine.evaluator import QualityWorker
from engine.runs import log_record
from engine.saver import quality_record

if TYPE_CHECKING:
    import torch

    from engine.runner import Runner

_QUALITY_DRAIN_S = 20.0  # at the end of a run, how long to wait for the last quality figures


class Monitor:
    """Quality measurements, alarms and device readings of one runner's run."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self.quality: QualityWorker | None = None
        self.last_quality: ev.QualityMeasured | None = None
        self._interval_start = 0.0  # 0: no interval open (the clock starts with the first step)
        self._interval_images = 0

    # --------------------------------------------------------------- metrics
    def start_interval(self) -> None:
        """Open a metrics interval now (after a pause, a rollback, a record)."""
        self._interval_start, self._interval_images = time.perf_counter(), 0

    def trained(self, images: int) -> None:
        """A step of `images` real images ran (opening the interval if none is)."""
        if self._interval_start == 0.0:
            self.start_interval()
        self._interval_images += images

    def log_metrics(self) -> bool:
        """Close the interval: read the device stats, log and post them; False if they are not finite."""
        runner, trainer = self._runner, self._runner.trainer
        if trainer is None or not trainer.unread_steps:
            return True
        stats = trainer.read_stats()
        if stats is None:
            return True
        interval = time.perf_counter() - self._interval_start
        runner.train_s += interval
        rate = self._interval_images / interval if interval > 0 else 0.0
        self.start_interval()
        runner.cadence["log"].mark(trainer.step)
        cfg = runner.cfg
        metrics = ev.MetricsLogged(
            step=trainer.step, epoch=trainer.epoch, d_loss=stats.d_loss, g_loss=stats.g_loss, d_real=stats.d_real,
            d_fake=stats.d_fake, grad_norm_g=stats.grad_norm_g, grad_norm_d=stats.grad_norm_d, lr_g=cfg.lr_g,
            lr_d=cfg.lr_d, images_per_s=rate, elapsed_s=runner.train_s, amp_skipped=stats.skipped)
        runner.record.append({"type": "metrics", **asdict(metrics)})
        runner.emit(metrics)
        self.device_stats(force=False)
        self.alarms(runner.health.on_metrics(metrics))
        return stats.finite

    # ------------------------------------------------------------------ API
    def start_quality(self, device: torch.device) -> None:
        """Start readying the judge in the background (when the config measures quality at all)."""
        runner, cfg = self._runner, self._runner.cfg
        if not cfg.quality_every or runner.trainer is None:
            return
        self.quality = QualityWorker(runner.trainer.data, device, cfg.quality_samples, cfg.latent_dim, cfg.seed,
                                     runner.deliver, runner.judge_cache, share=cfg.quality_share,
                                     judge_share=cfg.judge_share)
        self.quality.start()

    def after_step(self, step: int) -> None:
        """Hand the worker a copy of the sampler when a measurement is due and it would take one now."""
        runner = self._runner
        if self.quality is None or runner.trainer is None or not runner.cadence["quality"].due(step):
            return
        if runner.cfg.quality_share >= 1 or self.quality.accepting:  # a busy or resting worker would drop the copy
            self.quality.submit(step, runner.trainer.sampler)
            runner.cadence["quality"].mark(step)

    def measure_checkpoint(self, step: int) -> None:
        """Measure the weights a checkpoint of `step` holds (kept even when the worker is busy)."""
        trainer = self._runner.trainer
        if self.quality is not None and trainer is not None and (self.last_quality is None or self.last_quality.step != step):
            self.quality.submit(step, trainer.sampler, keep=True)

    def on_event(self, event: ev.Event) -> None:
        """An event from the quality worker, on the training thread."""
        runner = self._runner
        if isinstance(event, ev.QualityMeasured):
            self.last_quality = event
            runner.record.append(log_record("quality", event.step, **quality_record(event)))
            if runner.saver.holds(event.step):
                runner.saver.record_quality(event.step, event)
            runner.emit(event)
            self.alarms(runner.health.on_quality(event))
        elif isinstance(event, ev.JudgeReady):
            runner.record.append(log_record("judge", 0, accuracy=event.accuracy, held_out=event.held_out,
                                            source=event.source, n=event.n, fd_floor=event.fd_floor))
            runner.emit(event)
        elif isinstance(event, ev.WarningRaised):
            runner.warn(event.message, event.kind)
        elif isinstance(event, ev.JudgeProgress):
            # Logged too, so `ls` and `show` (which read only the folder) can say how far the judge is.
            runner.record.append(log_record("judge_training", runner.step, epoch=event.epoch, epochs=event.epochs,
                                            resumed=event.resumed))
            runner.emit(event)

    def alarms(self, changes: list[ev.AlarmRaised | ev.AlarmCleared]) -> None:
        """Log and post alarms raised or cleared by the health monitor."""
        runner = self._runner
        for change in changes:
            if isinstance(change, ev.AlarmRaised):
                runner.record.append(log_record("alarm", change.step, kind=change.kind, message=change.message))
            else:
                runner.record.append(log_record("alarm_cleared", change.step, kind=change.kind))
            runner.emit(change)

    def restored(self) -> None:
        """The weights were rolled back: measurements of the ones thrown away are void."""
        if self.quality is not None:
            self.quality.invalidate()
        self.last_quality = None

    def device_stats(self, force: bool) -> None:
        """GPU name and memory, so every viewer (attached ones too) can show them; nothing on the CPU."""
        runner, trainer = self._runner, self._runner.trainer
        assert trainer is not None
        if not (force or runner.cadence["device"].due(trainer.step)):
            return
        reading = memory_reading(trainer.device)
        if reading is None:
            return
        runner.cadence["device"].mark(trainer.step)
        runner.emit(ev.DeviceStats(trainer.step, str(trainer.device), device_name(trainer.device, trainer.amp_dtype),
                                   reading.allocated_mb, reading.reserved_mb, reading.total_mb, reading.peak_mb))

    def close(self, wait: bool) -> None:
        """Let measurements under way land (a final checkpoint's quality), then end the worker. A run
        that ends before its judge is ready says so (its training is kept for the next run)."""
        worker, runner = self.quality, self._runner
        if worker is None:
            return
        if wait and worker.ready:
            worker.wait_idle(_QUALITY_DRAIN_S)
            runner.take_delivered()
        unfinished = worker.judge_progress if not worker.ready and not worker.failed else None
        worker.close()
        if unfinished is not None:
            done = unfinished.epoch - 1
            runner.record.append(log_record("judge_unfinished", runner.step, epochs_done=done, epochs=unfinished.epochs))
            kept = (f"the judge's training ({done} of {unfinished.epochs} epochs done) is kept, and the next run of "
                    "this dataset continues it") if done > 0 else \
                "the judge had not finished its first training epoch, so the next run of this dataset starts it over"
            runner.warn(f"the run ended before its quality judge was ready, so it has no quality figures; {kept}", "judge")
