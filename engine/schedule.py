"""When side work runs: by wall time with step bounds, and at most a share of the machine.

A step takes 25 ms on a 2-core CPU and well under 1 ms on a GPU, so side work counted in steps
alone (a grid every 200 steps) is either too rare on one or many times a second on the other.
Here every kind of side work has one rule:

    due when at least `steps` steps AND at least `seconds` seconds have passed since the last one

("a grid every 2 s, but no more often than every 50 steps"). With `seconds` 0 the rule is the
plain step count of old, aligned to multiples of `steps` (tests and reproducible runs use it).
A cadence with a `share` also stretches its seconds so that the work, whose cost the caller
reports to `mark`, takes at most that share of the time: a conditional grid on the 2-core CPU
(re-estimating the averaged generator's BatchNorm statistics, then sampling) costs ~90 ms, so 2% of
the time puts its grids ~4.5 s apart there and leaves them 2 s apart on a GPU.

`DutyCycle` holds a background worker to a share of the wall time: after each piece of work it
rests (work time) x (1 - share) / share. Resting is measured, not guessed, so it adapts to the
machine and costs the training thread nothing.

Both take an injectable clock (and sleep) so they are tested with a fake one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from engine.config import TrainConfig

Clock = Callable[[], float]


class Cadence:
    """One kind of side work's timetable: `due(step)` asks, `mark(step)` records that it ran."""

    def __init__(self, steps: int, seconds: float, clock: Clock = time.monotonic, share: float = 1.0) -> None:
        self.steps = steps
        self.seconds = seconds
        self.share = share
        self._gap = seconds  # seconds, stretched by the last run's cost when there is a share
        self._clock = clock
        self._last_step = 0
        self._last_time = clock()

    def due(self, step: int) -> bool:
        """Whether the work should run after `step` (a pure read: nothing changes until mark)."""
        if self.steps <= 0:
            return False  # off (checkpoint_every 0)
        if self.seconds <= 0:
            return step % self.steps == 0
        if step - self._last_step < self.steps:
            return False
        return self._clock() - self._last_time >= self._gap

    def mark(self, step: int, cost_s: float = 0.0) -> None:
        """The work ran at `step` (also after a run-time jump: resume, rollback, a request), taking
        `cost_s` seconds of the caller's thread: with a share below 1 the next one waits long enough."""
        self._last_step = step
        self._last_time = self._clock()
        if self.seconds > 0 and self.share < 1:
            self._gap = max(self.seconds, cost_s * (1.0 - self.share) / self.share)

    def seconds_since(self) -> float:
        """Wall time since the work last ran."""
        return self._clock() - self._last_time


class DutyCycle:
    """Keeps one thread's work to `share` of the wall time by resting after each piece of it.

        cycle = DutyCycle(0.05)
        while work:
            do_one_piece()
            cycle.rest()          # sleeps 19x the time do_one_piece took

    `rest` measures the work since the end of the last rest; `hurry()` makes rests return at once
    (at the end of a run, when the last figures should land quickly).
    """

    def __init__(self, share: float, clock: Clock = time.perf_counter, sleep: Callable[[float], object] = time.sleep,
                 max_rest_s: float = 60.0) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be above 0 and at most 1, got {share}")
        self.share = share
        self._clock = clock
        self._sleep = sleep
        self._max_rest_s = max_rest_s
        self._hurry = False
        self._since = clock()
        self.busy_s = 0.0  # total work measured
        self.rested_s = 0.0  # total rest asked for

    def start(self) -> None:
        """Work starts now (time before this, waiting for a job, is not work)."""
        self._since = self._clock()

    def rest(self) -> float:
        """Sleep in proportion to the work since start() or the last rest; returns the seconds asked."""
        busy = max(0.0, self._clock() - self._since)
        self.busy_s += busy
        wait = 0.0 if self._hurry else min(self._max_rest_s, busy * (1.0 - self.share) / self.share)
        if wait > 0:
            self.rested_s += wait
            self._sleep(wait)
        self._since = self._clock()
        return wait

    def hurry(self) -> None:
        """No more resting (the run is ending)."""
        self._hurry = True


_DEVICE_STATS_EVERY_S = 5.0  # GPU memory readings travel with metrics records at most this often
_GRID_SHARE = 0.02  # most of the training thread's time that sample grids may take (they space out to keep it)


def run_cadences(cfg: TrainConfig, step: int = 0) -> dict[str, Cadence]:
    """Each kind of side work's timetable: wall time with step bounds, or plain step counts (seconds 0)."""
    cadences = {
        "log": Cadence(cfg.log_every, cfg.log_every_s),
        "grid": Cadence(cfg.sample_every, cfg.sample_every_s, share=_GRID_SHARE),
        "checkpoint": Cadence(cfg.checkpoint_every, cfg.checkpoint_every_s),
        # The step bound only: quality's time rule is the worker's share of the machine (see `accepting`).
        "quality": Cadence(cfg.quality_every, 0.0 if cfg.quality_share >= 1 else 1e-9),
        "device": Cadence(1, _DEVICE_STATS_EVERY_S),
    }
    for cadence in cadences.values():
        cadence.mark(step)
    return cadences


def steps_to_next_count(cadences: dict[str, Cadence], step: int) -> int | None:
    """Steps until the next multiple that a plain step-count cadence (seconds 0) waits for, or None
    when every cadence goes by time: a CUDA graph's replay of several steps must not jump over one."""
    counts = [c.steps - step % c.steps for c in cadences.values() if c.seconds <= 0 and c.steps > 0]
    return min(counts) if counts else None
