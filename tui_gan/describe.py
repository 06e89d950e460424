"""Engine events in words: the one wording of each fact, for every surface that says it.

`notes(event)` gives the lines a log shows: the headless progress line's notes (train.log) and the
dashboard's notes pane. `toast(event)` gives the dashboard's pop-up for the few events worth one,
built from the same pieces (a toast's title is the start of the note, its body the rest). A
surface chooses which events it shows; how an event is said is decided only here. No Textual import:
the headless trainer uses this too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from engine import events as ev
from tui_gan.paths import shown_path, wrap_paths_in

#: An alarm's name on the quality panel, in toasts and in notes.
ALARM_TITLES = {
    "nonfinite": "NaN/inf",
    "d_wins": "D wins",
    "grad_spike": "grad spike",
    "collapse": "mode collapse",
}
_NONFINITE_HINT = "u: roll back to the last good checkpoint · U: the same with lower learning rates"


@dataclass(frozen=True)
class Note:
    """One line about an event."""

    text: str
    severity: str = "info"
    """info, warning or error: how the notes pane colours it."""
    routine: bool = False
    """A fact the dashboard shows in place (status bar, quality panel, title): its notes pane leaves it
    out, a plain log keeps it."""


@dataclass(frozen=True)
class Toast:
    """A dashboard notification: Textual's notify(message, title=, severity=, timeout=)."""

    title: str
    message: str
    severity: Literal["information", "warning", "error"] = "information"
    timeout: float | None = None  # None: Textual's default


def notes(event: ev.Event, *, after_pause: bool = False) -> list[Note]:
    """The lines that say what `event` means ([] when it is not worth a line). `after_pause`: the run
    was paused before this event (a StateChanged back to running then reads "resumed at step N")."""
    if isinstance(event, ev.StateChanged):
        return _state_changed(event, after_pause)
    say = _NOTES.get(type(event))
    return say(event) if say is not None else []


def toast(event: ev.Event) -> Toast | None:
    """The notification the dashboard pops up for `event`, or None."""
    if isinstance(event, ev.AlarmRaised):
        hint = f"\n{_NONFINITE_HINT}" if event.kind == "nonfinite" else ""
        return Toast(f"alarm: {alarm_title(event.kind)}", f"{event.message}{hint}", "error", 20)
    if isinstance(event, ev.RolledBack):
        return Toast("rolled back", _rolled_back(event))
    if isinstance(event, ev.CheckpointSaved) and event.reason != "periodic":
        return Toast("checkpoint saved", shown_path(event.path))
    if isinstance(event, ev.WarningRaised):
        return Toast("warning", wrap_paths_in(event.message), "warning", 10)
    if isinstance(event, ev.ErrorRaised):
        where = f"\ntraceback: {shown_path(event.traceback_path)}" if event.traceback_path else ""
        return Toast("training failed", f"{wrap_paths_in(event.message)}{where}", "error", 30)
    return None


def alarm_title(kind: str) -> str:
    """An alarm's name for people: `NaN/inf`, `D wins`, ... (an unknown kind as it is)."""
    return ALARM_TITLES.get(kind, kind)


def hyperparam_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`lr_g 0.001 -> 0.0005, d_steps 1 -> 2`: the values that changed."""
    changes = ", ".join(f"{k} {old[k]:g} -> {new[k]:g}" if k in old else f"{k} {new[k]:g}"
                        for k in new if new[k] != old.get(k))
    return changes or "hyperparameters set again (no value changed)"


# ------------------------------------------------------------------ per event
def _run_started(e: ev.RunStarted) -> list[Note]:
    how = f"resumed at step {e.step:,}" if e.resumed else "started"
    return [Note(f"{how}: {e.dataset}"),
            Note(f"device: {e.device_name} ({e.device})", routine=True),
            Note(f"run folder: {e.run_dir}", routine=True)]


def _checkpoint_saved(e: ev.CheckpointSaved) -> list[Note]:
    return [Note(f"checkpoint saved at step {e.step:,} ({e.reason}): {e.path}", routine=e.reason == "periodic")]


def _state_changed(e: ev.StateChanged, after_pause: bool) -> list[Note]:
    if e.reason and e.state != ev.RunState.RUNNING:
        return [Note(f"{e.state.value}: {e.reason}")]
    if e.state == ev.RunState.RUNNING and after_pause:
        return [Note(f"resumed at step {e.step:,}")]  # the pause's note is no longer the news
    return []


def _judge_ready(e: ev.JudgeReady) -> list[Note]:
    how = "loaded from the cache" if e.source == "cache" else f"trained in {e.train_s:.0f} s"
    return [Note(f"quality judge ready: {e.accuracy:.1%} on {e.held_out:,} held-out images ({how})"),
            Note(f"Frechet floor {e.fd_floor:.2f} at n={e.n:,} (real against real images)", routine=True)]


def _quality(e: ev.QualityMeasured) -> list[Note]:
    return [Note(f"quality at step {e.step:,}: FD {e.fd:.1f} (floor {e.fd_floor:.1f}), "
                 f"{e.classes_covered}/{len(e.class_hist)} classes, KL {e.kl_uniform:.3f}, "
                 f"confidence {e.confidence:.2f}, diversity {e.diversity:.2f}", routine=True)]


def _error(e: ev.ErrorRaised) -> list[Note]:
    where = f" (traceback: {e.traceback_path})" if e.traceback_path else ""
    return [Note(f"training failed at step {e.step:,}: {e.message}{where}", "error")]


def _rolled_back(e: ev.RolledBack) -> str:
    return f"from step {e.from_step:,} to {e.step:,}"


# Every event worth a line but StateChanged (which needs the phase before it: see notes()).
_NOTES: dict[type, Callable[[Any], list[Note]]] = {
    ev.RunStarted: _run_started,
    ev.CheckpointSaved: _checkpoint_saved,
    ev.SamplesExported: lambda e: [Note(f"samples exported: {e.path}")],
    ev.HyperparamsChanged: lambda e: [Note(f"step {e.step:,}: {hyperparam_changes(e.old, e.new)}")],
    ev.JudgeProgress: lambda e: [Note(f"training the quality judge ({e.epochs} epochs; once per dataset, then cached)")],
    ev.JudgeReady: _judge_ready,
    ev.QualityMeasured: _quality,
    ev.AlarmRaised: lambda e: [Note(f"ALARM {alarm_title(e.kind)}: {e.message}", "error")],
    ev.AlarmCleared: lambda e: [Note(f"step {e.step:,}: alarm {alarm_title(e.kind)} cleared")],
    ev.RolledBack: lambda e: [Note(f"rolled back {_rolled_back(e)} ({e.path})")],
    ev.WarningRaised: lambda e: [Note(f"warning: {e.message}", "warning")],
    ev.ErrorRaised: _error,
    ev.RunFinished: lambda e: [Note(f"{e.state.value} at step {e.step:,}", routine=True)],
}
