"""A trainer process ends cleanly every time: its side threads are done before the interpreter is
(a thread still inside torch at exit aborted a run with "terminate called without an active exception")."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from engine import events as ev
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_closing_a_served_run_leaves_no_side_thread_running_many_times(tmp_path, synthetic_data):
    """The judge is mid-training (synthetic digits have labels) when each run ends: every time, the
    journal, quality, TensorBoard and control-socket threads are gone once `close` returns."""
    from engine.serve import ServedRun

    # Threads that earlier tests in this process left behind are theirs, not this run's: the end of
    # a run waits for its own threads only (the CI once spent 24 minutes joining strangers).
    joined: list[float | None] = []

    class Stranger(threading.Thread):
        def join(self, timeout: float | None = None) -> None:
            joined.append(timeout)
            super().join(timeout)

    release = threading.Event()
    stranger = Stranger(target=release.wait, name="gan-tui-journal", daemon=True)
    stranger.start()
    before = {t for t in threading.enumerate() if t.name.startswith("gan-tui-")}
    for i in range(6):
        served = ServedRun(tiny_config(steps=6, quality_every=3, tensorboard=True), tmp_path / "runs", f"r{i}",
                           data=synthetic_data, judge_cache=tmp_path / "judges")
        final = served.run(lambda _event: None)
        assert final is not None and final.state == ev.RunState.FINISHED
        alive = [t.name for t in threading.enumerate()
                 if t.name.startswith("gan-tui-") and t.is_alive() and t not in before]
        assert alive == [], f"round {i}: {alive}"
    assert joined == [] and stranger.is_alive()
    release.set()


def test_headless_runs_end_with_exit_zero_and_no_abort_many_times(tmp_path):
    for i in range(4):
        done = subprocess.run(
            [sys.executable, "-m", "tui_gan.cli", "--headless", "--dataset", "synthetic", "--preset", "mlp-small",
             "--steps", "30", "--batch-size", "16", "--quality-every", "10", "--runs-dir", str(tmp_path / "runs"),
             "--run-name", f"end-{i}"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "terminate called" not in done.stderr and "Traceback" not in done.stderr
