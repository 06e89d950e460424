"""What the dashboard shows, as a pure reducer over engine events (testable without Textual).

The app feeds every event to `DashboardState.apply` as it arrives (cheap: appends and sets) and
redraws on a timer from whatever `changed` says; so a burst of events costs one redraw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine import events as ev
from tui_gan.describe import judge_status, notes
from tui_gan.formatting import eta_seconds

_GRIDS_IN_MEMORY = 64  # older grids keep only their PNG path and are decoded when stepped back to
_MAX_NOTES = 1000  # the notes screen scrolls through these; the panel shows the newest
SMOOTHING_LEVELS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
OVER = ("finished", "stopped", "failed", "interrupted")  # the phases of a run that has ended


@dataclass
class Grid:
    """One sample grid: from the fixed noise (comparable over time) or fresh noise."""

    step: int
    images: np.ndarray | None
    path: str = ""
    fixed: bool = True


@dataclass
class MetricsHistory:
    """Column lists of every metrics record of the run, in step order."""

    step: list[int] = field(default_factory=list)
    d_loss: list[float] = field(default_factory=list)
    g_loss: list[float] = field(default_factory=list)
    d_real: list[float] = field(default_factory=list)
    d_fake: list[float] = field(default_factory=list)

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (a MetricsLogged as a dict, or a metrics.jsonl line)."""
        if self.step and record["step"] <= self.step[-1]:
            return  # a replayed or rolled-back record: the newest history wins
        self.step.append(int(record["step"]))
        for name in ("d_loss", "g_loss", "d_real", "d_fake"):
            value = record.get(name)
            getattr(self, name).append(float("nan") if value is None else float(value))

    def __len__(self) -> int:
        return len(self.step)

    def truncate(self, step: int) -> None:
        """Forget records after `step` (a rollback made them void)."""
        keep = sum(1 for s in self.step if s <= step)
        for name in ("step", "d_loss", "g_loss", "d_real", "d_fake"):
            del getattr(self, name)[keep:]


@dataclass
class QualityHistory:
    """The run's quality measurements, in step order, and the judge behind them."""

    step: list[int] = field(default_factory=list)
    fd: list[float] = field(default_factory=list)
    latest: ev.QualityMeasured | None = None
    judge: ev.JudgeReady | None = None
    fd_floor: float | None = None
    judge_progress: ev.JudgeProgress | None = None  # while the judge trains (its first use on a dataset)

    def append(self, q: ev.QualityMeasured) -> None:
        """Add one measurement (a replayed older one only refreshes nothing)."""
        self.fd_floor = q.fd_floor
        if self.step and q.step <= self.step[-1]:
            return
        self.step.append(q.step)
        self.fd.append(q.fd)
        self.latest = q

    def truncate(self, step: int) -> None:
        """Forget measurements after `step`."""
        keep = sum(1 for s in self.step if s <= step)
        del self.step[keep:], self.fd[keep:]
        if self.latest is not None and self.latest.step > step:
            self.latest = None

    def __len__(self) -> int:
        return len(self.step)


class DashboardState:
    """Everything on screen, updated by events; `changed` names the parts that need a redraw."""

    def __init__(self) -> None:
        self.phase = "loading"
        self.loading_message = "starting..."
        self.run_dir = ""
        self.device = ""
        self.device_name = ""
        self.device_memory = ""  # GPU memory from the trainer's DeviceStats, so attached viewers show it too
        self.fresh_digit: int | None = None  # the class of the fresh grid on screen (conditional runs)
        self.dataset = ""
        self.dataset_note = ""
        self.config: dict[str, Any] = {}
        self.hparams: dict[str, float | int] = {}
        self.total_steps = 0
        self.step = 0
        self.epoch = 0.0
        self.images_per_s = 0.0
        self.elapsed_s = 0.0
        self.history = MetricsHistory()
        self.quality = QualityHistory()
        self.alarms: dict[str, ev.AlarmRaised] = {}
        self.markers: list[int] = []
        self.grids: list[Grid] = []
        self.fresh: Grid | None = None
        self.view_index: int | None = None  # None follows the newest grid
        self.notes: list[tuple[str, str]] = []  # (severity, text), newest last, the last _MAX_NOTES
        self.notes_total = 0
        self.error: ev.ErrorRaised | None = None
        self.last_checkpoint = ""
        self.last_export = ""
        self.changed: set[str] = {"status", "plot", "grid", "hparams", "notes", "quality"}

    # ------------------------------------------------------------------ API
    def apply(self, event: ev.Event) -> None:
        """Fold one engine event into the state, and note what it means (in tui_gan/describe.py's
        words; facts the screen shows in place stay out of the notes). A handler that returns False
        keeps the event out of the notes (said once already)."""
        after_pause = self.phase == ev.RunState.PAUSED.value
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None and handler(event) is False:
            return
        for line in notes(event, after_pause=after_pause):
            if not line.routine:
                self.note(line.severity, line.text)

    def take_changes(self) -> set[str]:
        """The parts changed since the last call (and forget them)."""
        changed, self.changed = self.changed, set()
        return changed

    def loading(self, message: str) -> None:
        """Start-up progress before the engine speaks (importing torch, loading data)."""
        self.loading_message = message
        self.changed.add("status")

    def load_history(self, records: list[dict[str, Any]], grids: list[tuple[int, str]]) -> None:
        """Merge a resumed run's metrics log and saved grids in front of what arrived live."""
        live = self.history
        self.history = MetricsHistory()
        older: list[ev.QualityMeasured] = []
        judge: dict[str, Any] = {}
        for record in records:
            if record.get("type") == "metrics" and (not live.step or record["step"] < live.step[0]):
                self.history.append(record)
            elif record.get("type") == "hparams":
                self.markers.append(int(record["step"]))
            elif record.get("type") == "quality" and (not self.quality.step or record["step"] < self.quality.step[0]):
                older.append(_quality_from_record(record))
            elif record.get("type") == "judge":
                judge = record
        if older:
            live_q = self.quality
            self.quality = QualityHistory(judge=live_q.judge)
            for q in older:
                self.quality.append(q)
            self.quality.step += live_q.step
            self.quality.fd += live_q.fd
            self.quality.latest = live_q.latest or self.quality.latest
            self.quality.fd_floor = live_q.fd_floor or self.quality.fd_floor
            self.changed.add("quality")
        if judge and self.quality.judge is None:
            self.quality.judge = ev.JudgeReady(judge.get("accuracy") or 0.0, judge.get("held_out") or 0,
                                               judge.get("source", ""), 0.0, judge.get("n") or 0, judge.get("fd_floor") or 0.0)
        for i, step in enumerate(live.step):
            self.history.append({"step": step, "d_loss": live.d_loss[i], "g_loss": live.g_loss[i],
                                 "d_real": live.d_real[i], "d_fake": live.d_fake[i]})
        self.markers = sorted(set(self.markers))
        known = {g.step for g in self.grids}
        shown = self.grids[self.view_index] if self.view_index is not None else None
        older = [Grid(step, None, path) for step, path in grids if step not in known]
        self.grids = sorted(older + self.grids, key=lambda g: g.step)
        if shown is not None:
            self.view_index = self.grids.index(shown)  # keep showing the same grid
        self.changed |= {"plot", "grid"}

    def shown_grid(self) -> Grid | None:
        """The grid on screen: a fresh sample if asked for, else the one stepped to, else the newest."""
        if self.fresh is not None:
            return self.fresh
        if not self.grids:
            return None
        index = len(self.grids) - 1 if self.view_index is None else self.view_index
        return self.grids[index]

    def browse(self, delta: int) -> None:
        """Step back (-1) or forth (+1) through this run's grids; past the newest follows live again."""
        if not self.grids:
            return
        self.fresh = None
        current = len(self.grids) - 1 if self.view_index is None else self.view_index
        target = max(0, current + delta)
        self.view_index = None if target >= len(self.grids) - 1 else target
        self.changed.add("grid")

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the run's average pace so far."""
        return eta_seconds(self.step, self.total_steps, self.elapsed_s)

    @property
    def d_probs(self) -> tuple[float, float] | None:
        """The latest mean D(real) and D(fake)."""
        if not self.history:
            return None
        return self.history.d_real[-1], self.history.d_fake[-1]

    @property
    def notes_dropped(self) -> int:
        """Notes of this session no longer kept (only the newest _MAX_NOTES are)."""
        return self.notes_total - len(self.notes)

    @property
    def judge_status(self) -> str:
        """What the quality judge is doing, while that is worth a line ("" once it is ready); after
        the run's end, that it never got ready."""
        p = self.quality.judge_progress
        if p is None:
            return ""
        if self.phase in OVER:
            return f"no quality figures: the judge was still training (epoch {p.epoch} of {p.epochs})"
        return judge_status(p)

    @property
    def judge_unfinished(self) -> ev.JudgeProgress | None:
        """The judge's progress while it trains and the run is live: stopping now leaves no quality figures."""
        return self.quality.judge_progress if self.phase in ("running", "paused") else None

    def note(self, severity: str, text: str) -> None:
        """Add a line to the dashboard's event log."""
        self.notes.append((severity, text))
        self.notes_total += 1
        del self.notes[:-_MAX_NOTES]
        self.changed.add("notes")

    # ------------------------------------------------------------- handlers
    def _on_DeviceStats(self, e: ev.DeviceStats) -> None:
        self.device, self.device_name = e.device, e.name
        self.device_memory = f"{e.memory_allocated_mb:,.0f} of {e.memory_total_mb:,.0f} MiB"
        self.changed.add("status")

    def _on_RunStarted(self, e: ev.RunStarted) -> None:
        self.run_dir, self.device, self.device_name = e.run_dir, e.device, e.device_name
        self.dataset, self.dataset_note = e.dataset, e.dataset_note
        self.config = e.config
        self.hparams = {k: e.config[k] for k in ("lr_g", "lr_d", "beta1", "beta2", "d_steps", "label_smoothing")}
        self.total_steps, self.step = e.total_steps, e.step
        if e.resumed and self.phase == "interrupted":
            # A viewer that followed its run through a kill and a resume. (Any viewer that connects is
            # sent the run's RunStarted again: then it is no news, and nothing is forgotten.)
            self._forget_after(e.step)
        self.changed |= {"status", "hparams"}

    def _on_MetricsLogged(self, e: ev.MetricsLogged) -> None:
        if self.history and e.step <= self.history.step[-1]:
            return  # a replayed record (a second viewer, a resume) says nothing new
        self.step, self.epoch = e.step, e.epoch
        self.images_per_s, self.elapsed_s = e.images_per_s, e.elapsed_s
        self.history.append({"step": e.step, "d_loss": e.d_loss, "g_loss": e.g_loss, "d_real": e.d_real, "d_fake": e.d_fake})
        self.changed |= {"status", "plot"}

    def _on_SamplesGenerated(self, e: ev.SamplesGenerated) -> None:
        grid = Grid(e.step, e.images, e.path, e.fixed)
        if e.fixed:
            if not self.grids or e.step > self.grids[-1].step:
                self.grids.append(grid)
            else:  # already known (read from the run folder, or a replay): replace, keep the order
                same = [i for i, g in enumerate(self.grids) if g.step == e.step]
                if same:
                    self.grids[same[0]] = grid
                else:
                    self.grids = sorted([*self.grids, grid], key=lambda g: g.step)
            viewed = self.shown_grid()
            for old in self.grids[:-_GRIDS_IN_MEMORY]:
                if old.path and old is not viewed:
                    old.images = None
        else:
            self.fresh = grid
            self.fresh_digit = getattr(e, "digit", None)
        self.changed.add("grid")

    def _on_HyperparamsChanged(self, e: ev.HyperparamsChanged) -> None:
        self.hparams = dict(e.new)
        self.markers.append(e.step)
        self.changed |= {"hparams", "plot"}

    def _on_CheckpointSaved(self, e: ev.CheckpointSaved) -> None:
        self.last_checkpoint = e.path
        self.changed.add("status")

    def _on_SamplesExported(self, e: ev.SamplesExported) -> None:
        self.last_export = e.path

    def _on_StateChanged(self, e: ev.StateChanged) -> None:
        self.phase = e.state.value
        self.step = e.step
        self.changed.add("status")

    def _on_JudgeProgress(self, e: ev.JudgeProgress) -> bool:
        first = self.quality.judge_progress is None  # noted once; the status line counts the epochs
        self.quality.judge_progress = e
        self.changed |= {"quality", "status"}
        return first

    def _on_JudgeReady(self, e: ev.JudgeReady) -> None:
        self.quality.judge_progress = None
        self.quality.judge = e
        self.quality.fd_floor = e.fd_floor
        self.changed |= {"quality", "status"}

    def _on_QualityMeasured(self, e: ev.QualityMeasured) -> None:
        self.quality.append(e)
        self.changed.add("quality")

    def _on_AlarmRaised(self, e: ev.AlarmRaised) -> None:
        self.alarms[e.kind] = e
        self.changed |= {"quality", "status"}

    def _on_AlarmCleared(self, e: ev.AlarmCleared) -> bool:
        self.changed |= {"quality", "status"}
        return self.alarms.pop(e.kind, None) is not None  # a note only for an alarm this screen showed

    def _on_RolledBack(self, e: ev.RolledBack) -> None:
        self.step = e.step
        self._forget_after(e.step)

    def _forget_after(self, step: int) -> None:
        """The run went back to `step` (a rollback, a resume): what came after it is void."""
        self.history.truncate(step)
        self.quality.truncate(step)
        self.markers = [m for m in self.markers if m <= step]
        shown = self.shown_grid()
        self.grids = [g for g in self.grids if g.step <= step]
        if self.view_index is not None and (shown not in self.grids):
            self.view_index = None
        self.changed |= {"plot", "grid", "quality", "status"}

    def _on_ErrorRaised(self, e: ev.ErrorRaised) -> None:
        self.error = e
        self.changed.add("status")

    def _on_RunFinished(self, e: ev.RunFinished) -> None:
        self.phase = e.state.value
        self.step = e.step
        self.changed.add("status")


def _quality_from_record(record: dict[str, Any]) -> ev.QualityMeasured:
    """A metrics.jsonl quality line back into the event it was written from."""
    def number(key: str) -> float:
        value = record.get(key)
        return float(value) if isinstance(value, (int, float)) else float("nan")

    return ev.QualityMeasured(
        step=int(record["step"]), fd=number("fd"), fd_floor=number("fd_floor"), n=int(record.get("n") or 0),
        class_hist=tuple(record.get("class_hist") or ()), classes_covered=int(record.get("classes_covered") or 0),
        kl_uniform=number("kl_uniform"), confidence=number("confidence"), diversity=number("diversity"),
    )
