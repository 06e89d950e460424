"""Checkpoints: written atomically, read with weights_only=True, checked before use."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from engine.config import ConfigError, TrainConfig, saved_config_dict
from engine.journal import atomic_write

FORMAT_VERSION = 1
# Fields that fix the shape of the nets or the fixed noise: a checkpoint only fits a config that agrees.
ARCHITECTURE_FIELDS = ("preset", "num_classes", "latent_dim", "g_hidden", "d_hidden", "g_class_embed", "d_mbstd", "loss",
                       "num_samples")
_REQUIRED = ("format", "config", "trainer", "hparam_history")
_TRAINER_REQUIRED = ("generator", "discriminator", "opt_g", "opt_d", "step", "images_seen", "fixed_noise", "rng")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt, or does not fit the config."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a crash or a full disk leaves the old file intact. Raises
    what the write raised (OSError, or torch.save's RuntimeError on a full disk)."""
    atomic_write(Path(path), lambda f: torch.save({"format": FORMAT_VERSION, **payload}, f))


def encode_checkpoint(payload: dict[str, Any]) -> bytes:
    """The bytes save_checkpoint would write, made in memory: the trainer serializes its live tensors
    at once (they change with the next step) and a writer thread puts the bytes on disk."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **payload}, buffer)
    return buffer.getvalue()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without running any code from it; CheckpointError says what is wrong."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own text here advises loading with weights_only=False, i.e. running the file's code:
        # never advice to pass on about a file that is damaged or not gan-tui's. Its detail is kept.
        detail = str(exc).split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in str(exc) else ""
        detail = _first_line(RuntimeError(detail.split(". Please", 1)[0])) if detail else "not a torch file"
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated, or not a checkpoint gan-tui wrote ({detail})") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {_first_line(exc)})") from exc
    if not isinstance(payload, dict) or any(key not in payload for key in _REQUIRED):
        raise CheckpointError(f"{path} is not a gan-tui checkpoint (keys missing)")
    if payload["format"] != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {payload['format']}; this gan-tui reads format {FORMAT_VERSION}")
    if isinstance(payload["config"], dict):
        # Every reader then sees the settings a checkpoint predates as the run trained with them.
        payload["config"] = saved_config_dict(payload["config"])
    return payload


def load_training_checkpoint(path: Path) -> tuple[dict[str, Any], TrainConfig]:
    """load_checkpoint, plus every check a resume or rollback needs before it touches anything: the
    config parses and validates, the trainer state has all its parts, the history is a list."""
    payload = load_checkpoint(path)
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"checkpoint {path} is malformed (its config is not a table)")
    try:
        cfg = TrainConfig.from_dict(payload["config"])
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid config ({exc})") from None
    trainer = payload["trainer"]
    missing = [k for k in _TRAINER_REQUIRED if not isinstance(trainer, dict) or k not in trainer]
    if missing:
        raise CheckpointError(f"checkpoint {path} is malformed (trainer state lacks {', '.join(missing)})")
    if not isinstance(trainer["step"], int) or trainer["step"] < 0 or not isinstance(trainer["images_seen"], int):
        raise CheckpointError(f"checkpoint {path} is malformed (step {trainer['step']!r})")
    if not isinstance(payload["hparam_history"], list):
        raise CheckpointError(f"checkpoint {path} is malformed (hparam_history is not a list)")
    return payload, cfg


def check_compatible(saved: TrainConfig, wanted: TrainConfig, where: Path) -> None:
    """Refuse to continue a run with a different architecture, naming every field that differs."""
    diffs = [
        f"{name} {getattr(saved, name)!r} (asked for {getattr(wanted, name)!r})"
        for name in ARCHITECTURE_FIELDS
        if getattr(saved, name) != getattr(wanted, name)
    ]
    if diffs:
        raise CheckpointError(f"run {where} was trained with {', '.join(diffs)}; it can only continue with the same architecture")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
