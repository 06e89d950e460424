"""Every way back to a saved state: a resume, a rollback, a population-based-training exploit.

All three are one act, `load_state`: a checkpoint's nets, optimizers, RNG and schedule loaded into
the live trainer IN PLACE (its tensors keep their identity, so anything holding them, a captured
CUDA graph included, stays valid), all or nothing, with the run's hyperparameter history and clock
taken from the checkpoint. What differs is where the checkpoint comes from and what the run folder
and the journal then record:

    resume     the run's newest intact checkpoint; metrics after it set aside; a `resumed` record
    rollback   last-good, latest, best or a step; later records and checkpoints set aside; `rollback`
    exploit    another trial's Tune checkpoint (PBT); `hparams` records with source "pbt" (the
               exploit, naming the member copied, and the explore), and one checkpoint of the
               restored state written through the journal, so the trial folder resumes from it

Each loads its checkpoint once (torch.load with weights_only) and writes through the run's journal
and the one atomic writer, under the run folder's lock that the runner holds for its whole life.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import events as ev
from engine.checkpoint import CheckpointError, check_compatible, load_training_checkpoint
from engine.config import ConfigError, TrainConfig
from engine.journal import describe_error
from engine.runs import RunDir, RunError, log_record, parse_log_line

if TYPE_CHECKING:
    from engine.runner import Runner
    from engine.trainer import Trainer


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read and checked once: its payload, its config, where it came from."""

    payload: dict[str, Any]
    config: TrainConfig
    path: Path
    skipped: tuple[str, ...] = ()  # newer checkpoints of the run that did not load (a resume's notes)

    @property
    def step(self) -> int:
        return int(self.payload["trainer"]["step"])


@dataclass(frozen=True)
class Exploit:
    """PBT's exploit: continue a trial from another member's Tune checkpoint with perturbed hyperparameters."""

    checkpoint: Path  # the member's checkpoint file, as Tune hands it over
    meta: dict[str, Any] = field(default_factory=dict)  # {"trial": member, "tune_config": {...}, "quality": {...}}
    origin: str = ""  # the Tune checkpoint copied, named in the exploit record


# ---------------------------------------------------------------- the one act
def load_state(runner: Runner, checkpoint: Checkpoint, cfg: TrainConfig) -> list[str]:
    """Load `checkpoint` into the runner's live trainer with `cfg`'s hyperparameters; the runner's
    config, history and training clock follow. All or nothing: on failure nothing changed and the
    error is raised. Returns notes for the user (batches reseeded across device types)."""
    trainer: Trainer | None = runner.trainer
    assert trainer is not None
    live = trainer.cfg
    try:
        trainer.set_hyperparams(cfg)
        notes = trainer.load_state_dict(checkpoint.payload["trainer"])  # all or nothing itself
    except BaseException:
        trainer.set_hyperparams(live)
        raise
    runner.cfg = cfg
    runner.hparam_history = list(checkpoint.payload["hparam_history"])
    runner.train_s = float(checkpoint.payload.get("train_s", 0.0))
    return notes


# --------------------------------------------------------------------- sources
def newest_intact(run: RunDir) -> Checkpoint:
    """The run's newest checkpoint that loads and validates, with a note for every newer one skipped."""
    found = run.newest_intact_checkpoint()
    return Checkpoint(found.payload, found.config, found.path, found.skipped)


def read(path: Path) -> Checkpoint:
    """A checkpoint file read and checked (CheckpointError says what is wrong)."""
    payload, cfg = load_training_checkpoint(path)
    return Checkpoint(payload, cfg, path)


# -------------------------------------------------------------------- resume
def resume(runner: Runner, checkpoint: Checkpoint) -> tuple[int, dict[str, Any] | None]:
    """Continue the runner's run from `checkpoint` with the runner's config (config.json and flags).
    Returns (the last step the log had reached, the checkpoint's hyperparameters when they differ)."""
    run, record = runner.run, runner.record
    assert run is not None and record.journal is not None
    runner.notes += load_state(runner, checkpoint, runner.cfg)
    step = checkpoint.step
    try:
        last = run.truncate_log(step)
    except Exception as exc:  # noqa: BLE001 - a full disk: the log keeps its later lines, the run goes on
        record.journal.failed("metrics", exc, "metrics log (set back to the checkpoint)")
        last = step
    try:  # at once: no grid of this process is on its way yet, and a viewer reads samples/ at RunStarted
        run.abandon_grids_after(step)
    except Exception as exc:  # noqa: BLE001 - a full disk or a read-only folder: the resume stands
        runner.warn(f"the grids after step {step:,} could not be set aside: {describe_error(exc)}", "resume")
    record.write_config(runner.cfg)
    record.append(log_record("resumed", step, lost_steps=last - step))
    saved_hp = checkpoint.config.hyperparams()
    if saved_hp == runner.cfg.hyperparams():
        runner.saver.restored(step)  # the file holds exactly this state: an error save must not replace it
        return last, None
    return last, saved_hp


# ------------------------------------------------------------------- rollback
def roll_back(runner: Runner, target: str, lr_scale: float) -> None:
    """Restore a checkpoint of this run in place, all or nothing; later records and checkpoints are
    set aside. lr_scale != 1 then scales the learning rates. A refusal is a warning; nothing changes."""
    trainer, run, record = runner.trainer, runner.run, runner.record
    assert trainer is not None and run is not None and record.journal is not None
    runner.settle()  # checkpoints queued so far are on disk and pruned: the choice below sees them all
    try:
        checkpoint = read(run.find_checkpoint(target, up_to_step=trainer.step))
        check_compatible(checkpoint.config, runner.cfg, run.path)
        restored = runner.cfg.with_hyperparams(**checkpoint.config.hyperparams())
        if lr_scale != 1.0:  # checked now, so a scale that cannot apply refuses the whole rollback
            restored.with_hyperparams(lr_g=restored.lr_g * lr_scale, lr_d=restored.lr_d * lr_scale)
    except (RunError, CheckpointError, ConfigError, TypeError, ValueError, OverflowError) as exc:
        runner.warn(f"not rolled back: {exc}", "rollback")
        return
    from_step, live = trainer.step, runner.cfg
    try:
        notes = load_state(runner, checkpoint, restored)
    except Exception as exc:  # noqa: BLE001 - a checkpoint that loads but does not fit: nothing changed
        runner.warn(f"not rolled back: checkpoint {checkpoint.path} does not fit this run ({describe_error(exc)}); "
                    "nothing changed", "rollback")
        return
    was_nonfinite = "nonfinite" in runner.health.active
    old_hp, new_hp = live.hyperparams(), restored.hyperparams()
    for note in notes:
        runner.warn(note, "rng")
    step = trainer.step
    _forget_after(runner, step, "rolled back")
    record.append(log_record("rollback", step, from_step=from_step, path=str(checkpoint.path), hyperparams=new_hp))
    runner.saver.restored(step)
    runner.monitor.alarms(runner.health.clear_all(step))
    runner.emit(ev.RolledBack(from_step, step, str(checkpoint.path), runner.cfg.lr_g, runner.cfg.lr_d,
                              hyperparams=new_hp, replaced=old_hp if old_hp != new_hp else {}))
    if old_hp != new_hp:
        record.append(log_record("hparams", step, old=old_hp, new=new_hp, reason="rollback"))
        record.write_config(runner.cfg)
        runner.emit(ev.HyperparamsChanged(step, old_hp, new_hp))
    if lr_scale != 1.0:
        runner.set_hyperparams({"lr_g": runner.cfg.lr_g * lr_scale, "lr_d": runner.cfg.lr_d * lr_scale},
                               reason="rollback")
    runner.monitor.start_interval()
    runner.saver.post_grid()
    if was_nonfinite and runner.state == ev.RunState.PAUSED:
        runner.set_state(ev.RunState.RUNNING, f"rolled back to step {step}")


# -------------------------------------------------------------------- exploit
def exploit(runner: Runner, source: Exploit, checkpoint: Checkpoint, own: dict[str, Any]) -> None:
    """Continue a trial from another member's checkpoint (already read: `checkpoint`) with the
    runner's config, whose hyperparameters PBT perturbed; `own` are the trial's hyperparameters
    before. Records the exploit and the explore, and writes the restored state as the trial's
    checkpoint at that step (the trial's own one there, if any, is set aside)."""
    run, record = runner.run, runner.record
    assert run is not None and record.journal is not None
    step, member = checkpoint.step, str(source.meta.get("trial", ""))
    runner.cfg = _keep_hand_changes(runner.cfg, checkpoint.config.hyperparams(), source.meta.get("tune_config", {}))
    copied, new = checkpoint.config.hyperparams(), runner.cfg.hyperparams()
    runner.notes += load_state(runner, checkpoint, runner.cfg)
    name = run.path.name
    last = _forget_after(runner, step, "took over another member's weights")
    record.append(log_record("resumed", step, lost_steps=max(0, last - step), reason="pbt"))
    try:  # the trial's own checkpoint at this step gives way to the copied state, kept aside
        own_file = run.checkpoint_path(step)
        if own_file.is_file():
            aside = run.checkpoints_dir / "abandoned" / f"{own_file.stem}.own-{int(time.time() * 1000)}.pt"
            aside.parent.mkdir(exist_ok=True)
            own_file.replace(aside)
    except OSError as exc:
        runner.warn(f"the trial's own checkpoint at step {step} could not be set aside: {describe_error(exc)}", "pbt")
    if member and member != name:
        record.append(log_record("hparams", step, old=own, new=copied, source="pbt", action="exploit", member=member,
                                 member_step=step, checkpoint=source.origin))
        runner.hparam_history.append({"step": step, "old": own, "new": copied, "source": "pbt", "member": member})
    if new != copied:
        record.append(log_record("hparams", step, old=copied, new=new, source="pbt", action="explore",
                                 member=member if member != name else ""))
        runner.hparam_history.append({"step": step, "old": copied, "new": new, "source": "pbt"})
    record.write_config(runner.cfg)
    runner.saver.save("pbt")  # the restored state, history included: the trial resumes from here
    quality = source.meta.get("quality")
    if isinstance(quality, dict):
        record.write("quality", lambda: run.record_checkpoint_quality(step, quality), f"quality of step {step}",
                     retry=True)


def _keep_hand_changes(cfg: TrainConfig, copied: dict[str, Any], tuned_then: dict[str, Any]) -> TrainConfig:
    """A member whose learning rates were changed by hand (through its dashboard) is copied with those
    rates, and PBT's perturbation applies to them as a factor: the hand change is the new start."""
    changes = {}
    for key in ("lr_g", "lr_d"):
        then = tuned_then.get(key)
        if isinstance(then, (int, float)) and then > 0 and not math.isclose(then, copied[key], rel_tol=1e-9):
            changes[key] = min(1.0, copied[key] * getattr(cfg, key) / then)
    return cfg.with_hyperparams(**changes) if changes else cfg


def _forget_after(runner: Runner, step: int, done: str) -> int:
    """Records, checkpoints, measurements and timetables of the steps after `step` are void; the last
    step the log had reached."""
    run, record = runner.run, runner.record
    assert run is not None and record.journal is not None
    for cadence in runner.cadence.values():
        cadence.mark(step)
    runner.discard_pending_steps()
    runner.monitor.restored()
    # Lines a full disk kept waiting describe the steps thrown away too: they must not land after this.
    record.journal.drop_unwritten(run.metrics_path, lambda line: (parse_log_line(line) or {}).get("step", 0) <= step)
    try:
        last = run.truncate_log(step)
        run.abandon_checkpoints_after(step)
    except Exception as exc:  # noqa: BLE001 - a full disk: the rollback itself stands
        runner.warn(f"{done}, but the log and newer checkpoints could not be set aside: {describe_error(exc)}",
                    "rollback")
        last = step
    _set_grids_aside(runner, step)
    return last


def _set_grids_aside(runner: Runner, step: int) -> None:
    """Grids past `step` go to samples/abandoned/ (the steps after it are drawn again). Queued on the
    journal: a grid of those steps still waiting for the disk lands first, and is moved with the rest
    (a live viewer drops them on RolledBack; one opened later reads samples/ without them)."""
    run = runner.run
    assert run is not None
    runner.record.write("samples", lambda: run.abandon_grids_after(step), "grids of the steps set aside")
