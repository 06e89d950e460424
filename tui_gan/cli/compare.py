"""`gan-tui compare RUN [RUN ...]`: parse, check the runs, then open the compare app."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from tui_gan.compare_data import MAX_RUNS, CompareError, open_runs
from tui_gan.options import Parser
from tui_gan.terminal import refused_without_terminal


def main(argv: Sequence[str]) -> int:
    """Parse, open the runs (a bad one is one line and exit status 2), run the app; the exit status."""
    p = Parser(
        prog="gan-tui compare",
        description=f"Compare up to {MAX_RUNS} runs: overlaid curves, summary, config diff, digits.",
        epilog="Keys: m metric, x x axis, +/- smoothing, t summary, d config diff, g digits, s sort, q leave.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="a run folder, its name in --runs-dir, or latest")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--ascii", action="store_true", help="draw digits with an ASCII ramp")
    args = p.parse_args(argv)
    try:
        readers = open_runs(args.runs, Path(args.runs_dir))
    except CompareError as exc:
        print(f"gan-tui compare: {exc}", file=sys.stderr)
        return 2
    if refused_without_terminal("gan-tui compare", "run it from a terminal"):
        return 2
    from tui_gan.screens.compare import CompareApp  # Textual only now: --help and bad input answer at once

    app = CompareApp(readers, ascii=args.ascii)
    app.run()
    return app.return_code or 0

