"""The quality worker: a thread that readies the judge, then scores generator snapshots.

Training never waits for it. The runner hands over a copy of the sampling generator every
`quality_every` steps; the worker generates `quality_samples` images from its own fixed noise,
scores them (engine/quality.py) and delivers a QualityMeasured event through a callback (the
runner's command queue, so a paused runner wakes for it). While a measurement is under way a
newer snapshot replaces an older waiting one; snapshots marked `keep` (a checkpoint's) are never
dropped. The first task, training the judge when no cached one fits the data, takes a minute on a
2-core CPU and a few seconds on a GPU; snapshots wait meanwhile.

The worker is held to a share of the wall time (`share` for measurements, `judge_share` for
training the judge) by resting in proportion to its own measured work (engine/schedule.py's
DutyCycle): on a CPU the cores it leaves idle go to training. `accepting` tells the runner when a
new snapshot would be measured soon, so it does not copy the generator for nothing.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from engine import events as ev
from engine.data import ImageData
from engine.judge import JudgeCancelled, JudgeError, default_cache_dir, load_or_train
from engine.models import balanced_labels, generate, is_conditional
from engine.quality import QualityReference
from engine.schedule import DutyCycle

Deliver = Callable[[ev.Event], None]


@dataclass
class _Job:
    step: int
    generator: nn.Module
    keep: bool
    generation: int


class QualityWorker:
    """Owns the judge and the real reference; `submit` snapshots, results come back via `deliver`."""

    def __init__(
        self,
        data: ImageData,
        device: torch.device,
        samples: int,
        latent_dim: int,
        seed: int,
        deliver: Deliver,
        cache_dir: Path | None = None,
        share: float = 1.0,
        judge_share: float = 1.0,
    ) -> None:
        self._data = data
        self._device = device
        self._samples = samples
        self._deliver = deliver
        self._cache_dir = cache_dir or default_cache_dir()  # the judge's and the reference's files
        # Its own fixed noise: the same latent points at every measurement, so the curve compares
        # like with like, and the training RNG is never touched.
        self._noise = torch.randn(samples, latent_dim, generator=torch.Generator().manual_seed(seed + 2)).to(device)
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._busy_step = -1
        self._closed = False
        self.generation = 0  # bumped by a rollback: results from before it are dropped
        self.reference: QualityReference | None = None
        self.judge_progress: ev.JudgeProgress | None = None  # while the judge trains: the epoch under way
        self.failed = ""
        self._pace_judge_forward = False
        self._wake = threading.Event()  # cuts a rest short (closing, or the run's last figures are awaited)
        self._cycle = DutyCycle(share, sleep=self._wake.wait)
        self._judge_cycle = DutyCycle(judge_share, sleep=self._wake.wait)
        self._thread = threading.Thread(target=self._run, name="gan-tui-quality", daemon=True)

    # ------------------------------------------------------------------ API
    def start(self) -> None:
        """Begin readying the judge in the background."""
        self._thread.start()

    @property
    def ready(self) -> bool:
        """The judge and its reference are there: measurements are being taken."""
        return self.reference is not None

    @property
    def accepting(self) -> bool:
        """Nothing queued, measured or rested on now: a snapshot submitted now is measured without waiting."""
        with self._cond:
            return not (self.failed or self._closed or self._jobs or self._busy)

    def submit(self, step: int, generator: nn.Module, keep: bool = False) -> None:
        """Queue a measurement of a copy of `generator` as it is now (the copy is made here).

        A step already queued or under way is not queued twice; asking again with `keep` keeps it.
        """
        if self.failed or self._closed:
            return
        with self._cond:
            if self._busy_step == step:
                return
            queued = [job for job in self._jobs if job.step == step and job.generation == self.generation]
            if queued:
                queued[0].keep |= keep
                return
            snapshot = _snapshot(generator)
            # A waiting unkept snapshot is stale once a newer one exists.
            self._jobs = deque(j for j in self._jobs if j.keep)
            self._jobs.append(_Job(step, snapshot, keep, self.generation))
            self._cond.notify()

    def invalidate(self) -> None:
        """Drop queued snapshots and ignore running ones (the weights they hold were rolled back)."""
        with self._cond:
            self.generation += 1
            self._jobs.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Block until every queued measurement is delivered (or the judge failed); True if so. No more resting."""
        self._cycle.hurry()
        self._judge_cycle.hurry()
        self._wake.set()
        with self._cond:
            return self._cond.wait_for(lambda: self.failed or (self.ready and not self._jobs and not self._busy), timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the current measurement (judge training stops within a batch); queued snapshots are dropped."""
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._cond.notify_all()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ------------------------------------------------------------- the thread
    def _run(self) -> None:
        # One thread: the worker's limit is a share of the time, not of the cores, and a thread team of
        # its own would spin on the cores the training step's team uses. While the judge trains it keeps
        # its full priority: niced, it starved on a busy 2-core box (another job on one core, training
        # on the other) and the run ended before its first quality figure.
        torch.set_num_threads(1)
        try:
            judge = load_or_train(self._data, self._device, self._cache_dir, cancelled=self._judge_pace,
                                  progress=self._judge_progress)
            # Between the judge's chunks of images: stop promptly when closed (a daemon thread still inside
            # torch when the process exits aborts it), and rest while readying, as while training it.
            self._pace_judge_forward = True
            judge.model.body.register_forward_pre_hook(self._between_chunks)
            reference = QualityReference.cached(judge, self._data, self._samples, self._cache_dir)
            self._pace_judge_forward = False
        except JudgeCancelled:
            return
        except JudgeError as exc:
            self._fail(f"quality metrics are off: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - the run goes on without quality figures, and says so
            self._fail(f"quality metrics are off: the judge could not be readied ({type(exc).__name__}: {exc})")
            return
        if reference.n < self._samples:
            self._noise = self._noise[: reference.n]
        with self._cond:
            self.reference = reference
            self._cond.notify_all()
        self._deliver(ev.JudgeReady(judge.accuracy, len(judge.split.held_out), judge.source, judge.train_s,
                                    reference.n, reference.fd_floor))
        _lower_thread_priority()  # measurements are side work: training wins any contested core
        self._judge_cycle.rest()  # loading the judge and the reference's features were work too
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._jobs))
                if self._closed:
                    return
                job = self._jobs.popleft()
                self._busy, self._busy_step = True, job.step
            self._cycle.start()
            try:
                result = self._measure(job)
            except JudgeCancelled:
                return
            except Exception as exc:  # noqa: BLE001 - one failed measurement is reported, the next may work
                result = ev.WarningRaised(job.step, f"quality measurement at step {job.step} failed: {type(exc).__name__}: {exc}", "quality")
            with self._cond:
                current = job.generation == self.generation
            if current:
                self._deliver(result)
            self._cycle.rest()  # still busy while resting: `accepting` stays false, so no snapshot is copied for nothing
            with self._cond:
                self._busy, self._busy_step = False, -1
                self._cond.notify_all()

    def _judge_progress(self, epoch: int, epochs: int, resumed: int) -> None:
        self.judge_progress = ev.JudgeProgress(epoch, epochs, resumed)
        self._deliver(self.judge_progress)

    def _between_chunks(self, _module: nn.Module, _inputs: object) -> None:
        if self._closed:
            raise JudgeCancelled("the run ended during a quality measurement")
        if self._pace_judge_forward:
            self._judge_cycle.rest()

    def _judge_pace(self) -> bool:
        """Called by the judge's training loop between batches: rest for the share, then say if closed."""
        self._judge_cycle.rest()
        return self._closed

    @torch.no_grad()
    def _measure(self, job: _Job) -> ev.QualityMeasured:
        assert self.reference is not None
        # A conditional generator is asked for every class equally often, so its figures include
        # label agreement and the per-class distances.
        labels = balanced_labels(len(self._noise), job.generator.num_classes, self._device) if is_conditional(job.generator) else None
        z_parts, y_parts = self._noise.split(500), (labels.split(500) if labels is not None else None)
        images = torch.cat([generate(job.generator, z, None if y_parts is None else y_parts[i]).float()
                            for i, z in enumerate(z_parts)])
        return self.reference.measure(job.step, images, labels)

    def _fail(self, message: str) -> None:
        with self._cond:
            self.failed = message
            self._cond.notify_all()
        self._deliver(ev.WarningRaised(0, message, "quality"))


def _lower_thread_priority(niceness: int = 10) -> None:
    """Nice this thread (Linux schedules threads as tasks, so only it is affected): training wins any
    contested core, while idle cores still serve quality work at full speed. Elsewhere a no-op."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        pass


def _snapshot(generator: nn.Module) -> nn.Module:
    """A frozen eval-mode copy (deepcopy copies tensors only; no RNG is drawn)."""
    snapshot = copy.deepcopy(generator)
    return snapshot.eval().requires_grad_(False)
