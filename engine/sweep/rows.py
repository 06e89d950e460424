"""What a viewer shows per trial, read from the sweep folder alone (no Ray, no Textual).

Each trial's own run folder says its state, step, learning rates, FD/floor history and the PBT
member it last copied; sweep.json adds Ray's view (trials still pending, errors, the best).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.lock import pid_alive
from engine.runs import RunDir, format_lr
from engine.sweep.spec import SweepStatus

SORT_KEYS = ("name", "fd", "step", "lr_g", "lr_d", "state")
_LIVE = ("starting", "running", "paused")
_SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class TrialRow:
    """One trial as the sweep view and the headless table show it."""

    name: str
    path: Path
    state: str
    step: int
    lr_g: float | None
    lr_d: float | None
    d_steps: int | None
    batch_size: int | None
    fd_ratio: float | None
    history: tuple[float, ...]
    copied_from: str
    """The PBT member whose weights this trial last took ("" if none)."""
    best: dict[str, Any] | None = None
    """Its lowest FD/floor in its own log, as sweep.json's `best` ({"trial", "fd_ratio", "step", "config"});
    it counts the measurements Ray never got (the one taken as a stopped trial saved)."""


def read_trials(sweep_dir: Path, status: SweepStatus | None = None) -> list[TrialRow]:
    """Every trial of the sweep: the run folders, then trials Ray has not started yet."""
    status = status or SweepStatus.load(sweep_dir)
    rows = []
    folders = sorted(p for p in sweep_dir.glob("trial-*") if (p / "config.json").is_file()) if sweep_dir.is_dir() else []
    for folder in folders:
        rows.append(_read_trial(folder, status.trials.get(folder.name, {})))
    seen = {r.name for r in rows}
    for name, entry in sorted(status.trials.items()):
        if name not in seen:
            config = entry.get("config", {})
            rows.append(TrialRow(name, sweep_dir / name, str(entry.get("status", "pending")).lower(), 0,
                                 config.get("lr_g"), config.get("lr_d"), config.get("d_steps"),
                                 config.get("batch_size"), None, (), ""))
    return rows


def sort_rows(rows: list[TrialRow], key: str) -> list[TrialRow]:
    """Rows ordered by `key` (one of SORT_KEYS); best FD/floor first, trials without one last."""
    def value(row: TrialRow) -> Any:
        v = {"name": row.name, "fd": row.fd_ratio, "step": -row.step, "lr_g": row.lr_g, "lr_d": row.lr_d,
             "state": row.state}[key]
        return (v is None, v if v is not None else 0, row.name)
    return sorted(rows, key=value)


def sparkline(values: tuple[float, ...] | list[float], width: int = 12) -> str:
    """The last `width` values as block characters, low to high (a lower FD is a lower bar)."""
    tail = [v for v in values if math.isfinite(v)][-width:]
    if not tail:
        return ""
    lo, hi = min(tail), max(tail)
    span = hi - lo or 1.0
    return "".join(_SPARK[min(len(_SPARK) - 1, int((v - lo) / span * len(_SPARK)))] for v in tail)


def format_table(rows: list[TrialRow], status: SweepStatus) -> str:
    """The headless table: one line per trial, then the sweep's state and its best trial so far."""
    lines = [f"{'TRIAL':10} {'STATE':12} {'STEP':>8} {'LR_G':>9} {'LR_D':>9} {'D':>2} {'FD/FLOOR':>9} {'TREND':12} COPIED"]
    for r in rows:
        lines.append(
            f"{r.name:10} {r.state[:12]:12} {r.step:>8,} {format_lr(r.lr_g):>9} {format_lr(r.lr_d):>9} "
            f"{r.d_steps or '-':>2} {_ratio(r.fd_ratio):>9} {sparkline(r.history):12} {r.copied_from or '-'}"
        )
    state = status.effective_state()
    note = status.message if state == status.state else f"its driver (pid {status.pid}) is gone"
    lines.append(f"sweep {state}" + (f": {note}" if note else ""))
    return "\n".join(lines)


def best_trial(status: SweepStatus, rows: Sequence[TrialRow] = ()) -> dict[str, Any]:
    """The lowest FD/floor of the sweep: the best Ray was told of, or a trial's own lower measurement
    (a stopped trial measures its final checkpoint after its last report). {} when there is none."""
    best = dict(status.best) if isinstance(status.best, dict) else {}
    for row in rows:
        if row.best is not None and row.best["fd_ratio"] < best.get("fd_ratio", math.inf):
            best = row.best
    return best


def describe_best(status: SweepStatus, rows: Sequence[TrialRow] = ()) -> str:
    """`best: trial-002 FD/floor 3.1x at step 4,000 (lr_g 2e-4, lr_d 1e-4, d_steps 1, batch 64)`, of
    sweep.json and `rows` (see best_trial)."""
    best = best_trial(status, rows)
    if not best:
        return "best: no trial reported a quality figure yet" if status.effective_state() in ("starting", "running") \
            else "best: no trial reported a quality figure"
    config = ", ".join(f"{k} {format_lr(v)}" if k.startswith("lr_") else f"{k} {v:.3g}" if isinstance(v, float)
                       else f"{k} {v}" for k, v in best.get("config", {}).items())
    step = best.get("step")
    at = f" at step {step:,}" if isinstance(step, int) else ""
    return f"best: {best['trial']} FD/floor {_ratio(best.get('fd_ratio'))}{at} ({config})"


# ------------------------------------------------------------------ helpers
def _read_trial(folder: Path, entry: dict[str, Any]) -> TrialRow:
    run = RunDir(folder)
    config = run.read_config()
    state = _state(run)
    if state in ("stopped", "unknown") and entry.get("status") == "PAUSED":
        state = "paused (pbt)"  # PBT set it aside between incarnations
    if str(entry.get("status")) == "ERROR":
        state = "error"
    step, lr_g, lr_d, d_steps = 0, config.get("lr_g"), config.get("lr_d"), config.get("d_steps")
    history: list[float] = []
    best: dict[str, Any] | None = None
    copied = ""
    for record in run.read_log():
        kind = record.get("type")
        if kind == "metrics":
            step = record.get("step", 0)
            lr_g, lr_d = record.get("lr_g", lr_g), record.get("lr_d", lr_d)
        elif kind == "quality":
            fd, floor = record.get("fd"), record.get("fd_floor")
            if isinstance(fd, (int, float)) and isinstance(floor, (int, float)) and floor > 0:
                history.append(fd / floor)
                if math.isfinite(history[-1]) and (best is None or history[-1] < best["fd_ratio"]):
                    best = {"trial": folder.name, "fd_ratio": history[-1], "step": record.get("step"),
                            "config": {"lr_g": lr_g, "lr_d": lr_d, "d_steps": d_steps,
                                       "batch_size": config.get("batch_size")}}
        elif kind == "hparams":
            new = record["new"] if isinstance(record.get("new"), dict) else {}
            lr_g, lr_d, d_steps = new.get("lr_g", lr_g), new.get("lr_d", lr_d), new.get("d_steps", d_steps)
            if record.get("source") == "pbt" and record.get("action") == "exploit":
                copied = f"{record.get('member', '?')}@{record.get('step', 0)}"
    return TrialRow(folder.name, folder, state, step, lr_g, lr_d, d_steps, config.get("batch_size"),
                    history[-1] if history else None, tuple(history), copied, best)


def _state(run: RunDir) -> str:
    record = run.read_state()
    if not record:
        return "starting"  # no state.json yet (or a damaged one)
    state = record.get("state", "unknown")
    if state in _LIVE and not (isinstance(record.get("pid"), int) and pid_alive(record["pid"])):
        return "interrupted"
    return state


def _ratio(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, (int, float)) and math.isfinite(value) else "-"
