"""Engine events in words: the one wording of each fact, for every surface that says it.

`notes(event)` gives the lines a log shows: the headless progress line's notes (train.log) and the
dashboard's notes pane. `toast(event)` gives the dashboard's pop-up for the few events worth one,
built from the same pieces (a toast's title is the start of the note, its body the rest). A
surface chooses which events it shows; how an event is said is decided only here. No Textual import:
the headless trainer uses this too.
"""

from __future__ import annotations

import re
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
# engine/data.py's fallback note: "Using the embedded font digits: mnist is not in A, B and could not be
# downloaded (why). To use the real data, ..."
_FALLBACK_LEAD = "Using the embedded font digits: "
_FALLBACK = re.compile(re.escape(_FALLBACK_LEAD) + r"(?P<name>\S+) is not in (?P<roots>.+?) and could not be downloaded "
                       r"\((?P<why>.*)\)\. To ")
_STEP_BEFORE = re.compile(r"\b(steps? )(\d{4,})\b")
_STEPS_AFTER = re.compile(r"\b(\d{4,})( steps?)\b")
#: How a run's failure on a mistake of the user's begins (`gan-tui --detach` quotes that line of train.log).
USER_ERROR_LEAD = "cannot train: "
#: How any other failure's line begins (quoted the same way when a trainer ends at start-up).
FAILURE_LEAD = "training failed at step "
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
        return Toast(f"alarm: {alarm_title(event.kind)}", f"{with_thousands(event.message)}{hint}", "error", 20)
    if isinstance(event, ev.RolledBack):
        return Toast("rolled back", _rolled_back(event))
    if isinstance(event, ev.CheckpointSaved) and event.reason != "periodic":
        return Toast("checkpoint saved", shown_path(event.path))
    if isinstance(event, ev.RunStarted) and event.dataset_note:
        return Toast("synthetic digits", wrap_paths_in(event.dataset_note), "warning", 20)
    if isinstance(event, ev.WarningRaised) and event.kind != "dataset":  # the RunStarted's toast says that one
        return Toast("warning", wrap_paths_in(with_thousands(event.message)), "warning", 10)
    if isinstance(event, ev.ErrorRaised):
        if event.user_error:  # something to fix, not a crash: the message is the whole story
            return Toast("cannot train", wrap_paths_in(event.message), "error", 30)
        where = f"\ntraceback: {shown_path(event.traceback_path)}" if event.traceback_path else ""
        return Toast("training failed", f"{wrap_paths_in(with_thousands(event.message))}{where}", "error", 30)
    return None


def alarm_title(kind: str) -> str:
    """An alarm's name for people: `NaN/inf`, `D wins`, ... (an unknown kind as it is)."""
    return ALARM_TITLES.get(kind, kind)


def with_thousands(text: str) -> str:
    """Step counts in an engine message written as the status bar writes them: `step 2103` and
    `2103 steps` become `step 2,103` and `2,103 steps` (file names such as step_00002103.pt stay)."""
    text = _STEP_BEFORE.sub(lambda m: f"{m.group(1)}{int(m.group(2)):,}", text)
    return _STEPS_AFTER.sub(lambda m: f"{int(m.group(1)):,}{m.group(2)}", text)


# ------------------------------------------------------------------ the judge
def judge_status(p: ev.JudgeProgress) -> str:
    """`training the quality judge: epoch 3 of 6` while it trains (the status bar, the quality panel)."""
    return f"training the quality judge: epoch {p.epoch} of {p.epochs}"


def judge_resumed(p: ev.JudgeProgress) -> str:
    """`continuing from epoch 3` when an earlier run's judge training was kept ("" otherwise)."""
    return f"continuing from epoch {p.resumed + 1} (an earlier run's training was kept)" if p.resumed else ""


def judge_left_unfinished(p: ev.JudgeProgress) -> str:
    """What stopping now costs while the judge trains (the quit dialog)."""
    return (f"The quality judge is still training (epoch {p.epoch} of {p.epochs}): stopping now ends this run "
            "without quality figures. Its training so far is kept; the next run of this dataset continues it.")


def judge_unfinished_summary(p: ev.JudgeProgress) -> str:
    """The closing line of a run that ended before its judge was ready, counted as the engine's warning
    and `ls` count it: epochs done (none done: the next run starts the judge's training over)."""
    done = p.epoch - 1
    if done <= 0:
        return (f"quality: none yet, the judge was still in its first training epoch (of {p.epochs}); the next run "
                "of this dataset trains it from the start")
    return (f"quality: none yet, the judge was still training ({done} of {p.epochs} epochs done); the next run "
            "of this dataset continues its training")


def judge_unfinished_cell(epochs_done: object, epochs: object) -> str:
    """`judge 2/6` (epochs done of all): `gan-tui ls`'s quality column for a run that ended before its judge."""
    known = all(isinstance(v, int) and not isinstance(v, bool) for v in (epochs_done, epochs))
    return f"judge {epochs_done}/{epochs}" if known else "judge"


# ------------------------------------------------------------- the fallback data
def fallback_line(note: str, width: int = 200) -> str:
    """A fallback run's reason and its fix in at most `width` columns (the status bar's third line):
    the longest of a few wordings that fits; "" for a run that trains on what it was asked for."""
    if not note:
        return ""
    found = _FALLBACK.match(note)
    if found is None:  # a note of another shape: its first sentence
        candidates = [note.split(". ")[0]]
    else:
        name, roots, why = found.group("name", "roots", "why")
        candidates = [
            f"synthetic digits instead of {name}: not in {roots}, and the download failed ({why}); "
            f"--data-root DIR trains on your copy",
            f"synthetic digits instead of {name}: not found, download failed ({why}); use --data-root DIR",
            f"synthetic digits instead of {name}: not found, not downloaded; use --data-root DIR",
            f"synthetic digits: {name} not found, download failed; use --data-root DIR",
            f"synthetic digits: {name} not found; use --data-root DIR",
            f"synthetic: no {name}; --data-root DIR",
        ]
    return next((c for c in candidates if len(c) <= width), candidates[-1][: max(0, width)])


def fallback_sentence(note: str) -> str:
    """The engine's fallback note without its lead-in (it follows `started: synthetic ...`)."""
    return note.removeprefix(_FALLBACK_LEAD).strip()


def hyperparam_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`lr_g 0.001 -> 0.0005, d_steps 1 -> 2`: the values that changed."""
    changes = ", ".join(f"{k} {old[k]:g} -> {new[k]:g}" if k in old else f"{k} {new[k]:g}"
                        for k in new if new[k] != old.get(k))
    return changes or "hyperparameters set again (no value changed)"


# ------------------------------------------------------------------ per event
def _run_started(e: ev.RunStarted) -> list[Note]:
    how = f"resumed at step {e.step:,}" if e.resumed else "started"
    # A fallback says why on the start line itself: the first line anyone reads.
    why = f", because {fallback_sentence(e.dataset_note)}" if e.dataset_note else ""
    return [Note(f"{how}: {e.dataset}{why}", "warning" if why else "info"),
            Note(f"device: {e.device_name} ({e.device})", routine=True),
            Note(f"run folder: {e.run_dir}", routine=True)]


def _checkpoint_saved(e: ev.CheckpointSaved) -> list[Note]:
    return [Note(f"checkpoint saved at step {e.step:,} ({e.reason}): {e.path}", routine=e.reason == "periodic")]


def _state_changed(e: ev.StateChanged, after_pause: bool) -> list[Note]:
    if e.reason and e.state != ev.RunState.RUNNING:
        return [Note(f"{e.state.value}: {with_thousands(e.reason)}")]
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
    if e.user_error:  # a mistake to fix (a path, a device, a damaged checkpoint): no traceback to read
        return [Note(f"{USER_ERROR_LEAD}{e.message}", "error")]
    where = f" (traceback: {e.traceback_path})" if e.traceback_path else ""
    return [Note(f"{FAILURE_LEAD}{e.step:,}: {with_thousands(e.message)}{where}", "error")]


def _judge_progress(e: ev.JudgeProgress) -> list[Note]:
    resumed = f"; {judge_resumed(e)}" if e.resumed else ""
    return [Note(f"training the quality judge ({e.epochs} epochs; once per dataset, then cached{resumed})")]


def _warning(e: ev.WarningRaised) -> list[Note]:
    if e.kind == "dataset":
        return []  # the same text as RunStarted.dataset_note, which the start line says
    return [Note(f"warning: {with_thousands(e.message)}", "warning")]


def _rolled_back(e: ev.RolledBack) -> str:
    return f"from step {e.from_step:,} to {e.step:,}"


# Every event worth a line but StateChanged (which needs the phase before it: see notes()).
_NOTES: dict[type, Callable[[Any], list[Note]]] = {
    ev.RunStarted: _run_started,
    ev.CheckpointSaved: _checkpoint_saved,
    ev.SamplesExported: lambda e: [Note(f"samples exported: {e.path}")],
    ev.HyperparamsChanged: lambda e: [Note(f"step {e.step:,}: {hyperparam_changes(e.old, e.new)}")],
    ev.JudgeProgress: _judge_progress,
    ev.JudgeReady: _judge_ready,
    ev.QualityMeasured: _quality,
    ev.AlarmRaised: lambda e: [Note(f"ALARM {alarm_title(e.kind)}: {with_thousands(e.message)}", "error")],
    ev.AlarmCleared: lambda e: [Note(f"step {e.step:,}: alarm {alarm_title(e.kind)} cleared")],
    ev.RolledBack: lambda e: [Note(f"rolled back {_rolled_back(e)} ({e.path})")],
    ev.WarningRaised: _warning,
    ev.ErrorRaised: _error,
    ev.RunFinished: lambda e: [Note(f"{e.state.value} at step {e.step:,}", routine=True)],
}
