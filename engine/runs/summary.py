"""One run folder as one plain record: what `gan-tui ls` lists (as a table or as `--json`) and what
`gan-tui show` starts from. Every key is always there (a figure the folder does not hold is None),
numbers are numbers, and a damaged or unreadable folder is a record too (state "damaged" and a
reason), never an exception. No torch here."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from engine.config import NAMED_DATASETS
from engine.runs.folder import RunDir
from engine.runs.liveness import LIVE_STATES, run_state
from engine.runs.reader import newest_log_records, read_json_file

#: The keys of every run record, in the order `ls --json` writes them (README: "Scriptable output").
RUN_KEYS = ("kind", "name", "path", "state", "reason", "pid", "step", "steps", "epoch", "epochs", "dataset", "preset",
            "loss", "fd", "fd_floor", "fd_ratio", "classes", "quality_step", "fd_status", "judge", "d_loss", "g_loss",
            "lr_g", "lr_d", "images_per_s", "updated")
#: Why a run has an FD or has none (`fd_status`).
FD_STATUSES = ("measured", "off", "judge_unfinished", "pending")
_FALLBACK_NOTE = "embedded font digits"  # engine/data.py's fallback note says this
_RUN_FILES = ("config.json", "state.json", "metrics.jsonl", "train.log")


def is_run_folder(path: Path) -> bool:
    """A folder a trainer or its launcher wrote to (a run just launched has only its train.log).
    OSError when the folder cannot be read."""
    return any(_exists(path / name) for name in _RUN_FILES)


def run_summary(path: Path) -> dict[str, Any]:
    """The record of the run folder at `path` (see RUN_KEYS and the README's table of them)."""
    record: dict[str, Any] = dict.fromkeys(RUN_KEYS)
    record.update(kind="run", name=path.name, path=os.path.abspath(path))
    try:
        _fill(record, RunDir(path))
    except OSError as exc:  # the folder itself cannot be read: listed, with the reason
        record.update(state="damaged", reason=f"the folder cannot be read ({exc.strerror or type(exc).__name__})")
    return record


def quality_figures(record: dict[str, Any]) -> dict[str, Any]:
    """A quality log record as the keys `fd`, `fd_floor`, `fd_ratio`, `classes` ({"covered", "total"})
    and `quality_step`; None for what it lacks."""
    fd, floor = number(record.get("fd")), number(record.get("fd_floor"))
    covered, hist = record.get("classes_covered"), record.get("class_hist")
    classes = None
    if isinstance(covered, int) and not isinstance(covered, bool) and isinstance(hist, list):
        classes = {"covered": covered, "total": len(hist)}
    return {"fd": fd, "fd_floor": floor, "fd_ratio": fd / floor if fd is not None and floor else None,
            "classes": classes, "quality_step": record.get("step")}


def number(value: Any) -> int | float | None:
    """A finite JSON number, or None (JSON has no NaN; a bool is not a figure)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def typed(value: Any, kind: type) -> Any:
    """`value` when it is of `kind` (not a bool for int), else None: a hand-edited file's odd value
    reads as missing."""
    return value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else None


# ------------------------------------------------------------------ helpers
def _fill(record: dict[str, Any], run: RunDir) -> None:
    config_file, state_file = read_json_file(run.config_path), read_json_file(run.state_path)
    with os.scandir(run.path):  # a folder that cannot be listed: OSError, told by run_summary
        pass
    problems = [f"{name} {f.problem}" for name, f in (("config.json", config_file), ("state.json", state_file))
                if f.problem]
    state, pid = run_state(run)
    tail = run.read_log_tail()
    if not config_file.exists and (state_file.exists or tail):
        problems.insert(0, "config.json is missing")  # a trainer writes it before anything else
    elif not config_file.exists and state == "unknown":
        state = "start failed"  # only the launcher's train.log: it says why
    if problems and state not in LIVE_STATES:
        state = "damaged"  # a live trainer rewrites its own files: its state is what it is doing
    config = config_file.data
    steps = [r.get("step", 0) for r in tail] + [run.read_state().get("step", 0)]
    metrics = [r for r in tail if r.get("type") == "metrics"]
    last = metrics[-1] if metrics else {}
    record.update(
        state=state, reason="; ".join(problems) or None, pid=pid, step=max(steps),
        steps=typed(config.get("steps"), int) if not number(config.get("epochs")) else None,
        epoch=number(last.get("epoch")), epochs=number(config.get("epochs")) or None,
        dataset=_dataset(run, config), preset=typed(config.get("preset"), str), loss=typed(config.get("loss"), str),
        d_loss=number(last.get("d_loss")), g_loss=number(last.get("g_loss")),
        lr_g=number(last.get("lr_g", config.get("lr_g"))), lr_d=number(last.get("lr_d", config.get("lr_d"))),
        images_per_s=number(last.get("images_per_s")), updated=_updated(run),
    )
    record.update(_quality(run, config, live=state in LIVE_STATES))


def _quality(run: RunDir, config: dict[str, Any], live: bool) -> dict[str, Any]:
    """The last quality figures, or why there are none (`fd_status`, and the judge's progress)."""
    measured = run.newest_log_records("quality")
    if measured:
        return {**quality_figures(measured[-1]), "fd_status": "measured"}
    if config.get("quality_every") == 0:
        return {"fd_status": "off"}
    # The newest of the judge's records says where it stands: ready ("judge"), an epoch of its training
    # begun ("judge_training"), or the run ended before it was ready ("judge_unfinished"). A process killed
    # while its judge trained wrote no judge_unfinished: its last judge_training says as much.
    judged = newest_log_records(run.metrics_path, ("judge", "judge_training", "judge_unfinished"))
    last = judged[-1] if judged else {}
    if last.get("type") == "judge_unfinished" and not live:
        done, epochs = typed(last.get("epochs_done"), int), typed(last.get("epochs"), int)
        return {"fd_status": "judge_unfinished", "judge": {"epochs_done": done, "epochs": epochs}}
    if last.get("type") == "judge_training":
        began, epochs = typed(last.get("epoch"), int), typed(last.get("epochs"), int)
        judge = {"epochs_done": began - 1 if began is not None else None, "epochs": epochs}
        return {"fd_status": "pending" if live else "judge_unfinished", "judge": judge}
    return {"fd_status": "pending"}


def _dataset(run: RunDir, config: dict[str, Any]) -> str | None:
    """The data the run really trains on: `synthetic` when a named dataset fell back to the font digits
    (runs from before config.json recorded the fallback say so only in the log)."""
    name = config.get("dataset")
    if not isinstance(name, str) or not name:
        return None
    if name not in NAMED_DATASETS:
        return Path(name).name or name
    if name != "synthetic" and any(r.get("type") == "warning" and r.get("kind") == "dataset"
                                   and _FALLBACK_NOTE in str(r.get("message", "")) for r in run.read_log_head()):
        return "synthetic"
    return name


def _updated(run: RunDir) -> float | None:
    """When the run last wrote anything (Unix time), or None when none of its files can be read."""
    mtimes = []
    for path in (run.metrics_path, run.config_path, run.state_path, run.path / "train.log"):
        try:
            mtimes.append(path.stat().st_mtime)
        except OSError:
            continue
    return round(max(mtimes), 3) if mtimes else None


def _exists(path: Path) -> bool:
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True
