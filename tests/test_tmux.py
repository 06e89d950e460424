"""The dashboard as a person uses it: in a detached tmux session, keys sent, the screen read back.

Each test module run gets a tmux server of its own (`tmux -L`), so killing sessions or the server
never touches anyone else's tmux.
"""

import json
import os
import signal
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER = f"gan-tui-tests-{uuid.uuid4().hex[:8]}"
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


@pytest.fixture(scope="module", autouse=True)
def _own_tmux_server():
    yield
    subprocess.run(["tmux", "-L", SERVER, "kill-server"], capture_output=True)


def tmux(*args: str) -> str:
    # Killing the last session makes the tmux server exit; a new-session issued while it is still
    # shutting down fails, so that one command gets a few tries.
    for _ in range(5):
        done = subprocess.run(["tmux", "-L", SERVER, *args], capture_output=True, text=True)
        if done.returncode == 0 or args[0] != "new-session":
            break
        time.sleep(0.5)
    done.check_returncode()
    return done.stdout


def wait_for_screen(session: str, needle: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-J", "-t", session)  # -J: a printed line the pane wrapped, whole
        if needle in screen:
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never appeared; last screen:\n{screen}")
        time.sleep(0.3)


def wait_for_any(session: str, needles: tuple[str, ...], timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-J", "-t", session)
        if any(n in screen for n in needles):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"none of {needles!r} appeared; last screen:\n{screen}")
        time.sleep(0.3)


def test_gan_tui_in_tmux_on_mnist_t10k(tmp_path, mnist_root):
    session = f"gan-tui-test-{uuid.uuid4().hex[:8]}"
    command = (
        f"{sys.executable} -m tui_gan.cli --dataset mnist --data-root {mnist_root} --preset mlp-small "
        f"--runs-dir {tmp_path} --run-name tmux; echo GAN-TUI-EXITED-$?; sleep 600"
    )
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", "-c", str(ROOT), command)
    try:
        screen = wait_for_screen(session, "RUNNING")
        assert "t10k" in screen or "loss" in screen
        wait_for_screen(session, "samples @ step")
        tmux("send-keys", "-t", session, "Space")
        paused = wait_for_screen(session, "PAUSED")
        step_line = paused.splitlines()[0]
        time.sleep(1.0)
        assert tmux("capture-pane", "-p", "-J", "-t", session).splitlines()[0] == step_line  # the counter stopped
        tmux("send-keys", "-t", session, "e")
        wait_for_screen(session, "Export")
        tmux("send-keys", "-t", session, "p")
        wait_for_screen(session, "exported grid")
        tmux("send-keys", "-t", session, "q")
        wait_for_screen(session, "Quit at step")  # the quit question; enter stops with a checkpoint
        tmux("send-keys", "-t", session, "Enter")
        left = wait_for_screen(session, "GAN-TUI-EXITED-0")
        assert "stopped at step" in left and "--resume" in left  # the leave note
    finally:
        subprocess.run(["tmux", "-L", SERVER, "kill-session", "-t", session], capture_output=True)
        _stop_detached(tmp_path / "tmux")
    run = tmp_path / "tmux"
    assert list((run / "checkpoints").glob("step_*.pt")), "q did not save a checkpoint"
    assert list((run / "exports").glob("*.png"))


def test_plain_gan_tui_survives_its_terminal_and_every_viewer_signal(tmp_path):
    """The run started by plain `gan-tui` outlives its tmux session; `attach` picks it up; SIGHUP,
    SIGTERM and SIGINT to a viewer close only the viewer; X stops the run with a checkpoint."""
    starter, viewer = (f"gan-tui-{k}-{uuid.uuid4().hex[:8]}" for k in ("start", "view"))
    runs = tmp_path / "runs"
    start = (f"{sys.executable} -m tui_gan.cli --dataset synthetic --preset mlp-small --steps 100000000 "
             f"--runs-dir {runs} --run-name plain; sleep 600")
    tmux("new-session", "-d", "-s", starter, "-x", "120", "-y", "40", "-c", str(ROOT), start)
    try:
        wait_for_screen(starter, "RUNNING")
        tmux("kill-session", "-t", starter)  # the terminal that started it is gone (a dropped SSH session)
        time.sleep(1)
        from tui_gan.cli.ls import list_runs

        (row,) = list_runs(runs)
        assert row["state"].startswith("running"), row
        attach = f"{sys.executable} -m tui_gan.cli attach latest --runs-dir {runs}; echo GAN-TUI-EXITED-$?; sleep 600"
        tmux("new-session", "-d", "-s", viewer, "-x", "120", "-y", "40", "-c", str(ROOT), attach)
        first = wait_for_screen(viewer, "RUNNING")
        time.sleep(2)
        later = wait_for_screen(viewer, "RUNNING")
        step = lambda screen: int(screen.split("step ", 1)[1].split("/", 1)[0].replace(",", ""))  # noqa: E731
        assert step(later) > step(first)  # the step count is still rising
        tmux("send-keys", "-t", viewer, "Space")
        wait_for_screen(viewer, "PAUSED")
        tmux("send-keys", "-t", viewer, "Space")
        wait_for_screen(viewer, "RUNNING")
        tmux("send-keys", "-t", viewer, "q")  # detaches; training goes on
        left = wait_for_screen(viewer, "GAN-TUI-EXITED-0")
        assert "still training" in left and f"attach {runs / 'plain'}" in left  # the leave note
        assert list_runs(runs)[0]["state"].startswith("running")
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            tmux("kill-session", "-t", viewer)
            tmux("new-session", "-d", "-s", viewer, "-x", "120", "-y", "40", "-c", str(ROOT), attach)
            wait_for_screen(viewer, "RUNNING")
            os.kill(_viewer_pid(viewer), sig)
            wait_for_screen(viewer, "GAN-TUI-EXITED-")
            assert list_runs(runs)[0]["state"].startswith("running"), sig
        tmux("kill-session", "-t", viewer)
        tmux("new-session", "-d", "-s", viewer, "-x", "120", "-y", "40", "-c", str(ROOT), attach)
        wait_for_screen(viewer, "RUNNING")
        tmux("send-keys", "-t", viewer, "X")
        wait_for_screen(viewer, "Stop the run")
        tmux("send-keys", "-t", viewer, "y")
        wait_for_screen(viewer, "STOPPED")
    finally:
        for session in (starter, viewer):
            subprocess.run(["tmux", "-L", SERVER, "kill-session", "-t", session], capture_output=True)
        _stop_detached(runs / "plain")  # a failed test must not leave a trainer running
    assert list((runs / "plain" / "checkpoints").glob("step_*.pt"))


def test_headless_in_an_80_column_terminal_keeps_one_progress_line(tmp_path):
    session = f"gan-tui-headless-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"dataset": "synthetic", "preset": "mlp-small", "g_hidden": [32], "d_hidden": [32],
                                  "latent_dim": 8, "batch_size": 16, "steps": 10**8, "log_every": 10,
                                  "sample_every": 1000, "checkpoint_every": 1000, "quality_every": 0, "device": "cpu"}))
    command = (f"{sys.executable} -m tui_gan.cli --headless --config {config} --runs-dir {tmp_path / 'runs'} "
               f"--run-name h; echo GAN-TUI-EXITED-$?; sleep 600")
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", "-c", str(ROOT), command)
    try:
        wait_for_screen(session, "step ")
        time.sleep(3)  # many updates of the line
        screen = tmux("capture-pane", "-p", "-t", session)
        progress = [line for line in screen.splitlines() if line.startswith("step ")]
        assert len(progress) == 1 and len(progress[0]) < 80, screen
        tmux("send-keys", "-t", session, "C-c")
        end = wait_for_screen(session, "GAN-TUI-EXITED-0")
    finally:
        subprocess.run(["tmux", "-L", SERVER, "kill-session", "-t", session], capture_output=True)
        _stop_detached(tmp_path / "runs" / "h")
    run = tmp_path / "runs" / "h"
    flat = end.replace("\n", "")  # a long path wraps at 80 columns
    assert f"run folder: {run}" in flat and "final: step" in flat
    assert "--resume" in flat and "export" in flat  # how to go on


def test_in_process_mode_saves_when_its_terminal_goes_away(tmp_path):
    """`--in-process` (tests, debugging) cannot outlive its terminal, so a hang-up stops it with a checkpoint."""
    session = f"gan-tui-inproc-{uuid.uuid4().hex[:8]}"
    command = (f"{sys.executable} -m tui_gan.cli --in-process --dataset synthetic --preset mlp-small "
               f"--steps 100000000 --runs-dir {tmp_path} --run-name ip; sleep 600")
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", "-c", str(ROOT), command)
    try:
        wait_for_screen(session, "RUNNING")
        metrics = tmp_path / "ip" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        subprocess.run(["tmux", "-L", SERVER, "kill-session", "-t", session], capture_output=True)  # SIGHUP
    from engine.runs import RunDir

    run = RunDir(tmp_path / "ip")
    deadline = time.monotonic() + 120
    while run.read_state().get("state") != "stopped" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert run.read_state()["state"] == "stopped" and run.checkpoints()


def _viewer_pid(session: str) -> int:
    """The gan-tui process in the session's pane (a child of the pane's shell)."""
    shell = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
    children = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
    return int(children[0])


def _stop_detached(run_dir: Path) -> None:
    import os
    import signal

    from engine.runs import RunDir
    from engine.runs import run_state

    _, pid = run_state(RunDir(run_dir))  # a pid only while that run's trainer is alive
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
