"""Where a run stands, from its folder alone: its state.json, the folder's lock, and the line a
launcher writes to train.log before its trainer takes the lock. Read by `gan-tui ls`, `attach`,
`compare`, the launcher's refusals and every viewer's leave note."""

from __future__ import annotations

import os
import re
import time

from engine.lock import owner, pid_alive
from engine.runs.folder import RunDir

LIVE_STATES = ("starting", "running", "paused")
_TAIL_BYTES = 16384
_STARTING_RE = re.compile(r"^gan-tui: training process (\d+) starting at ", re.MULTILINE)


def run_state(run: RunDir) -> tuple[str, int | None]:
    """(state, pid): the pid only while a live process trains the run; a live state whose process is
    gone reads as "interrupted"."""
    record = run.read_state()
    state = record.get("state", "unknown")
    pid = record.get("pid")
    pid = pid if isinstance(pid, int) and pid > 0 else None
    holder = owner(run.path)
    if holder is not None:
        # The folder's lock is exact. A state.json written by another process is a previous run's
        # ("stopped" before a resume): the holder has not written its own yet.
        if holder == pid:
            return (state, holder) if state in LIVE_STATES else (state, None)
        return "starting", holder or None
    launched = _starting_pid(run)
    if launched is not None and launched != pid:
        return "starting", launched
    if state in LIVE_STATES:
        if pid is not None and pid_alive(pid):
            return state, pid
        return "interrupted", None
    return state, None


def starting_line(pid: int) -> str:
    """The line a launcher writes to train.log when it starts a trainer (read back by `run_state`)."""
    return f"gan-tui: training process {pid} starting at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"


def last_step(run: RunDir) -> int:
    """The newest step the run is known to have reached: its log's last record or its state.json."""
    steps = [r.get("step", 0) for r in run.read_log_tail()]
    steps.append(run.read_state().get("step", 0))
    return max(steps, default=0)


def _starting_pid(run: RunDir) -> int | None:
    """The pid of a trainer a launcher started that is alive but has not taken the folder's lock yet."""
    try:
        with (run.path / "train.log").open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL_BYTES))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    found = _STARTING_RE.findall(text)
    if not found:
        return None
    pid = int(found[-1])
    return pid if pid_alive(pid) else None
