"""Event-to-text in one place (tui_gan/describe.py): the headless log, the dashboard's notes pane and its
toasts say each fact in the same words."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from engine import events as ev
from tui_gan.describe import notes, toast
from tui_gan.process.headless import ProgressLine
from tui_gan.state import DashboardState

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5, "beta2": 0.999, "d_steps": 1, "label_smoothing": 0.0}
HP = {k: CONFIG[k] for k in ("lr_g", "lr_d", "beta1", "beta2", "d_steps", "label_smoothing")}
EVENTS = [
    ev.RunStarted("runs/x", CONFIG, "cpu", "CPU", "synthetic (generated, 10,000 images)", "", 1200, 5000, True),
    ev.HyperparamsChanged(1300, HP, {**HP, "lr_g": 5e-4}),
    ev.CheckpointSaved(1400, "runs/x/checkpoints/step_00001400.pt", "requested"),
    ev.CheckpointSaved(1500, "runs/x/checkpoints/step_00001500.pt", "periodic"),
    ev.SamplesExported(1500, "runs/x/exports/grid.png"),
    ev.JudgeReady(0.991, 2000, "cache", 0.0, 1000, 8.6),
    ev.QualityMeasured(1500, 30.0, 8.6, 1000, (0.1,) * 10, 10, 0.01, 0.9, 0.95),
    ev.AlarmRaised(1600, "nonfinite", "D loss is NaN"),
    ev.AlarmCleared(1700, "nonfinite"),
    ev.RolledBack(1700, 1400, "runs/x/checkpoints/step_00001400.pt", 1e-3, 1e-3),
    ev.WarningRaised(1750, "disk full: runs/x/metrics.jsonl NOT written", "disk"),
    ev.ErrorRaised(1800, "CUDA out of memory", "Traceback ...", "runs/x/error.log"),
    ev.RunFinished(1800, ev.RunState.FAILED, "runs/x"),
]


def test_the_headless_log_and_the_notes_pane_say_each_fact_in_the_same_words():
    out = io.StringIO()
    line, state = ProgressLine(out), DashboardState()
    for event in EVENTS:
        line.show(event)
        state.apply(event)
    logged = out.getvalue().splitlines()
    pane = [text for _, text in state.notes]
    assert pane and all(text in logged for text in pane), (pane, logged)
    assert "resumed at step 1,200: synthetic (generated, 10,000 images)" in pane
    assert "step 1,300: lr_g 0.001 -> 0.0005" in pane
    assert "ALARM NaN/inf: D loss is NaN" in pane and "step 1,700: alarm NaN/inf cleared" in pane
    # Facts the dashboard shows in place are in the log only.
    routine = [n.text for e in EVENTS for n in notes(e) if n.routine]
    assert "run folder: runs/x" in routine and "failed at step 1,800" in routine
    assert all(text in logged and text not in pane for text in routine)
    assert dict(state.notes)["error"].startswith("training failed at step 1,800: CUDA out of memory")


def test_a_toast_is_the_start_and_the_rest_of_its_note():
    rolled = EVENTS[9]
    popup = toast(rolled)
    assert popup is not None and f"{popup.title} {popup.message}" in notes(rolled)[0].text
    assert toast(EVENTS[3]) is None  # a periodic checkpoint: no toast, and no note in the pane
    assert toast(EVENTS[7]).title == "alarm: NaN/inf" and "u: roll back" in toast(EVENTS[7]).message
    assert toast(EVENTS[11]).title == "training failed" and "traceback:" in toast(EVENTS[11]).message


def test_a_resume_after_a_pause_is_said_once_and_only_after_a_pause():
    assert notes(ev.StateChanged(ev.RunState.RUNNING, 40), after_pause=True)[0].text == "resumed at step 40"
    assert notes(ev.StateChanged(ev.RunState.RUNNING, 40)) == []


def test_the_trainer_process_says_events_without_loading_textual():
    code = ("import sys, tui_gan.process.headless, tui_gan.describe\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
