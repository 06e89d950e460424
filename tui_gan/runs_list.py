"""`gan-tui ls`: the runs in a runs folder with their state, step, last losses, quality and age."""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.runs import RunDir
from tui_gan.formatting import format_duration

_LIVE = ("starting", "running", "paused")


def run_state(run: RunDir) -> tuple[str, int | None]:
    """(state, pid): a live state whose process is gone reads as "interrupted"."""
    record = run.read_state()
    state = record.get("state", "unknown")
    pid = record.get("pid")
    if state in _LIVE:
        if isinstance(pid, int) and _alive(pid):
            return state, pid
        return "interrupted", None
    return state, None


def list_runs(runs_dir: Path) -> list[dict[str, object]]:
    """One row per run folder, newest first."""
    rows = []
    folders = [p for p in runs_dir.iterdir() if (p / "config.json").is_file()] if runs_dir.is_dir() else []
    for folder in folders:
        run = RunDir(folder)
        state, pid = run_state(run)
        records = _tail_records(run)
        metrics = [r for r in records if r.get("type") == "metrics"]
        last = metrics[-1] if metrics else {}
        measured = [r for r in records if r.get("type") == "quality"]
        mtime = max((p.stat().st_mtime for p in (run.metrics_path, run.config_path) if p.exists()), default=0.0)
        rows.append({
            "name": folder.name,
            "state": f"{state} (pid {pid})" if pid else state,
            "step": last.get("step", 0),
            "d_loss": last.get("d_loss"),
            "g_loss": last.get("g_loss"),
            "quality": quality_summary(measured[-1]) if measured else "-",
            "age_s": time.time() - mtime,
        })
    return sorted(rows, key=lambda r: r["age_s"])  # type: ignore[arg-type,return-value]


def quality_summary(record: dict[str, object]) -> str:
    """`7.3x 10/10`: the last Frechet distance over its floor, and classes covered."""
    fd, floor, covered, hist = (record.get(k) for k in ("fd", "fd_floor", "classes_covered", "class_hist"))
    if not isinstance(fd, (int, float)) or not isinstance(floor, (int, float)) or floor <= 0:
        return "-"
    classes = f" {covered}/{len(hist)}" if isinstance(hist, list) else ""
    return f"{fd / floor:.1f}x{classes}"


def format_table(rows: list[dict[str, object]]) -> str:
    """The rows as an aligned text table."""
    header = f"{'NAME':40} {'STATE':22} {'STEP':>9} {'D LOSS':>8} {'G LOSS':>8} {'FD/FLOOR CLS':>12} {'AGE':>9}"
    lines = [header]
    for r in rows:
        d, g = (_number(r[k]) for k in ("d_loss", "g_loss"))
        lines.append(
            f"{str(r['name'])[:40]:40} {str(r['state'])[:22]:22} {int(r['step'] or 0):>9,} "  # type: ignore[call-overload]
            f"{d:>8} {g:>8} {str(r['quality']):>12} {format_duration(float(r['age_s'])):>9}"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def _number(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def _tail_records(run: RunDir) -> list[dict[str, object]]:
    # Only the end of a long log is needed for the last losses.
    import json

    if not run.metrics_path.is_file():
        return []
    with run.metrics_path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        start = max(0, f.tell() - 16384)
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    if start > 0:
        lines = lines[1:]  # the first line read from mid-file is partial
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed trainer whose parent has not reaped it yet is a zombie: dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
