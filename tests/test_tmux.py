"""The dashboard as a person uses it: in a detached tmux session, keys sent, the screen read back."""

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    # Killing the last session makes the tmux server exit; a new-session issued while it is still
    # shutting down fails, so that one command gets a few tries.
    for _ in range(5):
        done = subprocess.run(["tmux", *args], capture_output=True, text=True)
        if done.returncode == 0 or args[0] != "new-session":
            break
        time.sleep(0.5)
    done.check_returncode()
    return done.stdout


def wait_for_screen(session: str, needle: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if needle in screen:
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never appeared; last screen:\n{screen}")
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
        assert tmux("capture-pane", "-p", "-t", session).splitlines()[0] == step_line  # the counter stopped
        tmux("send-keys", "-t", session, "e")
        wait_for_screen(session, "Export")
        tmux("send-keys", "-t", session, "p")
        wait_for_screen(session, "exported grid")
        tmux("send-keys", "-t", session, "q")
        wait_for_screen(session, "Quit at step")  # the quit question; enter stops with a checkpoint
        tmux("send-keys", "-t", session, "Enter")
        wait_for_screen(session, "GAN-TUI-EXITED-0")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    run = tmp_path / "tmux"
    assert list((run / "checkpoints").glob("step_*.pt")), "q did not save a checkpoint"
    assert list((run / "exports").glob("*.png"))


def test_detached_run_survives_its_tmux_session_and_is_steered_from_another(tmp_path):
    starter, viewer = (f"gan-tui-{k}-{uuid.uuid4().hex[:8]}" for k in ("start", "view"))
    runs = tmp_path / "runs"
    start = (f"{sys.executable} -m tui_gan.cli --detach --dataset synthetic --preset mlp-small --steps 100000000 "
             f"--runs-dir {runs} --run-name det; sleep 600")
    tmux("new-session", "-d", "-s", starter, "-x", "120", "-y", "40", "-c", str(ROOT), start)
    try:
        wait_for_screen(starter, "gan-tui attach")
        tmux("kill-session", "-t", starter)  # the terminal that started it is gone (a dropped SSH session)
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
        wait_for_screen(viewer, "GAN-TUI-EXITED-0")
        from tui_gan.runs_list import list_runs

        assert list_runs(runs)[0]["state"].startswith("running")
        tmux("kill-session", "-t", viewer)
        tmux("new-session", "-d", "-s", viewer, "-x", "120", "-y", "40", "-c", str(ROOT), attach)
        wait_for_screen(viewer, "RUNNING")
        tmux("send-keys", "-t", viewer, "X")
        wait_for_screen(viewer, "Stop the run")
        tmux("send-keys", "-t", viewer, "y")
        wait_for_screen(viewer, "STOPPED")
    finally:
        for session in (starter, viewer):
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        _stop_detached(runs / "det")  # a failed test must not leave a trainer running
    assert list((runs / "det" / "checkpoints").glob("step_*.pt"))


def _stop_detached(run_dir: Path) -> None:
    import os
    import signal

    from engine.runs import RunDir
    from tui_gan.runs_list import run_state

    _, pid = run_state(RunDir(run_dir))  # a pid only while that run's trainer is alive
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
