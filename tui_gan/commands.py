"""The subcommands: `gan-tui attach [RUN_DIR|latest]`, `gan-tui ls` and `gan-tui export RUN WHAT`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from engine.runs import RunDir, RunError, resolve_run
from engine.server import SOCKET_NAME


def run_subcommand(name: str, argv: Sequence[str]) -> int:
    """Dispatch `attach`, `ls` or `export`; the exit status."""
    return {"attach": _attach, "ls": _ls, "export": _export}[name](argv)


def _export(argv: Sequence[str]) -> int:
    from engine import export

    p = argparse.ArgumentParser(
        prog="gan-tui export",
        description="Export from a run folder without opening the dashboard.",
        epilog="grid: the newest (or --step) sample grid as a PNG at --scale; gif: every saved grid as an "
        "animated GIF; csv: metrics.jsonl as a CSV table; samples: --count single PNGs from a checkpoint "
        "(--checkpoint latest, best or a step). Files go to RUN/exports/ unless --out is given.",
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
    args = p.parse_args(argv)
    try:
        run = resolve_run(Path(args.runs_dir), args.run)
        if args.what == "grid" and args.digit is not None:
            print(export.export_digit_grid(run, args.digit, args.out, count=args.count, checkpoint=args.checkpoint,
                                           seed=args.seed, scale=args.scale or 4))
        elif args.what == "grid":
            print(export.export_grid(run, args.out, scale=args.scale or 4, step=args.step))
        elif args.what == "gif":
            path, frames = export.export_gif(run, args.out, scale=args.scale or 2, frame_ms=args.frame_ms)
            print(f"{path} ({frames} frames)")
        elif args.what == "csv":
            path, rows = export.export_csv(run, args.out)
            print(f"{path} ({rows} rows)")
        else:
            paths = export.export_checkpoint_samples(run, args.out, count=args.count, checkpoint=args.checkpoint,
                                                     seed=args.seed, scale=args.scale or 1, digit=args.digit)
            print(f"{paths[0].parent} ({len(paths)} PNGs)")
    except (RunError, export.ExportError) as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 1
    return 0


def _ls(argv: Sequence[str]) -> int:
    from tui_gan.runs_list import format_table, list_runs

    p = argparse.ArgumentParser(prog="gan-tui ls", description="List the runs in a runs folder.")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    args = p.parse_args(argv)
    rows = list_runs(Path(args.runs_dir))
    if not rows:
        print(f"no runs in {args.runs_dir}")
        return 0
    print(format_table(rows))
    return 0


def _attach(argv: Sequence[str]) -> int:
    from tui_gan.cli import Options, parse_options
    from tui_gan.runs_list import run_state

    p = argparse.ArgumentParser(prog="gan-tui attach", description="Open the dashboard on a detached run.")
    p.add_argument("run", nargs="?", default="latest", metavar="RUN_DIR|latest")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--ascii", action="store_true")
    p.add_argument("--refresh", type=float, default=10.0, metavar="HZ")
    args = p.parse_args(argv)
    try:
        run = _live_run(Path(args.runs_dir), args.run)
    except RunError as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    state, _ = run_state(run)
    if not (run.path / SOCKET_NAME).exists() or state == "interrupted":
        print(f"gan-tui: {run.path} is {state}, not running; resume it with: gan-tui --resume {run.path}", file=sys.stderr)
        return 1
    from tui_gan.app import GanApp
    from tui_gan.socket_link import SocketEngine

    base = parse_options(["--config", str(run.config_path)])
    options = Options(base.config, Path(args.runs_dir), run.path.name, str(run.path), headless=False,
                      ascii=args.ascii, refresh_hz=args.refresh)
    app = GanApp(options, engine=SocketEngine(run.path))
    app.run()
    return app.exit_status


def _live_run(runs_dir: Path, spec: str) -> RunDir:
    """`latest` means the newest run that has a live training process; else as resolve_run."""
    if spec != "latest":
        return resolve_run(runs_dir, spec)
    from tui_gan.runs_list import run_state

    live = [p for p in runs_dir.glob("*") if (p / SOCKET_NAME).exists() and run_state(RunDir(p))[1]] if runs_dir.is_dir() else []
    if not live:
        raise RunError(f"no live runs in {runs_dir}; `gan-tui ls` lists them, `gan-tui --detach` starts one")
    return RunDir.open(max(live, key=lambda p: p.stat().st_mtime))
