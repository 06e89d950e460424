"""A new run's default folder name, and the guess behind its dataset label (no torch import)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from engine.config import AUTO_CONDITIONAL, NAMED_DATASETS, TrainConfig

# Where engine/data.py looks for a named dataset's IDX files (kept here without its torch import, so
# naming a run stays instant): torchvision's folder name, and the system folders searched as well.
_TV_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
_SYSTEM_DATA = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}


def new_run_name(cfg: TrainConfig) -> str:
    """A sortable, readable default: 20261122-213000-mnist-cond-mlp. A named dataset whose files are
    not on this machine, with no --data-root, is named `synthetic`: offline, engine/data.py falls back
    to the font digits, and the name must say so (a first run that does download the files is the
    one case this guess gets wrong; `gan-tui ls` still lists its real dataset)."""
    label = "synthetic" if will_fall_back(cfg) else Path(cfg.dataset).name or "data"
    dataset = re.sub(r"[^A-Za-z0-9_-]+", "_", label)
    preset = cfg.preset
    if preset == "auto" and cfg.dataset in NAMED_DATASETS:
        preset = AUTO_CONDITIONAL  # every named dataset has labels; a path's are known only once loaded
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{dataset}-{preset}"


def will_fall_back(cfg: TrainConfig) -> bool:
    """True when a named dataset's files are nowhere engine/data.py looks (so it will train on the
    font digits unless a download works)."""
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
