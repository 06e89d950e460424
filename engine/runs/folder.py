"""The run folder: its paths, what the trainer writes there, and the listings of its grids and checkpoints."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from engine.config import TrainConfig
from engine.journal import append_text, atomic_write
from engine.runs.errors import RunError
from engine.runs.grids import write_grid_png
from engine.runs.names import new_run_name
from engine.runs.reader import (HEAD_BYTES, TAIL_BYTES, LogFollower, newest_log_records, parse_log_line, read_config_dict,
                                read_log, read_log_head, read_log_tail, read_quality_index, read_state_record)

# What a launcher or the lock may have put in a new run's folder before the trainer creates the run.
_PRE_RUN_FILES = {"train.log", ".lock"}
_CKPT_RE = re.compile(r"^step_(\d+)\.pt$")
_GRID_RE = re.compile(r"^step_(\d+)\.png$")


class IntactCheckpoint(NamedTuple):
    """A checkpoint that loaded and validated (RunDir.newest_intact_checkpoint)."""

    path: Path
    payload: dict[str, Any]
    config: TrainConfig
    skipped: tuple[str, ...]
    """One note per newer checkpoint that did not load (why, and which file)."""


class RunDir:
    """One run's folder on disk. Appends to the log are flushed at once, so a kill loses nothing written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config_path = path / "config.json"
        self.metrics_path = path / "metrics.jsonl"
        self.samples_dir = path / "samples"
        self.exports_dir = path / "exports"
        self.checkpoints_dir = path / "checkpoints"
        self.error_path = path / "error.log"

    # -------------------------------------------------------------- create/open
    @classmethod
    def create(cls, runs_dir: Path, name: str | None, cfg: TrainConfig) -> RunDir:
        """A new run folder; an existing non-empty one is refused (resume it instead)."""
        run = cls(cls.path_for(runs_dir, name, cfg))
        # A detached run's folder already holds the log its launcher opened (train.log), nothing else.
        if run.path.exists() and any(p.name not in _PRE_RUN_FILES for p in run.path.iterdir()):
            raise RunError(f"run folder {run.path} already exists; pick another --run-name or --resume it")
        for folder in (run.path, run.samples_dir, run.checkpoints_dir):
            folder.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg)
        return run

    @staticmethod
    def path_for(runs_dir: Path, name: str | None, cfg: TrainConfig) -> Path:
        """Where create() would put the run (so the caller can lock it first)."""
        name = name or new_run_name(cfg)
        if "/" in name or name in ("", ".", ".."):
            raise RunError(f"run name {name!r} must be a plain folder name")
        return runs_dir / name

    def write_config(self, cfg: TrainConfig) -> None:
        """config.json, replaced atomically (a viewer or a resume never reads half a config)."""
        atomic_write(self.config_path, json.dumps(cfg.to_dict(), indent=2) + "\n")

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run folder."""
        run = cls(path)
        if not run.config_path.is_file():
            from engine.sweep.spec import is_sweep  # a leaf module: no Ray

            if is_sweep(Path(path)):
                raise RunError(f"{path} is a sweep, not a run: its trials are the runs (gan-tui ls --runs-dir {path} "
                               "lists them)")
            raise RunError(f"{path} is not a gan-tui run (no config.json)")
        return run

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    def write_state(self, state: str, step: int) -> None:
        """Record where the run stands and which process trains it (read by `gan-tui ls`)."""
        record = {"state": state, "step": step, "pid": os.getpid(), "updated": time.time()}
        atomic_write(self.state_path, json.dumps(record))

    def read_state(self) -> dict[str, Any]:
        """The last recorded state, or {} when there is none or it is damaged. Fields of the wrong type
        are dropped (`state` a string, `step` and `pid` whole numbers, `updated` a number)."""
        return read_state_record(self.state_path)

    def read_config(self) -> dict[str, Any]:
        """config.json as plain data, or {} when it is missing or damaged (for listings and views;
        training loads it with TrainConfig.load, which says what is wrong)."""
        return read_config_dict(self.config_path)

    # ---------------------------------------------------------------- metrics
    def append_log(self, record: dict[str, Any]) -> None:
        """One JSON line; non-finite numbers become null (JSON has no NaN)."""
        append_text(self.metrics_path, log_line(record))

    def read_log(self) -> list[dict[str, Any]]:
        """Every record; damaged lines (a killed process's half line, garbage anywhere) are skipped."""
        return self.read_log_counted()[0]

    def read_log_counted(self) -> tuple[list[dict[str, Any]], int]:
        """(every good record, how many lines were skipped as damaged)."""
        return read_log(self.metrics_path)

    def read_log_head(self, size: int = HEAD_BYTES) -> list[dict[str, Any]]:
        """The records among the log's first `size` bytes."""
        return read_log_head(self.metrics_path, size)

    def read_log_tail(self, size: int = TAIL_BYTES) -> list[dict[str, Any]]:
        """The records among the log's last `size` bytes (a long log's newest records, read cheaply)."""
        return read_log_tail(self.metrics_path, size)

    def newest_log_records(self, kind: str | tuple[str, ...]) -> list[dict[str, Any]]:
        """The records of type `kind` nearest the log's end (see reader.newest_log_records)."""
        return newest_log_records(self.metrics_path, kind)

    def follow_log(self) -> LogFollower:
        """A reader of the log that reads only what was appended since its last poll."""
        return LogFollower(self.metrics_path)

    def truncate_log(self, step: int) -> int:
        """Drop records after `step` (they describe weights a resume or rollback throws away); returns
        the last step dropped. The dropped lines, and damaged ones, go to metrics.abandoned.jsonl: not lost."""
        kept: list[bytes] = []
        dropped: list[bytes] = []
        lost = step
        for raw in self._log_lines():
            if not raw.strip():
                continue
            record = parse_log_line(raw)
            if record is not None and record.get("step", 0) <= step:
                kept.append(raw)
            else:
                dropped.append(raw)
                if record is not None:
                    lost = max(lost, record.get("step", 0))
        if dropped:
            append_text(self.path / "metrics.abandoned.jsonl",
                        "".join(raw.decode(errors="replace") + "\n" for raw in dropped))
        atomic_write(self.metrics_path, b"".join(raw + b"\n" for raw in kept))
        return lost

    def _log_lines(self) -> list[bytes]:
        try:
            return self.metrics_path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return []

    # ---------------------------------------------------------------- samples
    def save_grid(self, step: int, images: np.ndarray) -> Path:
        """The step's fixed-noise grid as samples/step_XXXXXXXX.png."""
        path = self.grid_path(step)
        write_grid_png(path, images)
        return path

    def grid_path(self, step: int) -> Path:
        return self.samples_dir / f"step_{step:08d}.png"

    def sample_grids(self) -> list[tuple[int, Path]]:
        """(step, path) of every saved grid, oldest first."""
        return _numbered(self.samples_dir, _GRID_RE)

    def abandon_grids_after(self, step: int) -> list[Path]:
        """Move grids newer than `step` to samples/abandoned/ (a resume or rollback went back past them:
        the steps after it are drawn again, and a GIF or a viewer must not mix the two)."""
        return _set_aside(self.sample_grids(), step, self.samples_dir / "abandoned")

    # ------------------------------------------------------------ checkpoints
    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"step_{step:08d}.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint, oldest first."""
        return _numbered(self.checkpoints_dir, _CKPT_RE)

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1][1] if found else None

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the newest `keep` checkpoints; the best by quality is always kept."""
        best = self.best_checkpoint()
        for _, path in self.checkpoints()[:-keep]:
            if path != best:
                path.unlink(missing_ok=True)

    def abandon_checkpoints_after(self, step: int) -> list[Path]:
        """Move checkpoints newer than `step` to checkpoints/abandoned/ (a rollback left them behind)."""
        return _set_aside(self.checkpoints(), step, self.checkpoints_dir / "abandoned")

    def find_checkpoint(self, spec: str, up_to_step: int | None = None) -> Path:
        """The checkpoint named by `spec`: latest (or last-good: the newest at or before `up_to_step`),
        best (lowest Frechet distance), a step number, or a file. RunError says why none fits."""
        found = [(step, path) for step, path in self.checkpoints() if up_to_step is None or step <= up_to_step]
        if spec in ("latest", "last-good"):
            if not found:
                raise RunError(f"run {self.path} has no checkpoint yet")
            return found[-1][1]
        if spec == "best":
            best = self.best_checkpoint()
            if best is None:
                raise RunError(f"no checkpoint of run {self.path} has a quality figure yet")
            return best
        if spec.isdigit() and self.checkpoint_path(int(spec)).is_file():
            return self.checkpoint_path(int(spec))
        path = Path(spec).expanduser()
        if not spec.isdigit() and path.is_file():
            return path
        steps = ", ".join(str(step) for step, _ in self.checkpoints()) or "none"
        raise RunError(f"no checkpoint {spec!r} in {self.path} (use latest, best, a step or a file; steps: {steps})")

    def newest_intact_checkpoint(self) -> IntactCheckpoint:
        """What a resume starts from: the newest checkpoint that loads and validates, with a note for
        every newer one skipped. CheckpointError when there is none, or none is intact."""
        from engine.checkpoint import CheckpointError, load_training_checkpoint  # torch: only when resuming

        found = self.checkpoints()
        if not found:
            raise CheckpointError(f"run {self.path} has no checkpoint to resume from")
        skipped: list[str] = []
        for _step, path in reversed(found):
            try:
                payload, cfg = load_training_checkpoint(path)
            except CheckpointError as exc:
                skipped.append(str(exc))
                continue
            return IntactCheckpoint(path, payload, cfg, tuple(skipped))
        raise CheckpointError(f"run {self.path} has no intact checkpoint to resume from: {skipped[0]}"
                              + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))

    # ---------------------------------------------------------------- quality
    @property
    def quality_index_path(self) -> Path:
        return self.checkpoints_dir / "quality.json"

    def checkpoint_quality(self) -> dict[int, dict[str, Any]]:
        """step -> the quality measured at that step, for the checkpoints that still exist ({} when the
        index is damaged: "roll back to best" then says no checkpoint has a figure)."""
        existing = {step for step, _ in self.checkpoints()}
        return {step: q for step, q in read_quality_index(self.quality_index_path).items() if step in existing}

    def record_checkpoint_quality(self, step: int, quality: dict[str, Any]) -> None:
        """Remember the quality of the checkpoint at `step` (atomically; the index is small)."""
        index = {str(k): v for k, v in self.checkpoint_quality().items()}
        index[str(step)] = _finite(quality)
        atomic_write(self.quality_index_path, json.dumps(index, indent=1, sort_keys=True))

    def best_checkpoint(self) -> Path | None:
        """The checkpoint whose samples had the lowest Frechet distance, or None if none was measured."""
        scored = [(q["fd"], step) for step, q in self.checkpoint_quality().items()
                  if isinstance(q.get("fd"), (int, float)) and not isinstance(q["fd"], bool) and math.isfinite(q["fd"])]
        return self.checkpoint_path(min(scored)[1]) if scored else None


def export_target(run: RunDir, name: str, default: str) -> Path:
    """Where an export named by a viewer goes: always inside the run's exports/. A bare name (or a
    relative path below exports/) is kept; an absolute path, `..` or a hidden name is refused with
    RunError; "" means `default`; a name without a suffix gets .png."""
    parts = check_export_name(name.strip() if isinstance(name, str) else "") or (default,)
    path = run.exports_dir.joinpath(*parts)
    return path if path.suffix else path.with_suffix(".png")


def check_export_name(name: str) -> tuple[str, ...]:
    """The parts of an export name that stays inside exports/ (() for ""); RunError otherwise."""
    if not name:
        return ()
    bad = RunError(f"export name {name[:80]!r} must be a file name inside the run's exports/ "
                   "(no absolute path, no '..', no hidden name)")
    if "\x00" in name or "\\" in name or name.startswith(("/", "~")) or len(name) > 200:
        raise bad
    parts = Path(name).parts
    if not parts or any(p in ("..", ".") or p.startswith(".") for p in parts):
        raise bad
    return parts


def resolve_run(runs_dir: Path, spec: str) -> RunDir:
    """'latest' (the most recently written run in runs_dir) or a path to a run folder."""
    if spec != "latest":
        path = Path(spec).expanduser()
        if not path.exists() and (runs_dir / spec).exists():
            path = runs_dir / spec
        if not path.is_dir():
            where = "" if Path(spec).is_absolute() else f" (neither {spec} here nor {runs_dir / spec} is a folder)"
            raise RunError(f"run {spec} does not exist{where}")
        return RunDir.open(path)
    candidates = [p for p in runs_dir.glob("*") if (p / "config.json").is_file()] if runs_dir.is_dir() else []
    if not candidates:
        raise RunError(f"no runs in {runs_dir}, so no latest one")
    return RunDir.open(max(candidates, key=_last_write))


def _set_aside(numbered: list[tuple[int, Path]], step: int, folder: Path) -> list[Path]:
    """Move the files numbered past `step` into `folder` (kept, not deleted: a name set aside by an
    earlier rollback gets a suffix instead of being replaced)."""
    moved = []
    for number, path in numbered:
        if number > step:
            folder.mkdir(exist_ok=True)
            target = folder / path.name
            n = 1
            while target.exists():
                target = folder / f"{path.stem}.{n}{path.suffix}"
                n += 1
            os.replace(path, target)
            moved.append(target)
    return moved


def _numbered(folder: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return sorted(found)


def _last_write(run: Path) -> float:
    metrics = run / "metrics.jsonl"
    return (metrics if metrics.exists() else run).stat().st_mtime


def log_record(record_type: str, step: int, **fields: Any) -> dict[str, Any]:
    """A metrics.jsonl record of any type. Every line carries the metrics keys, so a consumer can read
    the file as one table."""
    return {"type": record_type, "step": step, "d_loss": None, "g_loss": None, "images_per_s": None, **fields}


def log_line(record: dict[str, Any]) -> str:
    """One metrics.jsonl line; non-finite numbers become null (JSON has no NaN)."""
    return json.dumps(_finite(record), separators=(",", ":")) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value

