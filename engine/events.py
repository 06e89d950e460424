"""Where the engine meets any user interface: events out (past tense). Commands in (imperative)
are declared in engine/commands.py.

Events are frozen dataclasses of plain data (numbers, strings, dicts, numpy uint8 arrays), never
device tensors, so a consumer can hold them as long as it likes and they can cross a thread or a
process boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

import numpy as np


class RunState(str, Enum):
    """Where a run stands."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the training process died without a clean stop (seen by viewers and `ls`)


# ------------------------------------------------------------------ events
@dataclass(frozen=True)
class RunStarted:
    """The run is set up and about to train (or was resumed)."""

    run_dir: str
    config: dict[str, Any]
    device: str
    device_name: str
    dataset: str
    dataset_note: str
    step: int
    total_steps: int
    resumed: bool


@dataclass(frozen=True)
class MetricsLogged:
    """Means over the last log interval."""

    step: int
    epoch: float
    d_loss: float
    g_loss: float
    d_real: float
    d_fake: float
    grad_norm_g: float
    grad_norm_d: float
    lr_g: float
    lr_d: float
    images_per_s: float
    elapsed_s: float
    amp_skipped: int = 0  # steps whose update the fp16 GradScaler skipped (overflow: normal while it finds its scale)


@dataclass(frozen=True)
class DeviceStats:
    """The GPU a run trains on and its memory in MiB; posted with metrics records, at most every few seconds."""

    step: int
    device: str  # "cuda:0"
    name: str  # "NVIDIA H100 80GB HBM3"
    memory_allocated_mb: float  # held by tensors now
    memory_reserved_mb: float  # held by torch's caching allocator (what nvidia-smi shows, less the context)
    memory_total_mb: float
    memory_peak_mb: float  # the most tensors held at once since the run started


@dataclass(frozen=True, eq=False)
class SamplesGenerated:
    """A grid of generated images, uint8 (N, 28, 28); `fixed` when from the run's fixed noise."""

    step: int
    images: np.ndarray
    fixed: bool = True
    path: str = ""
    digit: int | None = None  # the class every image was drawn for (SampleFresh with a digit)


@dataclass(frozen=True)
class HyperparamsChanged:
    """Live hyperparameters changed at `step`: the values before and after."""

    step: int
    old: dict[str, float | int]
    new: dict[str, float | int]


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint holding everything to continue was written."""

    step: int
    path: str
    reason: str


@dataclass(frozen=True)
class SamplesExported:
    """The current sample grid was written as a PNG."""

    step: int
    path: str


@dataclass(frozen=True)
class JudgeReady:
    """The dataset's classifier is trained (or loaded from the cache); quality figures follow."""

    accuracy: float
    held_out: int
    source: str  # "trained" or "cache"
    train_s: float
    n: int  # samples per quality measurement
    fd_floor: float


@dataclass(frozen=True)
class JudgeProgress:
    """The judge is being trained (the first time a dataset is used): epoch `epoch` of `epochs` began;
    `resumed` epochs were done by an earlier run that ended first (their work was kept)."""

    epoch: int
    epochs: int
    resumed: int = 0


@dataclass(frozen=True)
class QualityMeasured:
    """Sample quality at `step`, through the judge, on n generated vs n real held-out images."""

    step: int
    fd: float
    fd_floor: float
    n: int
    class_hist: tuple[float, ...]  # share of samples per class
    classes_covered: int  # classes with at least 2% of samples
    kl_uniform: float  # KL(histogram || uniform), nats
    confidence: float  # mean top-class probability
    diversity: float  # mean pairwise distance of samples / that of real images
    # Conditional runs only (None / empty otherwise):
    label_agreement: float | None = None  # share of samples the judge reads as the class asked for
    class_fd: tuple[float, ...] = ()  # Frechet distance per class (samples of class k vs real class k)
    class_fd_floor: tuple[float, ...] = ()  # the same between two real sets, per class


@dataclass(frozen=True)
class AlarmRaised:
    """A health alarm started: `kind` is nonfinite, d_wins, collapse or grad_spike. Raised once, then cleared."""

    step: int
    kind: str
    message: str


@dataclass(frozen=True)
class AlarmCleared:
    """The condition behind an alarm is gone."""

    step: int
    kind: str


@dataclass(frozen=True)
class RolledBack:
    """The nets, optimizers, RNG and hyperparameters were restored from a checkpoint; records after
    `step` are void. `hyperparams` are those restored (before any lr_scale, which follows as a
    HyperparamsChanged); `replaced` holds the live values they replaced, empty when they were equal."""

    from_step: int
    step: int
    path: str
    lr_g: float
    lr_d: float
    hyperparams: dict[str, float | int] = field(default_factory=dict)  # in force now: the checkpoint's
    replaced: dict[str, float | int] = field(default_factory=dict)  # the live ones they replaced, when different


@dataclass(frozen=True)
class StateChanged:
    """The run moved to a new state."""

    state: RunState
    step: int
    reason: str = ""


@dataclass(frozen=True)
class WarningRaised:
    """Something the user should know; training goes on (or was paused, as the text says)."""

    step: int
    message: str
    kind: str = "warning"


@dataclass(frozen=True)
class ErrorRaised:
    """Training failed; the traceback is here and in the run folder."""

    step: int
    message: str
    traceback: str
    traceback_path: str = ""
    user_error: bool = False  # a mistake the user can fix (a path, a device, a damaged checkpoint): exit status 2


@dataclass(frozen=True)
class RunFinished:
    """The worker is done and will post nothing more. `checkpoint`: the newest checkpoint on disk at
    the end ("" when there is none: the run cannot be resumed)."""

    step: int
    state: RunState
    run_dir: str
    checkpoint: str = ""


Event = Union[
    RunStarted,
    MetricsLogged,
    SamplesGenerated,
    HyperparamsChanged,
    CheckpointSaved,
    SamplesExported,
    StateChanged,
    WarningRaised,
    ErrorRaised,
    RunFinished,
    JudgeReady,
    JudgeProgress,
    QualityMeasured,
    AlarmRaised,
    AlarmCleared,
    RolledBack,
    DeviceStats,
]
