"""`gan-tui ls`: the runs (and sweeps) in a runs folder with their state, step, quality, data, preset,
lr and age; `--json` the same as records for scripts (README: "Scriptable output").

Reads only the folders (no torch). A damaged file in one run never stops the listing: that run is
listed as `damaged` with the reason, and what can be read still shows.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from engine.runs import format_lr_pair, is_run_folder, run_summary
from engine.runs.reader import read_json_file
from engine.runs.summary import number, typed
from engine.sweep.spec import LIVE_STATES as SWEEP_LIVE_STATES
from engine.sweep.spec import SPEC_NAME, STATUS_NAME, SweepStatus, is_sweep
from tui_gan.formatting import format_age, gan_tui_command
from tui_gan.options import Parser

#: The keys of a sweep's record in `ls --json`, in order (README: "Scriptable output").
SWEEP_KEYS = ("kind", "name", "path", "state", "reason", "pid", "search", "trials", "trials_started", "best_trial",
              "fd_ratio", "best_step", "dataset", "preset", "steps", "updated")


def main(argv: Sequence[str]) -> int:
    """`gan-tui ls [--runs-dir DIR] [--json]`: the table (or the JSON list) on stdout; exit status 2 for
    a runs folder that is not there."""
    p = Parser(prog="gan-tui ls", description="List the runs and sweeps in a runs folder, newest first.")
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="default: runs; a sweep folder lists its trials")
    p.add_argument("--json", action="store_true", help="one JSON object per run or sweep, for scripts")
    args = p.parse_args(argv)
    if args.runs_dir is not None and not Path(args.runs_dir).is_dir():
        print(f"gan-tui ls: there is no runs folder {args.runs_dir}", file=sys.stderr)  # named, so most likely a typo
        return 2
    runs_dir = Path(args.runs_dir or "runs")  # a fresh checkout has none yet: "no runs in runs"
    entries = list_entries(runs_dir)
    if args.json:
        text = json.dumps(entries, indent=2, allow_nan=False)
    elif entries:
        # 100 columns when written to a file or a pipe; a terminal's own width when it is wider or narrower.
        width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100
        text = "\n".join([format_table([table_row(e) for e in entries], width), *damage_footer(entries),
                          *sweep_footer(entries, runs_dir)])
    else:
        text = f"no runs in {runs_dir}"
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `gan-tui ls | head`: the reader left. Point stdout at /dev/null so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def list_entries(runs_dir: Path) -> list[dict[str, Any]]:
    """One record per run folder and per sweep folder in `runs_dir`, newest first: what `ls --json`
    prints (runs: engine.runs.summary.RUN_KEYS; sweeps: SWEEP_KEYS)."""
    try:
        folders = sorted(p for p in runs_dir.iterdir() if not p.name.startswith("."))
    except OSError:
        return []
    entries = []
    for folder in folders:
        try:
            if not folder.is_dir():
                continue
            if is_sweep(folder):
                entries.append(sweep_summary(folder))
                continue
            if not is_run_folder(folder):
                continue
        except OSError:
            pass  # a folder that cannot be read: run_summary lists it as damaged, with the reason
        entries.append(run_summary(folder))
    return sorted(entries, key=lambda e: -(e["updated"] if e["updated"] is not None else -math.inf))


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """The table's rows (see table_row), newest first."""
    return [table_row(e) for e in list_entries(runs_dir)]


def sweep_summary(folder: Path) -> dict[str, Any]:
    """A sweep folder as one record: its state (a driver that is gone reads `interrupted`), search, trial
    count and best trial so far; `damaged` with a reason when its records cannot be read."""
    record: dict[str, Any] = dict.fromkeys(SWEEP_KEYS)
    record.update(kind="sweep", name=folder.name, path=os.path.abspath(folder))
    spec, status_file = read_json_file(folder / SPEC_NAME), read_json_file(folder / STATUS_NAME)
    problems = [f"{name} {f.problem}" for name, f in ((SPEC_NAME, spec), (STATUS_NAME, status_file)) if f.problem]
    status = SweepStatus.load(folder)
    state = status.effective_state()
    config = spec.data.get("config") if isinstance(spec.data.get("config"), dict) else {}
    best = status.best if isinstance(status.best, dict) else {}
    try:
        started = sum(1 for p in folder.glob("trial-*") if p.is_dir())
        updated = status.updated if number(status.updated) else (folder / SPEC_NAME).stat().st_mtime
    except OSError as exc:
        started, updated = None, None
        problems.append(f"the folder cannot be read ({exc.strerror or type(exc).__name__})")
    # effective_state() has checked the driver's pid (on its own machine); a live driver rewrites its files.
    live = state in SWEEP_LIVE_STATES and typed(status.pid, int) is not None and status.pid > 0
    record.update(
        state=state if live or not problems else "damaged", reason="; ".join(problems) or None,
        pid=status.pid if live else None, search=typed(spec.data.get("search"), str),
        trials=typed(spec.data.get("trials"), int), trials_started=started, best_trial=typed(best.get("trial"), str),
        fd_ratio=number(best.get("fd_ratio")), best_step=typed(best.get("step"), int),
        dataset=typed(config.get("dataset"), str), preset=typed(config.get("preset"), str),
        steps=typed(config.get("steps"), int), updated=round(updated, 3) if updated is not None else None,
    )
    return record


def table_row(entry: dict[str, Any]) -> dict[str, Any]:
    """A record as the table shows it: `state` with the pid of a live process, `quality` the FD cell,
    `lr` both learning rates, `age_s` seconds since the last write."""
    sweep = entry["kind"] == "sweep"
    state = f"sweep {entry['state']}" if sweep else str(entry["state"])
    return {
        "name": entry["name"],
        "state": f"{state} (pid {entry['pid']})" if entry["pid"] else state,
        "pid": entry["pid"],
        "step": None if sweep else entry["step"],
        "trials": entry["trials"] if sweep else None,
        "d_loss": entry.get("d_loss"),
        "g_loss": entry.get("g_loss"),
        "quality": _sweep_quality(entry) if sweep else quality_cell(entry),
        "dataset": entry["dataset"] or "-",
        "preset": entry["preset"] or "-",
        "lr": "-" if sweep else format_lr_pair(entry["lr_g"], entry["lr_d"]),
        "age_s": time.time() - entry["updated"] if entry["updated"] is not None else math.inf,
    }


def quality_cell(entry: dict[str, Any]) -> str:
    """The FD column: `7.3x 10/10` (the last Frechet distance over its floor, classes covered), or why
    there is none: `judge 3/6` (3 of the judge's 6 epochs done: it trains now, or the run ended before it
    was ready), `off` (quality_every 0)."""
    status, ratio, classes = entry.get("fd_status"), entry.get("fd_ratio"), entry.get("classes")
    if status == "measured" and ratio is not None:
        return f"{ratio:.1f}x" + (f" {classes['covered']}/{classes['total']}" if classes else "")
    if status == "off":
        return "off"
    if status == "judge_unfinished" or (status == "pending" and entry.get("judge")):
        judge = entry.get("judge") or {}
        done, epochs = judge.get("epochs_done"), judge.get("epochs")
        return f"judge {done}/{epochs}" if done is not None and epochs is not None else "judge"
    return "-"


def damage_footer(entries: list[dict[str, Any]], most: int = 5) -> list[str]:
    """One line per damaged run or sweep under the table, saying what is damaged (the first `most`)."""
    damaged = [e for e in entries if e["state"] == "damaged"]
    lines = [f"{e['name']} is damaged: {e['reason']}" for e in damaged[:most]]
    if len(damaged) > most:
        lines.append(f"and {len(damaged) - most} more damaged (`gan-tui ls --json` says why)")
    return lines


def sweep_footer(entries: list[dict[str, Any]], runs_dir: Path) -> list[str]:
    """The line under the table that says how to list a sweep's trials (none without a sweep)."""
    sweeps = [e["name"] for e in entries if e["kind"] == "sweep"]
    if not sweeps:
        return []
    target = runs_dir / (sweeps[0] if len(sweeps) == 1 else "SWEEP")
    return [f"a sweep's trials: {gan_tui_command('ls', '--runs-dir', target)}"]


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
def _cells(row: dict[str, Any]) -> dict[str, str]:
    step, trials = row.get("step"), row.get("trials")
    if isinstance(trials, int):
        step_cell = f"{trials} trial" + ("s" if trials != 1 else "")
    else:
        step_cell = f"{step:,}" if isinstance(step, int) else "-"
    return {
        "name": str(row["name"]),
        "state": str(row["state"]),
        "step": step_cell,
        "d_loss": _number(row.get("d_loss")),
        "g_loss": _number(row.get("g_loss")),
        "quality": str(row.get("quality", "-")),
        "dataset": str(row.get("dataset", "-")),
        "preset": str(row.get("preset", "-")),
        "lr": str(row.get("lr", "-")),
        "age": format_age(float(row["age_s"])) if row.get("age_s") != math.inf else "-",
    }


def _sweep_quality(entry: dict[str, Any]) -> str:
    ratio = entry.get("fd_ratio")
    return f"{ratio:.1f}x" if ratio is not None else "-"


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
