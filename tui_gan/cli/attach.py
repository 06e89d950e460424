"""`gan-tui attach [RUN_DIR|latest]`: open the dashboard on a run that trains in another process (or
the sweep view on a sweep folder); leaving it leaves the run training."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from engine.runs import RunDir, RunError, last_step, resolve_run, run_state
from tui_gan.formatting import gan_tui_command, how_to_go_on
from tui_gan.options import Parser
from tui_gan.terminal import refused_without_terminal

_ATTACH_INSTEAD = "`gan-tui ls` shows where runs stand"


def main(argv: Sequence[str]) -> int:
    """`gan-tui attach [RUN_DIR|latest]`: a dashboard on a live run, or the sweep view on a sweep folder."""
    from engine.config import TrainConfig
    from tui_gan.options import Options
    from tui_gan.process.socket_link import SocketEngine, socket_path

    p = Parser(prog="gan-tui attach", description="Open the dashboard on a running run (it keeps training when you leave).")
    p.add_argument("run", nargs="?", default="latest", metavar="RUN_DIR|latest")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--ascii", action="store_true")
    p.add_argument("--refresh", type=float, default=10.0, metavar="HZ")
    args = p.parse_args(argv)
    from engine.sweep.spec import is_sweep  # a sweep folder opens the sweep view

    if is_sweep(Path(args.run)):
        if refused_without_terminal("gan-tui attach", _ATTACH_INSTEAD):
            return 2
        from tui_gan.cli.sweep import left_sweep_line
        from tui_gan.screens.sweep import SweepApp

        SweepApp(Path(args.run)).run()
        print(left_sweep_line(Path(args.run)))
        return 0
    try:
        run = _live_run(Path(args.runs_dir), args.run)
    except RunError as exc:
        starting = _starting(Path(args.runs_dir), args.run)
        print(f"gan-tui: {starting or exc}", file=sys.stderr)
        return 1 if starting else 2
    state, pid = run_state(run)
    if pid is not None and (state == "starting" or not socket_path(run.path).exists()):
        print(f"gan-tui: {_starting_note(run.path, pid)}", file=sys.stderr)
        return 1
    if not socket_path(run.path).exists() or pid is None:
        # Not a failure: the run is over (or was cut off); the user asked for the wrong thing. One line, 2.
        again = how_to_go_on(run.path, last_step(run) if state == "finished" else None)
        print(f"gan-tui: {run.path} is {state}, not running; {again}", file=sys.stderr)
        return 2
    try:
        config = TrainConfig.load(run.config_path)
    except (OSError, ValueError) as exc:
        print(f"gan-tui: {run.config_path} is unreadable: {exc}", file=sys.stderr)
        return 1
    if refused_without_terminal("gan-tui attach", _ATTACH_INSTEAD):
        return 2
    from tui_gan.app import GanApp
    from tui_gan.process.viewer import run_viewer

    options = Options(config, Path(args.runs_dir), run.path.name, str(run.path), headless=False,
                      ascii=args.ascii, refresh_hz=args.refresh)
    engine = SocketEngine(run.path)
    return run_viewer(GanApp(options, engine=engine), engine, run.path, Path(args.runs_dir))


def _live_run(runs_dir: Path, spec: str) -> RunDir:
    """`latest` means the newest run that has a live training process; else as resolve_run."""
    if spec != "latest":
        return resolve_run(runs_dir, spec)
    live = []
    if runs_dir.is_dir():
        for path in runs_dir.iterdir():
            if (path / "config.json").is_file() and run_state(RunDir(path))[1]:
                live.append(path)
    if not live:
        raise RunError(f"no live runs in {runs_dir}; `{gan_tui_command('ls')}` lists them, "
                       f"`{gan_tui_command('--detach')}` starts one")
    return RunDir.open(max(live, key=lambda p: p.stat().st_mtime))


def _starting(runs_dir: Path, spec: str) -> str:
    """A note when `spec` names a run whose trainer is still starting (no config.json yet), else ""."""
    path = Path(spec).expanduser()
    path = path if path.is_dir() else runs_dir / spec
    if spec == "latest" or not (path / "train.log").is_file():
        return ""
    state, pid = run_state(RunDir(path))
    return _starting_note(path, pid) if state == "starting" and pid else ""


def _starting_note(run_dir: Path, pid: int) -> str:
    return (f"run {run_dir} is starting (pid {pid}): it serves viewers once torch and its data have loaded; "
            "try again in a few seconds")
