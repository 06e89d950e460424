"""Checkpoints: written atomically, read with weights_only=True, checked before use."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from engine.config import TrainConfig

FORMAT_VERSION = 1
# Fields that fix the shape of the nets or the fixed noise: a checkpoint only fits a config that agrees.
ARCHITECTURE_FIELDS = ("preset", "num_classes", "latent_dim", "g_hidden", "d_hidden", "loss", "num_samples")
_REQUIRED = ("format", "config", "trainer", "hparam_history")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt, or does not fit the config."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a crash or a full disk leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT_VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without running any code from it; CheckpointError says what is wrong."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {_first_line(exc)})") from exc
    if not isinstance(payload, dict) or any(key not in payload for key in _REQUIRED):
        raise CheckpointError(f"{path} is not a gan-tui checkpoint (keys missing)")
    if payload["format"] != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {payload['format']}; this gan-tui reads format {FORMAT_VERSION}")
    return payload


def check_compatible(saved: TrainConfig, wanted: TrainConfig, where: Path) -> None:
    """Refuse to continue a run with a different architecture, naming every field that differs."""
    diffs = [
        f"{name} {getattr(saved, name)!r} (asked for {getattr(wanted, name)!r})"
        for name in ARCHITECTURE_FIELDS
        if getattr(saved, name) != getattr(wanted, name)
    ]
    if diffs:
        raise CheckpointError(f"run {where} was trained with {', '.join(diffs)}; it can only continue with the same architecture")


def _fsync_dir(folder: Path) -> None:
    # The rename itself must reach the disk, or a power cut could bring back the old name.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
