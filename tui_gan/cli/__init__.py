"""`gan-tui`: command line -> a training process, and the dashboard or a progress line on it.

The subcommands are modules of this package (attach, ls, show, export, compare, sweep,
notify_test), each with a `main(argv)`, imported only when named. The training always runs in a
process of its own (see tui_gan/process/launch.py): plain `gan-tui` starts it and opens the
dashboard attached to it, so a closed terminal, a dropped SSH session or a crashed
viewer never stops training. `--headless` trains in this process with a progress line;
`--detach` starts the trainer and returns. Parsing imports nothing heavy (no torch), so `--help`
and every mistake answer at once, and the dashboard draws its first frame while the trainer loads.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Sequence

from engine.config import ConfigError
from tui_gan.gpu_probe import check_device
from tui_gan.options import SUBCOMMANDS, Options, build_parser, parse_options
from tui_gan.terminal import refused_without_terminal

_IN_PROCESS_SAVE_TIMEOUT_S = 120.0  # the final checkpoint of an in-process run, after its dashboard closed


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gan-tui` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["help"]:  # `gan-tui help` and `gan-tui help ls`, as git and pip take it
        args = [args[1], "--help"] if args[1:2] and args[1] in SUBCOMMANDS else (args[1:2] or ["--help"])
    if args and args[0] in SUBCOMMANDS:
        return run_subcommand(args[0], args[1:])
    try:
        options = parse_options(args)  # no numpy, no torch: a mistake is answered at once
        check_device(options.config.device)  # --device cuda without a GPU: now, not after torch and the data
    except ConfigError as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    from tui_gan.process.launch import Refused, plan_run_dir

    try:
        # A live run is never touched: refused here, before anything is spawned or written.
        run_dir = plan_run_dir(options, name_new_run=not options.headless)
    except Refused as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    if not options.headless and not options.detach and refused_without_terminal(
            "gan-tui", "add --headless for a progress line, or --detach to train in the background"):
        return 2
    if options.headless:
        from tui_gan.process.headless import run_headless

        return run_headless(options)
    assert run_dir is not None
    if options.detach:
        from tui_gan.process.launch import launch_detached

        return launch_detached(options, args, run_dir)
    if options.in_process:
        return _run_in_process(options, run_dir)
    return _run_dashboard(options, args, run_dir)


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """`gan-tui NAME ...` for a name in SUBCOMMANDS: its module's `main(argv)`; the exit status."""
    return int(importlib.import_module(f"{__name__}.{name.replace('-', '_')}").main(argv))


def _run_dashboard(options: Options, argv: Sequence[str], run_dir: Path) -> int:
    from tui_gan.process.launch import spawn_trainer

    # The trainer first: its torch import runs while this process loads Textual and draws.
    process, log_path = spawn_trainer(options, argv, run_dir)
    from tui_gan.app import GanApp
    from tui_gan.process.socket_link import SocketEngine
    from tui_gan.process.viewer import run_viewer

    engine = SocketEngine(run_dir, process, log_path)
    return run_viewer(GanApp(options, engine=engine), engine, run_dir, options.runs_dir)


def _run_in_process(options: Options, run_dir: Path) -> int:
    """`--in-process` (tests, debugging): the Runner on a thread here. A signal stops the run with a
    checkpoint; the process waits for that checkpoint before it ends."""
    from engine import commands as cmd
    from tui_gan.app import GanApp
    from tui_gan.process.engine_link import LocalEngine
    from tui_gan.process.viewer import exit_app, exit_later, exit_status, on_signals, print_leave_note

    engine = LocalEngine(options.config, options.runs_dir, run_dir.name if not options.resume else None,
                         str(run_dir) if options.resume else None)
    app = GanApp(options, engine=engine)

    def stop() -> None:
        engine.send(cmd.Stop(save=True))
        exit_app(app)
        # Textual's shutdown can hang once the terminal is gone; the run's own thread saves and ends
        # regardless, so after the save's time limit the process goes too.
        exit_later(_IN_PROCESS_SAVE_TIMEOUT_S + 30.0, 0)

    on_signals(stop)
    try:
        app.run()
    finally:
        engine.send(cmd.Stop(save=True))  # the run cannot outlive this process: end it with a checkpoint
        engine.wait(_IN_PROCESS_SAVE_TIMEOUT_S)
        print_leave_note(app, run_dir, options.runs_dir)
    return exit_status(app)


__all__ = ["SUBCOMMANDS", "Options", "build_parser", "main", "parse_options", "run_subcommand"]
