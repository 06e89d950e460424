"""The subcommands: `gan-tui attach [RUN_DIR|latest]`, `gan-tui ls` and `gan-tui export RUN WHAT`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

from engine.runs import RunDir, RunError, resolve_run
from tui_gan.formatting import gan_tui_command
from tui_gan.options import Parser
from tui_gan.terminal import refused_without_terminal

_ATTACH_INSTEAD = "`gan-tui ls` shows where runs stand"


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """Dispatch `attach`, `ls` or `export`; the exit status."""
    return {"attach": _attach, "ls": _ls, "export": _export}[name](argv)


def _export(argv: Sequence[str]) -> int:
    from engine import export

    p = Parser(
        prog="gan-tui export",
        description="Export from a run folder without opening the dashboard.",
        epilog="grid: the newest (or --step) sample grid as a PNG at --scale; gif: every saved grid as an "
        "animated GIF, each frame labelled with its step; csv: metrics.jsonl as a CSV table (fixed columns); "
        "samples: --count single PNGs from a checkpoint (--checkpoint latest, best or a step). "
        "Files go to RUN/exports/ unless --out is given.",
    )
    p.add_argument("run", metavar="RUN_DIR|latest")
    p.add_argument("what", choices=("grid", "gif", "csv", "samples"))
    p.add_argument("--out", type=Path, metavar="PATH", help="file (grid, gif, csv) or folder (samples)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--scale", type=int, default=None, metavar="N", help="pixels per image pixel (grid 4, gif 2, samples 1)")
    p.add_argument("--step", type=int, metavar="N", help="grid: the grid of this step (default: newest)")
    p.add_argument("--count", type=int, default=64, metavar="N", help="samples: how many PNGs (default 64)")
    p.add_argument("--checkpoint", default="latest", metavar="latest|best|STEP|FILE", help="samples: which checkpoint")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="samples: noise seed")
    p.add_argument("--digit", type=int, metavar="D", help="samples, grid: that class only, from the checkpoint (conditional runs)")
    p.add_argument("--frame-ms", type=int, default=200, metavar="MS", help="gif: milliseconds per frame")
    p.add_argument("--force", action="store_true", help="replace --out if an export of the same kind wrote it")
    args = p.parse_args(argv)
    try:
        run = resolve_run(Path(args.runs_dir), args.run)
        if args.what == "grid" and args.digit is not None:
            print(export.export_digit_grid(run, args.digit, args.out, count=args.count, checkpoint=args.checkpoint,
                                           seed=args.seed, scale=args.scale or 4, force=args.force))
        elif args.what == "grid":
            print(export.export_grid(run, args.out, scale=args.scale or 4, step=args.step, force=args.force))
        elif args.what == "gif":
            path, frames = export.export_gif(run, args.out, scale=args.scale or 2, frame_ms=args.frame_ms,
                                             force=args.force)
            print(f"{path} ({frames} frames)")
        elif args.what == "csv":
            path, rows = export.export_csv(run, args.out, force=args.force)
            print(f"{path} ({rows} rows)")
        else:
            paths = export.export_checkpoint_samples(run, args.out, count=args.count, checkpoint=args.checkpoint,
                                                     seed=args.seed, scale=args.scale or 1, digit=args.digit,
                                                     force=args.force)
            print(f"{paths[0].parent} ({len(paths)} PNGs)")
    except export.ExportRefused as exc:  # a target it may not write: the user's mistake, one line
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    except (RunError, export.ExportError) as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 1
    return 0


def _ls(argv: Sequence[str]) -> int:
    from tui_gan.runs_list import format_table, list_runs

    p = Parser(prog="gan-tui ls", description="List the runs in a runs folder, newest first.")
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="default: runs")
    args = p.parse_args(argv)
    if args.runs_dir is not None and not Path(args.runs_dir).is_dir():
        print(f"gan-tui ls: there is no runs folder {args.runs_dir}", file=sys.stderr)  # named, so most likely a typo
        return 2
    args.runs_dir = args.runs_dir or "runs"  # a fresh checkout has none yet: "no runs in runs"
    rows = list_runs(Path(args.runs_dir))
    # 100 columns when written to a file or a pipe; a terminal's own width when it is wider or narrower.
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100
    text = format_table(rows, width) if rows else f"no runs in {args.runs_dir}"
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `gan-tui ls | head`: the reader left. Point stdout at /dev/null so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _attach(argv: Sequence[str]) -> int:
    from engine.config import TrainConfig
    from tui_gan.options import Options
    from tui_gan.runs_list import run_state
    from tui_gan.socket_link import SocketEngine, socket_path

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
        from tui_gan.screens.sweep import SweepApp

        return SweepApp(Path(args.run)).run() or 0
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
        print(f"gan-tui: {run.path} is {state}, not running; resume it with: {gan_tui_command('--resume', run.path)}",
              file=sys.stderr)
        return 1
    try:
        config = TrainConfig.load(run.config_path)
    except (OSError, ValueError) as exc:
        print(f"gan-tui: {run.config_path} is unreadable: {exc}", file=sys.stderr)
        return 1
    if refused_without_terminal("gan-tui attach", _ATTACH_INSTEAD):
        return 2
    from tui_gan.app import GanApp
    from tui_gan.viewer import run_viewer

    options = Options(config, Path(args.runs_dir), run.path.name, str(run.path), headless=False,
                      ascii=args.ascii, refresh_hz=args.refresh)
    engine = SocketEngine(run.path)
    return run_viewer(GanApp(options, engine=engine), engine, run.path, Path(args.runs_dir))


def _live_run(runs_dir: Path, spec: str) -> RunDir:
    """`latest` means the newest run that has a live training process; else as resolve_run."""
    if spec != "latest":
        return resolve_run(runs_dir, spec)
    from tui_gan.runs_list import run_state

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
    from tui_gan.runs_list import run_state

    path = Path(spec).expanduser()
    path = path if path.is_dir() else runs_dir / spec
    if spec == "latest" or not (path / "train.log").is_file():
        return ""
    state, pid = run_state(RunDir(path))
    return _starting_note(path, pid) if state == "starting" and pid else ""


def _starting_note(run_dir: Path, pid: int) -> str:
    return (f"run {run_dir} is starting (pid {pid}): it serves viewers once torch and its data have loaded; "
            "try again in a few seconds")
