"""The viewer process: a dashboard on a training process that lives elsewhere.

Whatever ends the viewer (q, a signal, a closed terminal, a crash) ends only the viewer; on leaving
it prints the run folder and the exact commands to attach, resume or export.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from textual.app import App

    from tui_gan.process.socket_link import SocketEngine

_TRAINER_EXIT_S = 15.0  # a stopped trainer closes its socket and files, then exits
# After a signal the viewer must end even if Textual's shutdown hangs (seen: its writer queue stuck
# after the terminal hung up, the process idle for good). It holds nothing the run needs.
_SIGNAL_EXIT_S = 30.0


def run_viewer(app: App[Any], engine: SocketEngine, run_dir: Path, runs_dir: Path) -> int:
    """Run a dashboard on a training process; SIGHUP, SIGTERM and SIGINT close the viewer only (the
    trainer is in its own session and trains on). On leaving, say where the run is and how to reach it."""

    def leave() -> None:
        engine.detach()  # a viewer that leaves is not a trainer that went away: no "connection lost"
        exit_app(app)
        exit_later(_SIGNAL_EXIT_S + _TRAINER_EXIT_S, 0)

    on_signals(leave)
    try:
        app.run()
    finally:
        engine.detach()  # however the app ended (a key, a signal, a crash): let go; the run goes on
        process = engine.process
        if process is not None and engine.finished:
            try:
                process.wait(_TRAINER_EXIT_S)  # the run is over; its process is closing
            except subprocess.TimeoutExpired:
                pass
        launched = process.pid if process is not None and process.poll() is None else None
        print_leave_note(app, run_dir, runs_dir, launched)
    return exit_status(app)


def on_signals(handler: Callable[[], None]) -> None:
    """Call `handler` on SIGHUP, SIGTERM and SIGINT (instead of dying on them)."""

    def on_signal(_signum: int, _frame: object) -> None:
        handler()

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


def exit_app(app: App[Any]) -> None:
    """Ask the app to exit from a signal handler: through a thread, as Textual's loop is not re-entrant."""

    def leave() -> None:
        try:
            app.call_from_thread(app.exit)
        except RuntimeError:  # not running (yet, or any more)
            pass

    threading.Thread(target=leave, name="gan-tui-signal", daemon=True).start()


def exit_later(seconds: float, status: int) -> None:
    """End this process with `status` after `seconds`, unless it has ended by then (a daemon timer)."""
    import os

    timer = threading.Timer(seconds, os._exit, args=(status,))
    timer.daemon = True
    timer.start()


def exit_status(app: App[Any]) -> int:
    """The app's exit status (0 when it set none)."""
    code = app.return_code if app.return_code is not None else getattr(app, "exit_status", 0)
    return int(code or 0)


def print_leave_note(app: App[Any], run_dir: Path, runs_dir: Path, launched: int | None = None) -> None:
    """The run folder and the exact commands to attach or resume (the app may word it itself:
    `app.leave_note`, a list of lines or a string)."""
    from tui_gan.process.launch import leave_message

    note = getattr(app, "leave_note", None)
    lines = note.splitlines() if isinstance(note, str) else list(note) if note else leave_message(run_dir, runs_dir, launched)
    try:
        print("\n".join(lines), flush=True)
    except (OSError, ValueError):
        pass  # the terminal is gone (SIGHUP); the run is fine and `gan-tui ls` finds it
