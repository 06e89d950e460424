"""The quality worker: a thread that readies the judge, then scores generator snapshots.

Training never waits for it. The runner hands over a copy of the sampling generator every
`quality_every` steps; the worker generates `quality_samples` images from its own fixed noise,
scores them (engine/quality.py) and delivers a QualityMeasured event through a callback (the
runner's command queue, so a paused runner wakes for it). While a measurement is under way a
newer snapshot replaces an older waiting one; snapshots marked `keep` (a checkpoint's) are never
dropped. The first task, training the judge when no cached one fits the data, takes a minute on a
2-core CPU and a few seconds on a GPU; snapshots wait meanwhile.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from engine import events as ev
from engine.data import ImageData
from engine.judge import JudgeCancelled, JudgeError, load_or_train
from engine.models import balanced_labels, generate, is_conditional
from engine.quality import QualityReference

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
    ) -> None:
        self._data = data
        self._device = device
        self._samples = samples
        self._deliver = deliver
        self._cache_dir = cache_dir
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
        self.failed = ""
        self._thread = threading.Thread(target=self._run, name="gan-tui-quality", daemon=True)

    # ------------------------------------------------------------------ API
    def start(self) -> None:
        """Begin readying the judge in the background."""
        self._thread.start()

    @property
    def ready(self) -> bool:
        """The judge and its reference are there: measurements are being taken."""
        return self.reference is not None

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
        """Block until every queued measurement is delivered (or the judge failed); True if so."""
        with self._cond:
            return self._cond.wait_for(lambda: self.failed or (self.ready and not self._jobs and not self._busy), timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the current measurement (judge training stops within a batch); queued snapshots are dropped."""
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ------------------------------------------------------------- the thread
    def _run(self) -> None:
        try:
            judge = load_or_train(self._data, self._device, self._cache_dir, cancelled=lambda: self._closed)
            reference = QualityReference.build(judge, self._data, self._samples)
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
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._jobs))
                if self._closed:
                    return
                job = self._jobs.popleft()
                self._busy, self._busy_step = True, job.step
            try:
                result = self._measure(job)
            except Exception as exc:  # noqa: BLE001 - one failed measurement is reported, the next may work
                result = ev.WarningRaised(job.step, f"quality measurement at step {job.step} failed: {type(exc).__name__}: {exc}", "quality")
            with self._cond:
                current = job.generation == self.generation
            if current:
                self._deliver(result)
            with self._cond:
                self._busy, self._busy_step = False, -1
                self._cond.notify_all()

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


def _snapshot(generator: nn.Module) -> nn.Module:
    """A frozen eval-mode copy (deepcopy copies tensors only; no RNG is drawn)."""
    snapshot = copy.deepcopy(generator)
    return snapshot.eval().requires_grad_(False)
