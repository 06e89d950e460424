"""What a sweep was asked to do, and where it stands: plain records in the sweep folder, no Ray.

    RUNS_DIR/SWEEP_NAME/
      sweep_spec.json   SweepSpec: the base config, the search, the ranges (written by `gan-tui sweep`;
                        made with O_EXCL, so of two sweeps started into one folder exactly one runs)
      sweep.json        SweepStatus: the driver's view (state, pid, host, Ray's trial states, the best trial)
      stop              present once a stop was asked for: every trial saves a checkpoint and ends
      .nodes-check      while a sweep on a cluster starts: the marker every node must be able to read
      driver.log        the detached Ray driver's output
      .ray/             Ray Tune's own results and checkpoints
      trial-000/ ...    one ordinary gan-tui run folder per trial

The viewer, `gan-tui sweep` and the trials read these without importing Ray.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.config import TrainConfig
from engine.lock import pid_alive

SEARCHES = ("random", "grid", "pbt")
SPEC_NAME = "sweep_spec.json"
STATUS_NAME = "sweep.json"
STOP_NAME = "stop"
LOG_NAME = "driver.log"
RAY_DIR_NAME = ".ray"
MARKER_NAME = ".nodes-check"
LIVE_STATES = ("starting", "running", "stopping")  # a driver should be alive behind these
METRIC = "fd_ratio"  # the run's own Frechet distance over its real-vs-real floor; lower is better


class SweepError(ValueError):
    """A sweep that cannot be run as asked; the message says why in one line."""


class SweepTaken(SweepError):
    """The sweep folder belongs to another sweep (started before, or at the same moment)."""


@dataclass(frozen=True)
class Range:
    """A learning-rate range searched on a log scale; lo == hi means one fixed value."""

    lo: float
    hi: float

    @classmethod
    def parse(cls, name: str, text: str) -> Range:
        """`1e-4:1e-3` (a range) or `2e-4` (fixed); SweepError names the flag otherwise."""
        parts = text.split(":")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise SweepError(f"{name} {text!r}: use LO:HI (e.g. 1e-4:1e-3) or one number") from None
        if len(values) not in (1, 2) or not all(math.isfinite(v) and 0 < v <= 1 for v in values):
            raise SweepError(f"{name} {text!r}: use LO:HI with 0 < LO <= HI <= 1, or one number")
        lo, hi = values[0], values[-1]
        if lo > hi:
            raise SweepError(f"{name} {text!r}: LO must not be above HI")
        return cls(lo, hi)

    @property
    def fixed(self) -> bool:
        return self.lo == self.hi

    def points(self, k: int) -> list[float]:
        """k values spread evenly on a log scale from lo to hi (one if the range is fixed)."""
        if self.fixed or k <= 1:
            return [self.lo] if self.fixed else [math.sqrt(self.lo * self.hi)]
        step = (math.log(self.hi) - math.log(self.lo)) / (k - 1)
        return [float(f"{math.exp(math.log(self.lo) + i * step):.3g}") for i in range(k)]


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """`32,64,128` -> (32, 64, 128); SweepError for anything else."""
    try:
        sizes = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise SweepError(f"--batch-size {text!r}: use whole numbers separated by commas, e.g. 32,64") from None
    if not sizes or any(not 1 <= s <= 65536 for s in sizes):
        raise SweepError(f"--batch-size {text!r}: each size must be from 1 to 65536")
    return tuple(dict.fromkeys(sizes))


@dataclass(frozen=True)
class SweepSpec:
    """Everything the detached driver needs to run the sweep."""

    name: str
    sweep_dir: str
    """Absolute path of RUNS_DIR/SWEEP_NAME (trials run with another working folder)."""
    config: dict[str, Any]
    """The base TrainConfig as a dict; each trial changes lr_g, lr_d, batch_size (and d_steps)."""
    trials: int
    search: str = "random"
    lr_g: tuple[float, float] = (1e-4, 1e-3)
    lr_d: tuple[float, float] = (1e-4, 1e-3)
    batch_sizes: tuple[int, ...] = ()
    parallel: int = 0
    """Trials at once (0: as many as the resources allow)."""
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 0.0
    """0: the box's CPUs shared by `parallel` trials (at least 0.25 each)."""
    address: str | None = None
    judge_cache: str | None = None
    """Where the dataset's judge is cached (None: the user cache); trials and driver share it."""
    perturbation_interval: int = 1
    """PBT: reports (quality measurements) between perturbations."""
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_g", tuple(self.lr_g))
        object.__setattr__(self, "lr_d", tuple(self.lr_d))
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))

    def validate(self) -> None:
        """SweepError for a sweep that cannot run (checked before anything starts)."""
        if self.search not in SEARCHES:
            raise SweepError(f"--search {self.search!r}: use one of {', '.join(SEARCHES)}")
        if not 1 <= self.trials <= 10_000:
            raise SweepError(f"--trials {self.trials}: must be from 1 to 10000")
        if self.search == "pbt" and self.trials < 2:
            raise SweepError("--search pbt needs at least 2 trials (a population to copy from)")
        if self.parallel < 0:
            raise SweepError(f"--parallel {self.parallel}: must be 0 (as many as fit) or more")
        if not 0 <= self.gpus_per_trial <= 64:
            raise SweepError(f"--gpus-per-trial {self.gpus_per_trial}: must be from 0 to 64 (fractions share a GPU)")
        if not 0 <= self.cpus_per_trial <= 4096:
            raise SweepError(f"--cpus-per-trial {self.cpus_per_trial}: must be from 0 (a share of the CPUs) to 4096")
        if self.perturbation_interval < 1:
            raise SweepError(f"--perturbation-interval {self.perturbation_interval}: must be 1 or more "
                             "(quality reports between two PBT perturbations)")
        cfg = self.base_config()
        if cfg.quality_every <= 0:
            raise SweepError("a sweep ranks trials by their Frechet distance: --quality-every must be above 0")
        if cfg.quality_every > cfg.steps:
            raise SweepError(f"--quality-every {cfg.quality_every} is longer than the run ({cfg.steps} steps): no trial would report")
        if self.gpus_per_trial == 0 and cfg.device == "cuda":
            raise SweepError("--device cuda needs --gpus-per-trial above 0 (e.g. 0.25 puts 4 trials on a GPU)")

    def base_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config)

    @property
    def path(self) -> Path:
        return Path(self.sweep_dir)

    def save(self) -> None:
        _write_json(self.path / SPEC_NAME, asdict(self))

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepSpec:
        try:
            data = json.loads((sweep_dir / SPEC_NAME).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SweepError(f"{sweep_dir} is not a gan-tui sweep ({SPEC_NAME}: {exc})") from None
        return cls(**data)


@dataclass
class SweepStatus:
    """The driver's record of the sweep, rewritten (atomically) as trials report."""

    state: str = "starting"
    """starting, running, stopping, finished, stopped, failed (as the driver wrote it; effective_state()
    tells a driver that is gone)."""
    pid: int = 0
    host: str = ""
    """The machine the driver runs on (its pid means something only there)."""
    updated: float = 0.0
    message: str = ""
    trials: dict[str, dict[str, Any]] = field(default_factory=dict)
    """trial folder name -> {"status": Ray's PENDING/RUNNING/PAUSED/TERMINATED/ERROR, "config": {...},
    "fd_ratio": last reported, "step": last reported}."""
    best: dict[str, Any] = field(default_factory=dict)
    """{"trial": name, "fd_ratio": x, "config": {...}} once any trial reported."""

    def save(self, sweep_dir: Path) -> None:
        self.updated = time.time()
        _write_json(sweep_dir / STATUS_NAME, asdict(self))

    def effective_state(self) -> str:
        """The state viewers show: `state`, or "interrupted" when it says the sweep is live but its driver
        is gone (killed, crashed, the machine rebooted). Told on the driver's machine only; elsewhere
        (a shared runs folder) the written state is all there is."""
        local = not self.host or self.host == socket.gethostname()
        if self.state in LIVE_STATES and self.pid > 0 and local and not pid_alive(self.pid):
            return "interrupted"
        return self.state

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepStatus:
        """The last written status, or a blank one when there is none yet."""
        try:
            data = json.loads((sweep_dir / STATUS_NAME).read_text())
        except (OSError, json.JSONDecodeError):
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def sweep_state(sweep_dir: Path) -> str:
    """Where a sweep stands for `ls` and the viewers: SweepStatus.effective_state() of its sweep.json
    (starting, running, stopping, finished, stopped, failed, or interrupted when its driver is gone)."""
    return SweepStatus.load(sweep_dir).effective_state()


def is_sweep(path: Path) -> bool:
    """A folder made by `gan-tui sweep`."""
    return (path / SPEC_NAME).is_file()


def claim_sweep_dir(sweep_dir: Path) -> bool:
    """Make `sweep_dir` this sweep's, atomically: its spec file is created with O_EXCL, so of two
    `gan-tui sweep` started into one folder at the same moment exactly one gets it. SweepTaken for the
    other (and for a folder that already holds anything). Returns whether the folder was made here
    (release_sweep_dir removes it again then)."""
    made = False
    try:
        sweep_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            sweep_dir.mkdir()
            made = True
        except FileExistsError:
            pass
        fd = os.open(sweep_dir / SPEC_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise SweepTaken(f"{sweep_dir} is another sweep's folder; pick another --sweep-name "
                         f"(watch that one with: gan-tui attach {sweep_dir})") from None
    except OSError as exc:
        raise SweepError(f"{sweep_dir} cannot be made: {exc.strerror or exc}") from None
    os.close(fd)
    others = [p.name for p in sweep_dir.iterdir() if p.name != SPEC_NAME]
    if others:  # a folder of something else (a run, files): never mixed with a sweep
        release_sweep_dir(sweep_dir, made)
        raise SweepTaken(f"{sweep_dir} already holds files ({others[0]}, ...); pick another --sweep-name")
    return made


def release_sweep_dir(sweep_dir: Path, made: bool) -> None:
    """Undo claim_sweep_dir for a sweep refused before its driver started (no stray folder is left)."""
    for name in (SPEC_NAME, MARKER_NAME):
        try:
            (sweep_dir / name).unlink()
        except OSError:
            pass
    if made:
        try:
            sweep_dir.rmdir()
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise


def request_stop(sweep_dir: Path) -> None:
    """Ask every trial to save a checkpoint and end, and the driver to start no new trial."""
    (sweep_dir / STOP_NAME).write_text(f"{time.time()}\n")


def stop_requested(sweep_dir: Path) -> bool:
    return (sweep_dir / STOP_NAME).exists()


def trial_folder_name(trial_id: str) -> str:
    """Ray's trial id ends in a 5-digit counter: `3b2f1_00004` -> `trial-004`."""
    tail = trial_id.rsplit("_", 1)[-1]
    return f"trial-{int(tail):03d}" if tail.isdigit() else f"trial-{trial_id}"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


__all__ = [
    "LIVE_STATES", "MARKER_NAME", "METRIC", "Range", "SEARCHES", "SweepError", "SweepSpec", "SweepStatus", "SweepTaken",
    "claim_sweep_dir", "is_sweep", "parse_batch_sizes", "release_sweep_dir", "request_stop", "stop_requested",
    "sweep_state", "trial_folder_name",
]
