"""`gan-tui export RUN_DIR|latest grid|gif|csv|samples`: export from a run folder without the dashboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from engine.runs import RunError, resolve_run
from tui_gan.options import Parser


def main(argv: Sequence[str]) -> int:
    """`gan-tui export RUN WHAT ...`; the exit status (1 when the export fails, 2 for the user's mistake:
    a run that is not there, a target an export may not write, a scale, count or digit out of range)."""
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
    p.add_argument("--count", type=int, metavar="N", help="samples, grid --digit: how many images (default 64)")
    p.add_argument("--checkpoint", metavar="latest|best|STEP|FILE", help="samples, grid --digit: which checkpoint (default latest)")
    p.add_argument("--seed", type=int, metavar="N", help="samples, grid --digit: noise seed (default 0)")
    p.add_argument("--digit", type=int, metavar="D", help="samples, grid: that class only, from the checkpoint (conditional runs)")
    p.add_argument("--frame-ms", type=int, metavar="MS", help="gif: milliseconds per frame (default 200)")
    p.add_argument("--force", action="store_true", help="replace --out if an export of the same kind wrote it")
    args = p.parse_args(argv)
    unused = _unused_options(args)
    if unused:  # an option the export would ignore (`grid --step 300 --digit 3`) is a mistake, not a wish
        print(f"gan-tui: {unused}", file=sys.stderr)
        return 2
    count, checkpoint = args.count if args.count is not None else 64, args.checkpoint or "latest"
    seed, frame_ms = args.seed if args.seed is not None else 0, args.frame_ms if args.frame_ms is not None else 200
    try:
        run = resolve_run(Path(args.runs_dir), args.run)
    except RunError as exc:  # a run that is not there: the user's mistake
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    try:
        if args.what == "grid" and args.digit is not None:
            print(export.export_digit_grid(run, args.digit, args.out, count=count, checkpoint=checkpoint,
                                           seed=seed, scale=_or(args.scale, 4), force=args.force))
        elif args.what == "grid":
            print(export.export_grid(run, args.out, scale=_or(args.scale, 4), step=args.step, force=args.force))
        elif args.what == "gif":
            path, frames = export.export_gif(run, args.out, scale=_or(args.scale, 2), frame_ms=frame_ms,
                                             force=args.force)
            print(f"{path} ({frames} frame{'s' if frames != 1 else ''})")
        elif args.what == "csv":
            path, rows = export.export_csv(run, args.out, force=args.force)
            print(f"{path} ({rows} rows)")
        else:
            paths = export.export_checkpoint_samples(run, args.out, count=count, checkpoint=checkpoint,
                                                     seed=seed, scale=_or(args.scale, 1), digit=args.digit,
                                                     force=args.force)
            print(f"{paths[0].parent} ({len(paths)} PNGs)")
    except export.ExportRefused as exc:  # a target it may not write, a digit the run has not: one line, exit 2
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    except (RunError, export.ExportError) as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 1
    return 0


#: The options each export reads ("grid+digit": a grid of one class, drawn from a checkpoint).
_OPTIONS = {
    "grid": {"scale", "step"},
    "grid+digit": {"scale", "digit", "count", "checkpoint", "seed"},
    "gif": {"scale", "frame_ms"},
    "csv": set(),
    "samples": {"scale", "digit", "count", "checkpoint", "seed"},
}


def _unused_options(args: argparse.Namespace) -> str:
    """A sentence naming the options given that this export would ignore ("" when none)."""
    kind = "grid+digit" if args.what == "grid" and args.digit is not None else args.what
    given = [name for name in ("scale", "step", "count", "checkpoint", "seed", "digit", "frame_ms")
             if getattr(args, name) is not None]
    unused = [f"--{name.replace('_', '-')}" for name in given if name not in _OPTIONS[kind]]
    if not unused:
        return ""
    what = "a grid of one --digit (drawn from a checkpoint: pick it with --checkpoint)" if kind == "grid+digit" else args.what
    return f"{' and '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to {what}"


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
