"""One sweep trial: an ordinary gan-tui run (Runner + control socket) inside a Ray Tune function trainable.

Each report to Tune is one quality interval: the runner trains to the next multiple of
`quality_every`, waits for the judge's measurement of that step (milliseconds on a GPU), saves a
checkpoint there and reports its FD/floor to Tune with a copy of that checkpoint. When PBT exploits, Tune restarts this
function with the chosen member's checkpoint and perturbed hyperparameters; the runner starts from
it as an exploit (engine/restore.py: the checkpoint read once, loaded into the new trainer, two
`hparams` records with `source: "pbt"` for the exploit and the explore, and the restored state
saved as the trial's own checkpoint, under the trial folder's lock). A `stop` file in the sweep
folder makes the runner save a checkpoint and end. The trial is served like any run
(engine/serve.py), so `gan-tui attach` works on it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import commands as cmd
from engine import events as ev
from engine.config import TrainConfig
from engine.data import ImageData, load_dataset
from engine.notify import attach_trial
from engine.restore import Exploit
from engine.runs import RunDir
from engine.schedule import Cadence
from engine.serve import ServedRun
from engine.sweep.spec import METRIC, SweepSpec, stop_requested, trial_folder_name

TUNED = ("lr_g", "lr_d", "batch_size", "d_steps")
CKPT_FILE = "gan.pt"
META_FILE = "meta.json"
_PAUSED_POLL_S = 0.05  # a trial paused by hand still notices a sweep stop this often
_DATA: dict[tuple[Any, ...], ImageData] = {}  # a reused Ray actor loads its dataset once


def train_trial(config: dict[str, Any], sweep_dir: str, notify: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> None:
    """The Ray Tune function trainable (bound to its sweep and the driver's notification settings,
    engine/notify.py trial_settings, with `tune.with_parameters`)."""
    from ray import tune

    spec = SweepSpec.load(Path(sweep_dir))
    if stop_requested(spec.path):
        return  # the sweep is stopping: a trial that had not started stays unstarted
    name = trial_folder_name(tune.get_context().get_trial_id())
    cfg = trial_config(spec.base_config(), config)
    run_path = spec.path / name
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:  # the member's files stay there while the trial reads them
            meta = json.loads((Path(folder) / META_FILE).read_text())
            exploit = Exploit(Path(folder) / CKPT_FILE, meta, origin=str(checkpoint.path))
            TrialLoop(spec, name, cfg, None, tuned=config, exploit=exploit, notify=notify).run(tune)
        return
    resume: str | None = None
    if (run_path / "config.json").is_file() and RunDir(run_path).latest_checkpoint() is not None:
        resume = str(run_path)  # Ray restarted this trial (a failure, a resumed sweep): go on from its folder
    elif run_path.exists():
        # Started before but died before its first checkpoint: keep what it wrote, begin afresh.
        run_path.rename(run_path.with_name(f"{name}.failed-{int(time.time())}"))
    TrialLoop(spec, name, cfg, resume, tuned=config, notify=notify).run(tune)


def trial_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """The base config with the trial's tuned values (a grid point arrives nested under "point")."""
    flat = {**values.get("point", {}), **{k: v for k, v in values.items() if k != "point"}}
    changes = {k: (int(flat[k]) if k in ("batch_size", "d_steps") else float(flat[k])) for k in TUNED if k in flat}
    return dataclasses.replace(base, **changes)


class TrialLoop:
    """Drives one Runner step by step on this thread, reporting each quality interval to Tune."""

    def __init__(self, spec: SweepSpec, name: str, cfg: TrainConfig, resume: str | None,
                 tuned: dict[str, Any] | None = None, exploit: Exploit | None = None,
                 notify: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> None:
        self.spec = spec
        self.name = name
        self.cfg = cfg
        self.quality: dict[int, ev.QualityMeasured] = {}
        self.saved: dict[int, str] = {}
        self.error = ""
        self.tuned = {k: v for k, v in trial_config(cfg, tuned or {}).hyperparams().items()}  # what Ray believes
        judge_cache = Path(spec.judge_cache) if spec.judge_cache else None
        self.served = ServedRun(cfg, spec.path, None if resume else name, resume, data=_dataset(cfg),
                                judge_cache=judge_cache, exploit=exploit)
        self.served.listen(self._sink)
        # The sweep's URLs come from its driver through Ray's object store (never a file or a log).
        attach_trial(self.served, notify, sweep=spec.name)
        self.runner = self.served.runner

    def run(self, tune: Any) -> None:
        """Train to the end, a sweep stop, or Tune's own stop (an exploit: SystemExit out of report)."""
        runner = self.runner
        try:
            runner.setup()
        except Exception as exc:
            runner.fail(exc)  # the folder's lock and the runner's threads go with the final events
            self.served.close()
            raise
        every = self.cfg.quality_every
        assert runner.trainer is not None
        # Reports fall on multiples of quality_every: a step-count timetable that nothing runs on makes
        # the runner land on each (a CUDA graph's replay of several steps never jumps over one).
        runner.cadence["report"] = Cadence(every, 0.0)
        pending = self._next_boundary(runner.trainer.step, every)
        saving = False
        try:
            while True:
                if stop_requested(self.spec.path) and runner.state != ev.RunState.STOPPED:
                    runner.submit(cmd.Stop(save=True))
                alive = runner.tick(block=False)
                if saving:
                    # The checkpoint goes to disk on the run's writer thread: let it land (CheckpointSaved)
                    # before the checks below, which would otherwise take it for a skipped save.
                    runner.settle()
                    saving = False
                if runner.state == ev.RunState.PAUSED:
                    time.sleep(_PAUSED_POLL_S)
                step = runner.trainer.step
                if step > pending and pending not in self.saved:
                    pending = self._next_boundary(step, every)  # a rollback or a failed save skipped it
                if alive and step == pending and pending not in self.saved:
                    # The measurement of `pending` lands before the save and the next step, so the
                    # checkpoint reported holds exactly the weights that were measured.
                    self._wait_for_quality()
                    runner.submit(cmd.SaveCheckpoint())
                    saving = True
                if runner.quality is not None and runner.quality.failed:
                    raise RuntimeError(runner.quality.failed)
                if pending in self.quality and pending in self.saved:
                    self._report(tune, pending)
                    pending = self._next_boundary(max(step, pending), every)
                if not alive:
                    done = [s for s in self.quality if s in self.saved and s >= pending]
                    if done:
                        self._report(tune, max(done))
                    if runner.state == ev.RunState.FAILED:
                        raise RuntimeError(f"trial {self.name} failed: {self.error}")
                    return
        except SystemExit:
            # Tune ends this incarnation (PBT pauses or exploits it): end the runner cleanly, quickly.
            runner.submit(cmd.Stop(save=False))
            while runner.tick(block=False):
                pass
            raise
        except BaseException as exc:
            # Anything else (a failed report, the quality worker's error): the run still ends with its
            # events and lets go of its folder, so a reused Ray actor holds nothing of it.
            runner.fail(exc)
            raise
        finally:
            if not runner.done:
                runner.fail(RuntimeError(f"trial {self.name} ended without finishing its run"))
            self.served.close()

    # ------------------------------------------------------------ helpers
    def _wait_for_quality(self) -> None:
        worker = self.runner.quality
        while worker is not None and not worker.wait_idle(_PAUSED_POLL_S * 10):
            if stop_requested(self.spec.path):
                return

    def _sink(self, event: ev.Event) -> None:
        if isinstance(event, ev.QualityMeasured):
            self.quality[event.step] = event
        elif isinstance(event, ev.CheckpointSaved):
            self.saved[event.step] = event.path
        elif isinstance(event, ev.ErrorRaised):
            self.error = event.message
        elif isinstance(event, ev.RolledBack):
            self.quality = {s: q for s, q in self.quality.items() if s <= event.step}

    def _report(self, tune: Any, step: int) -> None:
        from ray.tune import Checkpoint

        q = self.quality[step]
        ratio = q.fd / q.fd_floor if q.fd_floor > 0 else q.fd
        quality = {k: v for k, v in dataclasses.asdict(q).items() if k != "step"}
        cfg = self.runner.cfg
        metrics = {METRIC: ratio, "fd": q.fd, "step": step, "classes_covered": q.classes_covered,
                   "lr_g": cfg.lr_g, "lr_d": cfg.lr_d, "d_steps": cfg.d_steps, "batch_size": cfg.batch_size}
        if self.spec.search != "pbt":  # the run folder holds the checkpoints; Tune needs none to rank
            tune.report(metrics)
            self.quality = {s: v for s, v in self.quality.items() if s > step}
            return
        staging = Path(tempfile.mkdtemp(prefix="gan-tui-trial-"))
        try:
            shutil.copy2(self.saved[step], staging / CKPT_FILE)
            meta = {"trial": self.name, "step": step, "run_dir": str(self.spec.path / self.name), "tune_config": self.tuned,
                    "quality": {**quality, "class_hist": list(q.class_hist)}}
            (staging / META_FILE).write_text(json.dumps(meta))
            tune.report(metrics, checkpoint=Checkpoint.from_directory(str(staging)))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.quality = {s: v for s, v in self.quality.items() if s > step}

    @staticmethod
    def _next_boundary(step: int, every: int) -> int:
        return (step // every + 1) * every


def _dataset(cfg: TrainConfig) -> ImageData:
    key = (cfg.dataset, cfg.data_root, cfg.seed)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_dataset(cfg.dataset, cfg.data_root, cfg.seed)
    return _DATA[key]
