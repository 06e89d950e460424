"""When and what a run saves: checkpoints, sample grids and exports, all through the run's journal.

A checkpoint is serialized at once on the training thread (the live tensors change with the next
step) and written by the journal's writer thread; CheckpointSaved follows once it is on disk. The
quality copy of a checkpoint is taken at the saved step, so its measurement ranks the weights the
file holds. A checkpoint is never taken twice of the same state: `saved_step` is the step whose
file holds exactly the live state (hyperparameters included), `generation` counts hyperparameter
changes, so a save queued before a change does not pass for one after it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine import events as ev
from engine.checkpoint import encode_checkpoint
from engine.config import SEED_LIMIT
from engine.runs import RunError, export_target, write_grid_png

if TYPE_CHECKING:
    from engine.runner import Runner

_ENDING_REASONS = ("final", "stop", "error")


class Saver:
    """Checkpoints, grids and exports of one runner's run."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self.saved_step = -1  # the checkpoint file of this step holds exactly the live state
        self.saving_step = -1  # a checkpoint of this step is queued for the disk...
        self.saving_generation = -1  # ...holding the hyperparameters of this generation
        self.generation = 0  # bumped by every hyperparameter change (a queued checkpoint may predate it)
        self.last_grid_step = -1
        self.last_grid: np.ndarray | None = None

    # ------------------------------------------------------------------ API
    def save(self, reason: str) -> bool:
        """Queue a checkpoint for the disk; CheckpointSaved follows once it is written. A failure (a
        full disk) is a warning from the journal, and the older checkpoints stay intact."""
        runner, trainer, run = self._runner, self._runner.trainer, self._runner.run
        if trainer is None or run is None or runner.journal is None:
            return False
        step = trainer.step
        path = run.checkpoint_path(step)
        if self.saving_step == step and self.saving_generation == self.generation:
            if reason not in _ENDING_REASONS:
                return True  # already on its way to the disk; its CheckpointSaved will come
            runner.settle()  # the run is ending: let the queued one land, then it serves as this save too
        if self.saved_step == step and path.is_file():
            runner.emit(ev.CheckpointSaved(step, str(path), reason))  # nothing changed since
            return True
        payload = {"config": runner.cfg.to_dict(), "trainer": trainer.state_dict(),
                   "hparam_history": runner.hparam_history, "train_s": runner.train_s}
        what = f"checkpoint at step {step}"
        try:
            data = encode_checkpoint(payload)  # in memory, now: the live tensors change with the next step
        except Exception as exc:  # noqa: BLE001 - torch.save raises RuntimeError as well as OSError
            runner.record.failed("checkpoint", exc, what)
            return False
        self.saving_step = step
        self.saving_generation = generation = self.generation
        runner.record.write_file(path, data, "checkpoint", what, done=runner.record.later(
            lambda ok, _e: self._written(step, path, reason, generation, ok)))
        runner.cadence["checkpoint"].mark(step)
        if reason != "error":
            # The copy is made now, with the weights this checkpoint holds: by the time the file has
            # landed, training has moved on (its measurement is filed under this step).
            runner.monitor.measure_checkpoint(step)
        return True

    def save_after_failure(self) -> str:
        """The 'error' checkpoint if the weights are finite; never raises (the final events must follow)."""
        runner = self._runner
        try:
            if runner.trainer is not None and weights_finite(runner.trainer) and self.save("error"):
                return str(runner.run.checkpoint_path(runner.trainer.step)) if runner.run else ""
        except Exception as exc:  # noqa: BLE001 - a second failure while failing is reported, not raised
            runner.warn(f"no checkpoint after the error: {type(exc).__name__}: {exc}", "checkpoint")
        return ""

    def hyperparams_changed(self) -> None:
        """A checkpoint at this step would now hold other hyperparameters than any file of it."""
        self.saved_step = -1
        self.generation += 1

    def restored(self, step: int) -> None:
        """The live state was just loaded from the checkpoint of `step` (a resume or a rollback)."""
        self.saved_step = step
        self.generation += 1

    def holds(self, step: int) -> bool:
        """A checkpoint of `step` exists or is on its way (its quality belongs in the index)."""
        run = self._runner.run
        return step in (self.saved_step, self.saving_step) or (run is not None and run.checkpoint_path(step).is_file())

    def record_quality(self, step: int, q: ev.QualityMeasured) -> None:
        """File a measurement in the checkpoints' quality index (what `roll back to best` ranks)."""
        run, record = self._runner.run, quality_record(q)
        assert run is not None
        self._runner.record.write("quality", lambda: run.record_checkpoint_quality(step, record),
                                  f"quality of the checkpoint at step {step}", retry=True)

    def post_grid(self) -> None:
        """Draw the fixed-noise grid, write it as samples/step_N.png and post it."""
        runner, trainer, run = self._runner, self._runner.trainer, self._runner.run
        assert trainer is not None and run is not None
        if trainer.device.type == "cuda":
            # sample() waits for the queued steps anyway; waiting first keeps them out of the grid's cost.
            torch.cuda.synchronize(trainer.device)
        start = time.perf_counter()
        images = trainer.sample()
        cost = time.perf_counter() - start
        step, path = trainer.step, run.grid_path(trainer.step)
        runner.record.write("samples", lambda: write_grid_png(path, images), f"sample grid at step {step}")
        self.last_grid_step, self.last_grid = step, images
        runner.cadence["grid"].mark(step, cost)
        runner.emit(ev.SamplesGenerated(step, images, fixed=True, path=str(path)))

    def sample_fresh(self, seed: int | None, digit: int | None = None, count: int | None = None) -> None:
        """Post a grid from new noise (the fixed grid and training's RNG are untouched)."""
        runner, trainer = self._runner, self._runner.trainer
        assert trainer is not None
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT):
            runner.warn(f"no fresh samples: seed must be a whole number from 0 to {SEED_LIMIT - 1}, got {seed!r}", "command")
            return
        try:
            images = trainer.sample(trainer.fresh_noise(seed, count), digit)
        except (RuntimeError, ValueError, OverflowError, TypeError) as exc:  # a class this run cannot draw, too
            runner.warn(f"no fresh samples: {exc}", "command")
            return
        runner.emit(ev.SamplesGenerated(trainer.step, images, fixed=False, digit=digit))

    def export(self, target: str) -> None:
        """The fixed grid at the current step as a PNG in the run's exports/ (SamplesExported once written)."""
        runner, trainer, run = self._runner, self._runner.trainer, self._runner.run
        assert trainer is not None and run is not None
        try:
            path = export_target(run, target, f"samples_step_{trainer.step:08d}.png")
        except RunError as exc:
            runner.warn(f"samples NOT exported: {exc}", "export")
            return
        if self.last_grid_step != trainer.step:
            self.post_grid()
        step, images = trainer.step, self.last_grid

        def exported(ok: bool, _error: BaseException | None) -> None:
            if ok:
                runner.emit(ev.SamplesExported(step, str(path)))

        runner.record.write("export", lambda: write_grid_png(path, images), f"samples export {path.name}",
                            runner.record.later(exported))

    # ---------------------------------------------------------------- helpers
    def _written(self, step: int, path: Path, reason: str, generation: int, ok: bool) -> None:
        runner = self._runner
        if self.saving_step == step:
            self.saving_step = -1
        if not ok or runner.run is None:
            return  # the journal warned (once); the older checkpoints are intact
        if generation == self.generation:
            self.saved_step = step
        last = runner.monitor.last_quality
        if last is not None and last.step == step:  # measured before the file existed
            self.record_quality(step, last)
        run, keep = runner.run, runner.cfg.keep_checkpoints
        runner.record.write("checkpoint", lambda: run.prune_checkpoints(keep), "pruning old checkpoints")
        runner.emit(ev.CheckpointSaved(step, str(path), reason))


def quality_record(q: ev.QualityMeasured) -> dict[str, Any]:
    """A measurement's fields as a log or index record (without its step)."""
    fields = dataclasses.asdict(q)
    del fields["step"]
    fields["class_hist"] = list(q.class_hist)
    return fields


def weights_finite(trainer: Any) -> bool:
    """No NaN or infinity in either net (a checkpoint of broken weights would be worthless)."""
    return all(bool(torch.isfinite(p).all()) for m in (trainer.G, trainer.D) for p in m.parameters())
