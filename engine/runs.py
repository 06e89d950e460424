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

from engine.config import TrainConfig

GRID_PADDING = 2
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
        name = name or new_run_name(cfg)
        if "/" in name or name in ("", ".", ".."):
            raise RunError(f"run name {name!r} must be a plain folder name")
        run = cls(runs_dir / name)
        # A detached run's folder already holds the log its launcher opened (train.log), nothing else.
        if run.path.exists() and any(p.name != "train.log" for p in run.path.iterdir()):
            raise RunError(f"run folder {run.path} already exists; pick another --run-name or --resume it")
        for folder in (run.path, run.samples_dir, run.checkpoints_dir):
            folder.mkdir(parents=True, exist_ok=True)
        cfg.save(run.config_path)
        return run

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
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.state_path)

    def read_state(self) -> dict[str, Any]:
        """The last recorded state, or {} when there is none."""
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    # ---------------------------------------------------------------- metrics
    def append_log(self, record: dict[str, Any]) -> None:
        """One JSON line; non-finite numbers become null (JSON has no NaN)."""
        line = json.dumps(_finite(record), separators=(",", ":"))
        with self.metrics_path.open("a") as f:
            f.write(line + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """Every record; a half-written last line (a killed process) is skipped."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_log(self, step: int) -> int:
        """Drop records after `step` (they describe weights a resume or rollback throws away); returns
        the last step dropped. The dropped lines are appended to metrics.abandoned.jsonl, not lost."""
        records = self.read_log()
        kept = [r for r in records if r.get("step", 0) <= step]
        dropped = [r for r in records if r.get("step", 0) > step]
        lost = max((r.get("step", 0) for r in records), default=step)
        if dropped:
            with (self.path / "metrics.abandoned.jsonl").open("a") as f:
                f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in dropped))
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept))
        os.replace(tmp, self.metrics_path)
        return max(lost, step)

    # ---------------------------------------------------------------- samples
    def save_grid(self, step: int, images: np.ndarray) -> Path:
        """The step's fixed-noise grid as samples/step_XXXXXXXX.png."""
        path = self.samples_dir / f"step_{step:08d}.png"
        write_grid_png(path, images)
        return path

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
            data = json.loads(self.quality_index_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        existing = {step for step, _ in self.checkpoints()}
        return {int(k): v for k, v in data.items() if isinstance(v, dict) and k.isdigit() and int(k) in existing}

    def record_checkpoint_quality(self, step: int, quality: dict[str, Any]) -> None:
        """Remember the quality of the checkpoint at `step` (atomically; the index is small)."""
        index = {str(k): v for k, v in self.checkpoint_quality().items()}
        index[str(step)] = _finite(quality)
        tmp = self.quality_index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        os.replace(tmp, self.quality_index_path)

    def best_checkpoint(self) -> Path | None:
        """The checkpoint whose samples had the lowest Frechet distance, or None if none was measured."""
        scored = [(q["fd"], step) for step, q in self.checkpoint_quality().items() if isinstance(q.get("fd"), (int, float))]
        return self.checkpoint_path(min(scored)[1]) if scored else None


def new_run_name(cfg: TrainConfig) -> str:
    """A sortable, readable default: 20261122-213000-mnist-dcgan-small. A named dataset whose files are
    not on this machine, with no --data-root, is named `synthetic`: offline, engine/data.py falls back
    to the font digits, and the name must say so (a first run that does download the files is the
    one case this guess gets wrong; `gan-tui ls` still lists its real dataset)."""
    label = "synthetic" if _will_fall_back(cfg) else Path(cfg.dataset).name or "data"
    dataset = re.sub(r"[^A-Za-z0-9_-]+", "_", label)
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{dataset}-{cfg.preset}"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    # Through a temporary name: a viewer listing samples/ must never open a half-written PNG.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        save_image(tensor, tmp, nrow=grid_columns(len(images)), padding=GRID_PADDING * scale)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_grid_png(path: Path, count: int) -> np.ndarray:
    """The inverse of write_grid_png at scale 1: uint8 (count, 28, 28)."""
    from PIL import Image

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L"))
    cols, cell = grid_columns(count), 28 + GRID_PADDING
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


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


__all__ = ["RunDir", "RunError", "new_run_name", "read_grid_png", "resolve_run", "write_grid_png"]
