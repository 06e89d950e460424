"""`gan-tui ls`: the runs in a runs folder with their state, step, quality, data, preset, lr and age.

Reads only the run folders (no torch). A damaged file in one run never stops the listing: what
cannot be read shows as `-`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from engine.config import NAMED_DATASETS
from engine.runs import RunDir, format_lr_pair, last_step, run_state
from tui_gan.formatting import format_age
from tui_gan.options import Parser

_FALLBACK_NOTE = "embedded font digits"  # engine/data.py's fallback note says this


def main(argv: Sequence[str]) -> int:
    """`gan-tui ls [--runs-dir DIR]`: the table on stdout; exit status 2 for a runs folder that is not there."""
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


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """One row per run folder, newest first."""
    rows = []
    try:
        # A run just launched has only its train.log until its trainer has loaded torch.
        folders = [p for p in runs_dir.iterdir() if (p / "config.json").is_file() or (p / "train.log").is_file()]
    except OSError:
        folders = []
    for folder in folders:
        try:
            rows.append(_row(RunDir(folder)))
        except OSError as exc:  # unreadable folder: listed, with the reason
            rows.append({"name": folder.name, "state": f"unreadable ({exc.strerror})", "pid": None, "step": 0,
                         "d_loss": None, "g_loss": None, "quality": "-", "dataset": "-", "preset": "-",
                         "lr": "-", "age_s": float("inf")})
    return sorted(rows, key=lambda r: r["age_s"])


def quality_summary(record: dict[str, Any]) -> str:
    """`7.3x 10/10`: the last Frechet distance over its floor, and classes covered."""
    fd, floor, covered, hist = (record.get(k) for k in ("fd", "fd_floor", "classes_covered", "class_hist"))
    if not isinstance(fd, (int, float)) or not isinstance(floor, (int, float)) or floor <= 0:
        return "-"
    classes = f" {covered}/{len(hist)}" if isinstance(hist, list) else ""
    return f"{fd / floor:.1f}x{classes}"


# (header, key, right-aligned)
_COLUMNS = (("NAME", "name", False), ("STATE", "state", False), ("STEP", "step", True),
            ("D LOSS", "d_loss", True), ("G LOSS", "g_loss", True), ("FD/FLR CLS", "quality", True),
            ("DATASET", "dataset", False), ("PRESET", "preset", False), ("LR G/D", "lr", True), ("AGE", "age", True))


def format_table(rows: list[dict[str, Any]], width: int = 100) -> str:
    """The rows as an aligned table at most `width` columns wide: losses and pids show when there is
    room, and overlong names are cut last."""
    cells = [_cells(r) for r in rows]
    plans = ((True, True), (False, True), (False, False))
    for losses, pids in plans:
        columns = [c for c in _COLUMNS if losses or c[1] not in ("d_loss", "g_loss")]
        table = [{k: (v if pids or k != "state" else v.split(" (pid")[0]) for k, v in row.items()} for row in cells]
        widths = {key: max([len(head)] + [len(row[key]) for row in table]) for head, key, _ in columns}
        total = sum(widths.values()) + len(columns) - 1
        if total <= width:
            break
    name_room = widths["name"] - max(0, total - width)
    widths["name"] = max(len("NAME"), name_room)
    lines = []
    for row in [{key: head for head, key, _ in columns}, *table]:
        parts = []
        for _, key, right in columns:
            text = row[key]
            if len(text) > widths[key]:
                text = text[: widths[key] - 1] + "~"
            parts.append(text.rjust(widths[key]) if right else text.ljust(widths[key]))
        lines.append(" ".join(parts).rstrip())
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def _row(run: RunDir) -> dict[str, Any]:
    state, pid = run_state(run)
    metrics = [r for r in run.read_log_tail() if r.get("type") == "metrics"]
    last = metrics[-1] if metrics else {}
    measured = run.newest_log_records("quality")
    config = run.read_config()
    mtimes = []
    for path in (run.metrics_path, run.config_path, run.state_path, run.path / "train.log"):
        try:
            mtimes.append(path.stat().st_mtime)
        except OSError:
            continue
    if state == "unknown" and not run.config_path.is_file():
        state = "start failed"  # its launcher's train.log says why
    lr_g, lr_d = (last.get(k, config.get(k)) for k in ("lr_g", "lr_d"))
    return {
        "name": run.path.name,
        "state": f"{state} (pid {pid})" if pid else state,
        "pid": pid,
        "step": last_step(run),
        "d_loss": last.get("d_loss"),
        "g_loss": last.get("g_loss"),
        "quality": quality_summary(measured[-1]) if measured else "-",
        "dataset": _dataset(run, config),
        "preset": str(config.get("preset", "-")),
        "lr": format_lr_pair(lr_g, lr_d),
        "age_s": time.time() - max(mtimes, default=0.0),
    }


def _cells(row: dict[str, Any]) -> dict[str, str]:
    step = row.get("step")
    return {
        "name": str(row["name"]),
        "state": str(row["state"]),
        "step": f"{step:,}" if isinstance(step, int) else "-",
        "d_loss": _number(row.get("d_loss")),
        "g_loss": _number(row.get("g_loss")),
        "quality": str(row.get("quality", "-")),
        "dataset": str(row.get("dataset", "-")),
        "preset": str(row.get("preset", "-")),
        "lr": str(row.get("lr", "-")),
        "age": format_age(float(row["age_s"])) if row.get("age_s") != float("inf") else "-",
    }


def _dataset(run: RunDir, config: dict[str, Any]) -> str:
    """The data the run really trains on: `synthetic` when a named dataset fell back to the font digits."""
    name = config.get("dataset")
    if not isinstance(name, str) or not name:
        return "-"
    if name not in NAMED_DATASETS:
        return Path(name).name or name
    if name != "synthetic" and any(r.get("type") == "warning" and r.get("kind") == "dataset"
                                   and _FALLBACK_NOTE in str(r.get("message", "")) for r in run.read_log_head()):
        return "synthetic"
    return name


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
