"""`gan-tui export RUN_DIR|latest grid|gif|csv|samples`: export from a run folder without the dashboard."""

from __future__ import annotations

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
    p.add_argument("--count", type=int, default=64, metavar="N", help="samples: how many PNGs (default 64)")
    p.add_argument("--checkpoint", default="latest", metavar="latest|best|STEP|FILE", help="samples: which checkpoint")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="samples: noise seed")
    p.add_argument("--digit", type=int, metavar="D", help="samples, grid: that class only, from the checkpoint (conditional runs)")
    p.add_argument("--frame-ms", type=int, default=200, metavar="MS", help="gif: milliseconds per frame")
    p.add_argument("--force", action="store_true", help="replace --out if an export of the same kind wrote it")
    args = p.parse_args(argv)
    try:
        run = resolve_run(Path(args.runs_dir), args.run)
    except RunError as exc:  # a run that is not there: the user's mistake
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    try:
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
    except export.ExportRefused as exc:  # a target it may not write, a digit the run has not: one line, exit 2
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    except (RunError, export.ExportError) as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 1
    return 0
