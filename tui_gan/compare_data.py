"""Runs read from their folders for `gan-tui compare`: incremental log readers and pure functions.

A `RunReader` follows `metrics.jsonl` with the run folder's own reader (engine/runs/reader.py's
LogFollower: only what was appended since the last poll; a resume or rollback rewrites the file
under a new inode, which starts a fresh read; damaged lines are skipped as everywhere). Everything
the compare screen shows is computed from the readers by pure functions below: curves for a metric
over a chosen x axis, the config keys that differ, and one summary row per run.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.runs import RunDir, RunError, read_grid_png, resolve_run, run_state
from engine.runs import format_lr

MAX_RUNS = 6
SILENT_AFTER_S = 30.0  # a live run that wrote nothing for this long is marked as silent
#: (key, label) of the metrics the compare view can show; "d_probs" is D(x) and D(G(z)) together.
METRICS = (
    ("d_loss", "D loss"),
    ("g_loss", "G loss"),
    ("d_probs", "D(x) lines / D(G(z)) dots"),
    ("fd_over_floor", "FD / floor"),
    ("confidence", "confidence"),
    ("label_agreement", "label agreement"),
)
#: (key, label) of the x axes.
X_AXES = (("step", "step"), ("images", "images seen"), ("time", "train time (min)"))
#: The settings the legend names when runs differ in them, most telling first (the rest: `d`).
LEGEND_KEYS = ("lr_g", "lr_d", "batch_size", "loss", "preset", "d_steps", "dataset", "beta1", "beta2",
               "label_smoothing", "latent_dim", "seed")
_AGREEMENT_KEYS = ("label_agreement", "agreement")  # the quality record's field, by its likely names


class CompareError(ValueError):
    """A run cannot be compared (missing, not a run folder, too many); the message is one line."""


@dataclass
class RunSeries:
    """Column lists of one run's log, as far as it has been read."""

    step: list[int] = field(default_factory=list)
    images: list[float] = field(default_factory=list)
    minutes: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)  # d_loss, g_loss, d_real, d_fake
    q_step: list[int] = field(default_factory=list)
    q_values: dict[str, list[float]] = field(default_factory=dict)  # fd_over_floor, confidence, label_agreement
    changes: list[int] = field(default_factory=list)  # steps where hyperparameters changed
    alarms_raised: int = 0
    alarms_active: set[str] = field(default_factory=set)

    def column(self, name: str) -> list[float]:
        return self.values.setdefault(name, [])

    def q_column(self, name: str) -> list[float]:
        return self.q_values.setdefault(name, [])


class RunReader:
    """One run folder, read incrementally: `poll()` picks up what was appended since the last call."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.name = run.path.name
        self.config: dict[str, Any] = run.read_config()
        self.series = RunSeries()
        self.last_write = 0.0  # mtime of metrics.jsonl when last read
        self._log = run.follow_log()
        self._images = 0.0
        self._d_steps = int(self.config.get("d_steps", 1) or 1)
        self._grid_path: Path | None = None
        self.grid: np.ndarray | None = None
        self.grid_step: int | None = None

    def poll(self) -> bool:
        """Read what was appended (or everything, if the file was replaced); True if anything changed."""
        update = self._log.poll()
        if not update.exists:
            return False  # no log yet
        if update.reset:
            self._reset()
            self.config = self.run.read_config() or self.config
        for record in update.records:
            self._add(record)
        self.last_write = update.mtime
        return self._poll_grid() or update.changed

    def state(self, now: float | None = None) -> str:
        """running / paused / finished / ... as `gan-tui ls` says it; a live run that went quiet says so."""
        state, _ = run_state(self.run)
        now = time.time() if now is None else now
        if state == "running" and self.last_write and now - self.last_write > SILENT_AFTER_S:
            return f"silent {int(now - self.last_write)}s"
        return state

    # ------------------------------------------------------------- internals
    def _reset(self) -> None:
        self.series = RunSeries()
        self._images = 0.0
        self._d_steps = int(self.config.get("d_steps", 1) or 1)

    def _add(self, record: dict[str, Any]) -> None:
        s, kind, step = self.series, record.get("type", "metrics"), record.get("step")
        if step is None:
            return
        if kind == "metrics":
            if s.step and step <= s.step[-1]:
                return
            self._images += (step - (s.step[-1] if s.step else 0)) * int(self.config.get("batch_size", 1)) * self._d_steps
            s.step.append(step)
            s.images.append(self._images)
            s.minutes.append(_number(record.get("elapsed_s")) / 60.0)
            for name in ("d_loss", "g_loss", "d_real", "d_fake"):
                s.column(name).append(_number(record.get(name)))
        elif kind == "quality":
            fd, floor = _number(record.get("fd")), _number(record.get("fd_floor"))
            s.q_step.append(step)
            s.q_column("fd_over_floor").append(fd / floor if floor > 0 else math.nan)
            s.q_column("confidence").append(_number(record.get("confidence")))
            agreement = next((record[k] for k in _AGREEMENT_KEYS if k in record), None)
            s.q_column("label_agreement").append(_number(agreement))
        elif kind == "hparams":
            s.changes.append(step)
            new = record.get("new")
            if isinstance(new, dict) and isinstance(new.get("d_steps"), int):
                self._d_steps = new["d_steps"]
        elif kind == "alarm":
            s.alarms_raised += 1
            s.alarms_active.add(str(record.get("kind")))
        elif kind == "alarm_cleared":
            s.alarms_active.discard(str(record.get("kind")))

    def _poll_grid(self) -> bool:
        grids = self.run.sample_grids()
        if not grids or grids[-1][1] == self._grid_path:
            return False
        step, path = grids[-1]
        try:
            self.grid = read_grid_png(path, int(self.config.get("num_samples", 64)))
        except (OSError, ValueError, RunError):
            return False  # a grid being replaced (or damaged); the next poll tries again
        self._grid_path, self.grid_step = path, step
        return True


# ------------------------------------------------------------------ opening
def open_runs(specs: list[str], runs_dir: Path) -> list[RunReader]:
    """Readers for the named runs (a folder, a name in runs_dir, or `latest`); CompareError says why not."""
    if not specs:
        raise CompareError("name at least one run to compare")
    if len(specs) > MAX_RUNS:
        raise CompareError(f"at most {MAX_RUNS} runs can be compared at once, got {len(specs)}")
    readers, seen = [], set()
    for spec in specs:
        try:
            run = resolve_run(runs_dir, spec)
        except RunError as exc:
            raise CompareError(str(exc)) from None
        key = run.path.resolve()
        if key in seen:
            raise CompareError(f"run {spec} is named twice")
        seen.add(key)
        readers.append(RunReader(run))
    return readers


def newest_runs(runs_dir: Path, count: int = MAX_RUNS) -> list[RunReader]:
    """The `count` most recently written runs of a runs folder (the dashboard's compare view)."""
    if not runs_dir.is_dir():
        return []
    found = [p for p in runs_dir.iterdir() if (p / "config.json").is_file()]
    found.sort(key=lambda p: _mtime(p / "metrics.jsonl") or _mtime(p), reverse=True)
    return [RunReader(RunDir(p)) for p in sorted(found[:count])]


# ------------------------------------------------------------ pure functions
def available_metrics(readers: list[RunReader]) -> list[tuple[str, str]]:
    """The metrics to offer: label agreement only when some run's quality records have it."""
    has_agreement = any(np.isfinite(r.series.q_values.get("label_agreement", [])).any() for r in readers)
    return [(key, label) for key, label in METRICS if key != "label_agreement" or has_agreement]


def curves(series: RunSeries, metric: str, x_axis: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(line name, x, y) for a run: one line, or two for D(x) and D(G(z)). Quality metrics use the x of
    the nearest metrics record at or after the measurement's step."""
    if metric == "d_probs":
        names = [("D(x)", "d_real"), ("D(G(z))", "d_fake")]
        return [(label, _x(series, series.step, x_axis), np.asarray(series.values.get(k, []), dtype=float)) for label, k in names]
    if metric in ("d_loss", "g_loss"):
        return [(metric, _x(series, series.step, x_axis), np.asarray(series.values.get(metric, []), dtype=float))]
    return [(metric, _x(series, series.q_step, x_axis), np.asarray(series.q_values.get(metric, []), dtype=float))]


def x_at_steps(series: RunSeries, steps: list[int], x_axis: str) -> np.ndarray:
    """Where given steps (hyperparameter changes, say) fall on the chosen x axis."""
    return _x(series, steps, x_axis)


def config_diff(configs: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(key, one value per run) for the config keys whose values are not all the same."""
    keys = sorted({k for c in configs for k in c})
    rows = []
    for key in keys:
        values = [json.dumps(c.get(key)) if key in c else "-" for c in configs]
        if len(set(values)) > 1:
            rows.append((key, [v.strip('"') for v in values]))
    return rows


def legend_settings(configs: list[dict[str, Any]], keys: int = 3) -> list[str]:
    """Per run, its values of the (at most `keys`) most telling settings in which the runs differ,
    learning rates first: `lr_g 1e-3 lr_d 2e-4` (from config_diff, as the `d` view shows them)."""
    differing = {key for key, _ in config_diff(configs)}
    chosen = [k for k in LEGEND_KEYS if k in differing][:keys]
    return [" ".join(f"{k} {_setting(k, c.get(k))}" for k in chosen) for c in configs]


def summary(reader: RunReader, now: float | None = None) -> dict[str, Any]:
    """One summary row: best FD/floor and its step, train time to reach 3x floor, last confidence,
    alarms, state, step. Missing figures are None."""
    s = reader.series
    ratios = np.asarray(s.q_values.get("fd_over_floor", []), dtype=float)
    best = best_step = to_3x = None
    if np.isfinite(ratios).any():
        i = int(np.nanargmin(ratios))
        best, best_step = float(ratios[i]), s.q_step[i]
        hits = np.flatnonzero(ratios <= 3.0)
        if hits.size:
            to_3x = float(_x(s, [s.q_step[int(hits[0])]], "time")[0]) * 60.0
    confidence = [c for c in s.q_values.get("confidence", []) if math.isfinite(c)]
    return {
        "name": reader.name,
        "step": s.step[-1] if s.step else 0,
        "best": best,
        "best_step": best_step,
        "to_3x_s": to_3x,
        "confidence": confidence[-1] if confidence else None,
        "alarms": s.alarms_raised,
        "active": sorted(s.alarms_active),
        "state": reader.state(now),
    }


SORT_KEYS = ("name", "best", "to_3x_s", "confidence", "alarms", "step", "state")


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows ordered by one summary field, missing figures last (numbers ascending, step descending)."""
    if key == "step":
        return sorted(rows, key=lambda r: -r["step"])
    return sorted(rows, key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0))


def short_names(names: list[str], width: int = 18) -> list[str]:
    """Names without the prefix and suffix they all share (at '-' boundaries), cut to `width`."""
    if len(names) < 2:
        return [n[-width:] for n in names]
    parts = [n.split("-") for n in names]
    head = 0
    while all(len(p) > head + 1 for p in parts) and len({p[head] for p in parts}) == 1:
        head += 1
    tail = 0
    while all(len(p) > head + tail + 1 for p in parts) and len({p[-1 - tail] for p in parts}) == 1:
        tail += 1
    out = ["-".join(p[head : len(p) - tail]) or n for p, n in zip(parts, names)]
    return [n if len(n) <= width else n[: width - 1] + "~" for n in out]


# ------------------------------------------------------------------ helpers
def _x(series: RunSeries, steps: list[int], x_axis: str) -> np.ndarray:
    steps_arr = np.asarray(steps, dtype=float)
    if x_axis == "step" or not series.step:
        return steps_arr
    known = np.asarray(series.step, dtype=float)
    scale = np.asarray(series.images if x_axis == "images" else series.minutes, dtype=float)
    return np.interp(steps_arr, np.concatenate([[0.0], known]), np.concatenate([[0.0], scale]))


def _setting(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.startswith("lr_"):
        return format_lr(value)
    return Path(value).name if key == "dataset" and isinstance(value, str) and "/" in value else str(value)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
