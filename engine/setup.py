"""The start of a run: its folder taken, data loaded, the trainer built or restored, RunStarted posted.

The folder's lock comes first (engine/lock.py): a second trainer on a live run must touch nothing of
it. A new run creates its folder; a resume continues from the run's newest intact checkpoint; a
PBT exploit continues a trial from another member's checkpoint (engine/restore.py does the two
last). Then the run is announced, with every note the start produced after RunStarted, so that
each viewer sees them.
"""

from __future__ import annotations

import dataclasses
import io
from typing import TYPE_CHECKING, Any

import torch

from engine import events as ev
from engine import restore
from engine.checkpoint import check_compatible
from engine.config import NAMED_DATASETS, ConfigError, TrainConfig
from engine.data import load_dataset
from engine.devices import configure_determinism, device_name, resolve_device, training_threads
from engine.lock import RunLock
from engine.runs import RunDir, resolve_run
from engine.tensorboard import open_tensorboard
from engine.trainer import Trainer

if TYPE_CHECKING:
    from engine.runner import Runner


def open_run(runner: Runner) -> None:
    """Take the folder, build or restore the trainer, post RunStarted and the start's notes."""
    device = resolve_device(runner.cfg.device)
    configure_determinism(runner.cfg.deterministic)
    if device.type == "cpu":
        # This thread's team only (torch keeps the count per thread): the side threads set their own.
        torch.set_num_threads(training_threads(runner.cfg.threads))
    checkpoint: restore.Checkpoint | None = None
    if runner.resume_spec:
        run = resolve_run(runner.runs_dir, runner.resume_spec)
        runner.lock = RunLock.acquire(run.path)
        runner.record.run = run  # a failure from here on is written into the run's error.log
        path = run.path
        checkpoint = restore.newest_intact(run)
    else:
        path = RunDir.path_for(runner.runs_dir, runner.run_name, runner.cfg)
        runner.lock = RunLock.acquire(path)
        if runner.exploit is not None:
            checkpoint = restore.read(runner.exploit.checkpoint)  # the one read of the member's checkpoint
    data = runner.data or load_dataset(runner.cfg.dataset, runner.cfg.data_root, runner.cfg.seed)
    runner.cfg = runner.cfg.resolve_preset(data.num_classes)  # "auto" is saved resolved in config.json
    if data.info.name == "synthetic" and runner.cfg.dataset in NAMED_DATASETS and runner.cfg.dataset != "synthetic":
        # The named dataset was not to be had (engine/data.py's fall-back, said in a warning below):
        # config.json records the data the run really trains on, so a resume continues on the same.
        runner.cfg = dataclasses.replace(runner.cfg, dataset="synthetic")
    if checkpoint is not None:
        check_compatible(checkpoint.config, runner.cfg, path)
    runner.trainer = Trainer(runner.cfg, data, device)
    last, changed_from = runner.trainer.step, None
    if runner.resume_spec and checkpoint is not None:
        runner.record.open_journal(run)
        last, changed_from = restore.resume(runner, checkpoint)
    elif runner.exploit is not None and checkpoint is not None:
        own = _own_hyperparams(path, runner.cfg)
        run = RunDir.open(path) if (path / "config.json").is_file() else RunDir.create(runner.runs_dir, path.name, runner.cfg)
        runner.record.open_journal(run)
        restore.exploit(runner, runner.exploit, checkpoint, own)
        if not (path / "fixed_noise.pt").is_file():
            _write_fixed_noise(runner)  # the member's noise, restored with its checkpoint
    else:
        runner.record.open_journal(RunDir.create(runner.runs_dir, path.name, runner.cfg))
        _write_fixed_noise(runner)
    run, trainer = runner.run, runner.trainer
    assert run is not None and runner.record.journal is not None
    try:  # at once, not queued: from here on `ls` and a launcher see which process owns the run
        run.write_state(ev.RunState.STARTING.value, trainer.step)
    except Exception as exc:  # noqa: BLE001 - a full disk: said once, the run goes on
        runner.record.journal.failed("state", exc)
    runner.record.tensorboard = open_tensorboard(runner.cfg, run.path, runner.deliver)
    info = trainer.data.info
    runner.emit(ev.RunStarted(
        run_dir=str(run.path), config=runner.cfg.to_dict(), device=str(device),
        device_name=device_name(device, trainer.amp_dtype), dataset=info.describe(), dataset_note=info.note,
        step=trainer.step, total_steps=runner.total_steps, resumed=checkpoint is not None,
    ))
    if info.note:
        runner.warn(info.note, "dataset")
    for problem in checkpoint.skipped if checkpoint is not None else ():
        runner.warn(f"{problem}; resumed from an older checkpoint instead", "resume")
    if last > trainer.step:
        runner.warn(f"resumed at step {trainer.step}: {last - trainer.step} steps after the last checkpoint were lost",
                    "resume")
    for note in runner.notes:
        runner.warn(note, "rng")
    for note in trainer.take_notes():  # why steps stay eager (fp16, an old torch), said once
        runner.warn(note, "graph")
    if changed_from is not None:
        # config.json (a change made after the checkpoint, whose record the log just set aside) or a
        # flag: the run goes on with these, and its history says so from the checkpoint's step.
        runner.record_hyperparams(changed_from, runner.cfg.hyperparams(), reason="resume")


def _own_hyperparams(path: Any, cfg: TrainConfig) -> dict[str, Any]:
    """A trial's hyperparameters before an exploit: its config.json's, or `cfg`'s for a new folder."""
    try:
        return TrainConfig.load(path / "config.json").hyperparams()
    except ConfigError:
        return cfg.hyperparams()


def _write_fixed_noise(runner: Runner) -> None:
    """fixed_noise.pt beside config.json: the noise the run's grids are drawn from (exports use it)."""
    run, trainer = runner.run, runner.trainer
    assert run is not None and trainer is not None
    buffer = io.BytesIO()
    torch.save(trainer.fixed_noise.cpu(), buffer)
    runner.record.write_file(run.path / "fixed_noise.pt", buffer.getvalue(), "config", "fixed_noise.pt", retry=True)
