"""The run folder: config.json, metrics.jsonl, samples/*.png, checkpoints/*.pt, error.log."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import AUTO_CONDITIONAL, NAMED_DATASETS, TrainConfig
from engine.journal import append_text, atomic_write

GRID_PADDING = 2
# What a launcher or the lock may have put in a new run's folder before the trainer creates the run.
_PRE_RUN_FILES = {"train.log", ".lock"}
_CKPT_RE = re.compile(r"^step_(\d+)\.pt$")
_GRID_RE = re.compile(r"^step_(\d+)\.png$")


class RunError(RuntimeError):
    """A run folder is missing or unusable."""


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
        try:
            data = json.loads(self.state_path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(data, dict):
            return {}
        kinds = {"state": (str,), "step": (int,), "pid": (int,), "updated": (int, float)}
        return {k: v for k, v in data.items()
                if k not in kinds or isinstance(v, kinds[k]) and not isinstance(v, bool)}

    # ---------------------------------------------------------------- metrics
    def append_log(self, record: dict[str, Any]) -> None:
        """One JSON line; non-finite numbers become null (JSON has no NaN)."""
        append_text(self.metrics_path, log_line(record))

    def read_log(self) -> list[dict[str, Any]]:
        """Every record; damaged lines (a killed process's half line, garbage anywhere) are skipped."""
        return self.read_log_counted()[0]

    def read_log_counted(self) -> tuple[list[dict[str, Any]], int]:
        """(every good record, how many lines were skipped as damaged)."""
        records: list[dict[str, Any]] = []
        bad = 0
        for raw in self._log_lines():
            record = parse_log_line(raw)
            if record is None:
                bad += raw.strip() != b""
            else:
                records.append(record)
        return records, bad

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
        moved = []
        for ckpt_step, path in self.checkpoints():
            if ckpt_step > step:
                target = self.checkpoints_dir / "abandoned" / path.name
                target.parent.mkdir(exist_ok=True)
                os.replace(path, target)
                moved.append(target)
        return moved

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

    # ---------------------------------------------------------------- quality
    @property
    def quality_index_path(self) -> Path:
        return self.checkpoints_dir / "quality.json"

    def checkpoint_quality(self) -> dict[int, dict[str, Any]]:
        """step -> the quality measured at that step, for the checkpoints that still exist."""
        try:
            data = json.loads(self.quality_index_path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return {}  # damaged: "roll back to best" then says no checkpoint has a figure
        if not isinstance(data, dict):
            return {}
        existing = {step for step, _ in self.checkpoints()}
        return {int(k): v for k, v in data.items()
                if isinstance(v, dict) and k.isdigit() and len(k) < 19 and int(k) in existing}

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


def new_run_name(cfg: TrainConfig) -> str:
    """A sortable, readable default: 20261122-213000-mnist-cond-mlp. A named dataset whose files are
    not on this machine, with no --data-root, is named `synthetic`: offline, engine/data.py falls back
    to the font digits, and the name must say so (a first run that does download the files is the
    one case this guess gets wrong; `gan-tui ls` still lists its real dataset)."""
    label = "synthetic" if _will_fall_back(cfg) else Path(cfg.dataset).name or "data"
    dataset = re.sub(r"[^A-Za-z0-9_-]+", "_", label)
    preset = cfg.preset
    if preset == "auto" and cfg.dataset in NAMED_DATASETS:
        preset = AUTO_CONDITIONAL  # every named dataset has labels; a path's are known only once loaded
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{dataset}-{preset}"


# Where engine/data.py looks for a named dataset's IDX files (kept here without its torch import, so
# naming a run stays instant): torchvision's folder name, and the system folders searched as well.
_TV_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
_SYSTEM_DATA = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}


def _will_fall_back(cfg: TrainConfig) -> bool:
    if cfg.dataset not in _TV_FOLDERS or cfg.data_root is not None:
        return False
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    roots = [Path(cache) / "gan-tui" / "datasets", *_SYSTEM_DATA.get(cfg.dataset, [])]
    for root in roots:
        for folder in (root / _TV_FOLDERS[cfg.dataset] / "raw", root):
            for split in ("train", "t10k"):
                stem = f"{split}-images-idx3-ubyte"
                if (folder / stem).is_file() or (folder / f"{stem}.gz").is_file():
                    return False
    return True


def resolve_run(runs_dir: Path, spec: str) -> RunDir:
    """'latest' (the most recently written run in runs_dir) or a path to a run folder."""
    if spec != "latest":
        path = Path(spec).expanduser()
        if not path.exists() and (runs_dir / spec).exists():
            path = runs_dir / spec
        if not path.is_dir():
            raise RunError(f"run {spec} does not exist")
        return RunDir.open(path)
    candidates = [p for p in runs_dir.glob("*") if (p / "config.json").is_file()] if runs_dir.is_dir() else []
    if not candidates:
        raise RunError(f"no runs in {runs_dir} to resume")
    return RunDir.open(max(candidates, key=_last_write))


def write_grid_png(path: Path, images: np.ndarray, scale: int = 1) -> None:
    """uint8 (N, 28, 28) -> one grid PNG (torchvision's make_grid layout), optionally scaled up."""
    import torch  # here, not at the top: listing and reading runs must not wait for torch
    from torchvision.utils import save_image

    tensor = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
    if scale > 1:
        tensor = tensor.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    # All-or-nothing: a viewer listing samples/ must never open a half-written PNG.
    atomic_write(path, lambda f: save_image(tensor, f, format="png", nrow=grid_columns(len(images)),
                                            padding=GRID_PADDING * scale))


def read_grid_png(path: Path, count: int) -> np.ndarray:
    """The inverse of write_grid_png at scale 1: uint8 (count, 28, 28). RunError names an unreadable
    or damaged PNG (a viewer skips it with a note)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("L"))
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises all three for damaged files
        raise RunError(f"sample grid {path} is unreadable ({type(exc).__name__}: {exc})") from exc
    cols, cell = grid_columns(count), 28 + GRID_PADDING
    rows = math.ceil(count / cols)
    if pixels.shape[0] < GRID_PADDING + rows * cell or pixels.shape[1] < GRID_PADDING + cols * cell:
        raise RunError(f"sample grid {path} is {pixels.shape[1]}x{pixels.shape[0]}, too small for {count} images")
    out = np.empty((count, 28, 28), dtype=np.uint8)
    for i in range(count):
        top, left = GRID_PADDING + (i // cols) * cell, GRID_PADDING + (i % cols) * cell
        out[i] = pixels[top : top + 28, left : left + 28]
    return out


def grid_columns(count: int) -> int:
    """Columns of a near-square grid (8 for 64 images)."""
    return max(1, math.ceil(math.sqrt(count)))


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


def parse_log_line(raw: bytes | str) -> dict[str, Any] | None:
    """One metrics.jsonl line -> its record, or None when the line is damaged (not UTF-8, not JSON,
    not an object, or a `step` that is not a whole number)."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, the int-digits limit
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool):
        return None
    return record


def read_config_dict(path: Path) -> dict[str, Any]:
    """A run's config.json as a dict, or {} when it is missing or damaged (listing tools only)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


__all__ = ["RunDir", "RunError", "check_export_name", "export_target", "log_line", "log_record", "new_run_name", "parse_log_line", "read_config_dict", "read_grid_png",
           "resolve_run", "write_grid_png"]
