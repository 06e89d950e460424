"""`gan-tui`: command line -> a training process, and the dashboard or a progress line on it.

The training always runs in a process of its own (see tui_gan/detach.py): plain `gan-tui` starts it
and opens the dashboard attached to it, so a closed terminal, a dropped SSH session or a crashed
viewer never stops training. `--headless` trains in this process with a progress line;
`--detach` starts the trainer and returns. Parsing imports nothing heavy (no torch), so `--help`
and every mistake answer at once, and the dashboard draws its first frame while the trainer loads.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from engine.config import ConfigError
from tui_gan.options import Options, build_parser, parse_options

if TYPE_CHECKING:
    from textual.app import App

    from tui_gan.socket_link import SocketEngine

_TRAINER_EXIT_S = 15.0  # a stopped trainer closes its socket and files, then exits
_IN_PROCESS_SAVE_TIMEOUT_S = 120.0  # the final checkpoint of an in-process run, after its dashboard closed


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gan-tui` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("attach", "ls", "export"):
        from tui_gan.commands import run_subcommand

        return run_subcommand(args[0], args[1:])
    try:
        options = parse_options(args)  # no numpy, no torch: a mistake is answered at once
    except ConfigError as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    from tui_gan.detach import Refused, plan_run_dir

    try:
        # A live run is never touched: refused here, before anything is spawned or written.
        run_dir = plan_run_dir(options, name_new_run=not options.headless)
    except Refused as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    if options.headless:
        from tui_gan.headless import run_headless

        return run_headless(options)
    assert run_dir is not None
    if options.detach:
        from tui_gan.detach import launch_detached

        return launch_detached(options, args, run_dir)
    if options.in_process:
        return _run_in_process(options, run_dir)
    return _run_dashboard(options, args, run_dir)


def run_viewer(app: App[Any], engine: SocketEngine, run_dir: Path, runs_dir: Path) -> int:
    """Run a dashboard on a training process; SIGHUP, SIGTERM and SIGINT close the viewer only (the
    trainer is in its own session and trains on). On leaving, say where the run is and how to reach it."""
    def leave() -> None:
        engine.detach()  # first: the app waits for its reader thread, which waits on the socket
        _exit_app(app)

    _on_signals(leave)
    try:
        app.run()
    finally:
        # Let go of the socket: the reader thread must end for this process to end (the run goes on).
        engine.detach()
        process = engine.process
        if process is not None and engine.finished:
            try:
                process.wait(_TRAINER_EXIT_S)  # the run is over; its process is closing
            except subprocess.TimeoutExpired:
                pass
        launched = process.pid if process is not None and process.poll() is None else None
        _print_leave_note(app, run_dir, runs_dir, launched)
    return _exit_status(app)


def _run_dashboard(options: Options, argv: Sequence[str], run_dir: Path) -> int:
    from tui_gan.app import GanApp
    from tui_gan.detach import spawn_trainer
    from tui_gan.socket_link import SocketEngine

    process, log_path = spawn_trainer(options, argv, run_dir)
    engine = SocketEngine(run_dir, process, log_path)
    return run_viewer(GanApp(options, engine=engine), engine, run_dir, options.runs_dir)


def _run_in_process(options: Options, run_dir: Path) -> int:
    """`--in-process` (tests, debugging): the Runner on a thread here. A signal stops the run with a
    checkpoint; the process waits for that checkpoint before it ends."""
    from engine import events as ev
    from tui_gan.app import GanApp
    from tui_gan.engine_link import LocalEngine

    engine = LocalEngine(options.config, options.runs_dir, run_dir.name if not options.resume else None,
                         str(run_dir) if options.resume else None)
    app = GanApp(options, engine=engine)

    def stop() -> None:
        engine.send(ev.Stop(save=True))
        _exit_app(app)

    _on_signals(stop)
    try:
        app.run()
    finally:
        engine.send(ev.Stop(save=True))  # the run cannot outlive this process: end it with a checkpoint
        engine.wait(_IN_PROCESS_SAVE_TIMEOUT_S)
        _print_leave_note(app, run_dir, options.runs_dir)
    return _exit_status(app)


def _on_signals(handler: Any) -> None:
    def on_signal(_signum: int, _frame: object) -> None:
        handler()

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


def _exit_app(app: App[Any]) -> None:
    """Ask the app to exit from a signal handler: through a thread, as Textual's loop is not re-entrant."""

    def leave() -> None:
        try:
            app.call_from_thread(app.exit)
        except RuntimeError:  # not running (yet, or any more)
            pass

    threading.Thread(target=leave, name="gan-tui-signal", daemon=True).start()


def _exit_status(app: App[Any]) -> int:
    code = app.return_code if app.return_code is not None else getattr(app, "exit_status", 0)
    return int(code or 0)


def _print_leave_note(app: App[Any], run_dir: Path, runs_dir: Path, launched: int | None = None) -> None:
    """The run folder and the exact commands to attach or resume (the app may word it itself:
    `app.leave_note`, a list of lines or a string)."""
    from tui_gan.detach import leave_message

    note = getattr(app, "leave_note", None)
    lines = note.splitlines() if isinstance(note, str) else list(note) if note else leave_message(run_dir, runs_dir, launched)
    try:
        print("\n".join(lines), flush=True)
    except (OSError, ValueError):
        pass  # the terminal is gone (SIGHUP); the run is fine and `gan-tui ls` finds it


__all__ = ["Options", "build_parser", "main", "parse_options", "run_viewer"]


if __name__ == "__main__":
    raise SystemExit(main())
