"""Exports from a run folder: the sample grid as a scaled PNG, a GIF of the grids over time, the
metrics log as CSV, and N single sample PNGs drawn from a checkpoint.

Each reads only the run folder, so the dashboard (in a worker thread) and `gan-tui export RUN ...`
(without any dashboard) call the same functions. Every function returns the path(s) it wrote and
raises ExportError with a plain reason; files are written whole or not at all. The grid, GIF and CSV
exports need only numpy and Pillow (no torch: they answer in well under a second); only the
checkpoint samples run the generator.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from engine.config import LIVE_HYPERPARAMS
from engine.journal import atomic_write
from engine.runs import GRID_PADDING, RunDir, RunError, grid_columns, read_grid_png

MAX_GIF_FRAMES = 200  # longer runs are subsampled evenly (the last grid is always in)
_LABEL_BAND = 14  # pixels above each GIF frame for its "step N" label

#: The CSV's columns, in this order, whatever the log holds. Every record type fills the columns it
#: has (metrics: step..elapsed_s; quality: fd..class_9; judge: accuracy..source; alarms and warnings:
#: kind, message; rollbacks: from_step, path; resumes: lost_steps; hyperparameter changes: old_X and
#: new_X). A field not named here (from a newer gan-tui) is appended after these, sorted by name.
CSV_COLUMNS: tuple[str, ...] = (
    "type", "step", "epoch", "d_loss", "g_loss", "d_real", "d_fake", "grad_norm_g", "grad_norm_d",
    "lr_g", "lr_d", "images_per_s", "elapsed_s", "amp_skipped",
    "fd", "fd_floor", "n", "classes_covered", "kl_uniform", "confidence", "diversity", "label_agreement",
    *(f"class_{i}" for i in range(10)),
    "accuracy", "held_out", "source",
    "kind", "message", "from_step", "path", "lost_steps",
    *(f"old_{k}" for k in LIVE_HYPERPARAMS), *(f"new_{k}" for k in LIVE_HYPERPARAMS),
)
_CSV_SPLIT = {"old", "new"}  # hparams records: their changes are spelled out as old_/new_ columns


class ExportError(RuntimeError):
    """An export could not be made; the message says why."""


def export_grid(run: RunDir, out: Path | None = None, scale: int = 4, step: int | None = None,
                images: np.ndarray | None = None) -> Path:
    """The sample grid of `step` (default: the newest) as a PNG, each pixel `scale` x `scale`."""
    if not 1 <= scale <= 32:
        raise ExportError(f"scale must be from 1 to 32, got {scale}")
    if images is None:
        step, path = _grid(run, step)
        images = _read_grid(path, _num_samples(run))
    image = grid_image(images, scale)
    out = out or run.exports_dir / f"grid_step_{step or 0:08d}_x{scale}.png"
    _atomic(out, lambda f: image.save(f, format="PNG"))
    return out


def export_gif(run: RunDir, out: Path | None = None, scale: int = 2, frame_ms: int = 200) -> tuple[Path, int]:
    """Every saved grid, oldest first, as an animated GIF that loops, each frame labelled with its
    step; returns (path, frames)."""
    from PIL import Image

    grids = run.sample_grids()
    if not grids:
        raise ExportError(f"run {run.path} has no sample grids yet")
    if len(grids) > MAX_GIF_FRAMES:
        picks = np.linspace(0, len(grids) - 1, MAX_GIF_FRAMES).round().astype(int)
        grids = [grids[i] for i in sorted(set(picks))]
    frames = []
    for step, path in grids:
        try:
            with Image.open(path) as im:
                frame = im.convert("L")
                frame.load()
        except OSError:
            continue  # a damaged or vanished grid: the others still make the film
        frame = frame.resize((frame.width * scale, frame.height * scale), Image.Resampling.NEAREST)
        frames.append(_labelled(frame, f"step {step:,}"))
    if not frames:
        raise ExportError(f"none of the sample grids of run {run.path} could be read")
    out = out or run.exports_dir / f"samples_{grids[0][0]:08d}-{grids[-1][0]:08d}.gif"
    _atomic(out, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                            duration=frame_ms, loop=0))
    return out, len(frames)


def export_csv(run: RunDir, out: Path | None = None) -> tuple[Path, int]:
    """metrics.jsonl as one CSV table, one row per record, columns in CSV_COLUMNS order; returns
    (path, rows). Damaged lines are skipped."""
    records = [r for r in run.read_log() if isinstance(r, dict)]
    if not records:
        raise ExportError(f"run {run.path} has no metrics log yet")
    rows = [dict(_flatten(r)) for r in records]
    extra = sorted({key for row in rows for key in row} - set(CSV_COLUMNS))
    out = out or run.exports_dir / "metrics.csv"

    def write(binary: IO[bytes]) -> None:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=[*CSV_COLUMNS, *extra])
        writer.writeheader()
        writer.writerows(rows)
        text.flush()
        text.detach()  # the binary file stays open for the writer's fsync

    _atomic(out, write)
    return out, len(rows)


def grid_image(images: np.ndarray, scale: int = 1) -> Any:
    """uint8 (N, 28, 28) -> a greyscale PIL image laid out as the run's sample grids (torchvision's
    make_grid: near-square, GRID_PADDING black pixels around every cell), scaled by `scale`."""
    from PIL import Image

    count, height, width = images.shape
    cols = grid_columns(count)
    rows = -(-count // cols)
    pad = GRID_PADDING
    canvas = np.zeros((rows * (height + pad) + pad, cols * (width + pad) + pad), dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = pad + (i // cols) * (height + pad), pad + (i % cols) * (width + pad)
        canvas[top : top + height, left : left + width] = image
    if scale > 1:
        canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    return Image.fromarray(canvas, mode="L")


def export_checkpoint_samples(run: RunDir, out_dir: Path | None = None, count: int = 64, checkpoint: str = "latest",
                              seed: int = 0, scale: int = 1, digit: int | None = None) -> list[Path]:
    """`count` single-digit PNGs from a checkpoint's sampling generator (latest, best, or a step).

    `digit`: every image of that class (conditional runs; an unconditional run is an ExportError).
    """
    import torch
    from torchvision.utils import save_image

    images, step = checkpoint_images(run, count, checkpoint, seed, digit)
    tensor = torch.from_numpy(images).float().div(255.0).unsqueeze(1)
    if scale > 1:
        tensor = tensor.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    suffix = "" if digit is None else f"_digit{digit}"
    out_dir = out_dir or run.exports_dir / f"checkpoint_{step:08d}_samples{suffix}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out_dir} could not be made: {exc.strerror or exc}") from exc
    paths = []
    for i, image in enumerate(tensor):
        target = out_dir / f"sample_{i:04d}.png"
        _atomic(target, lambda f, image=image: save_image(image, f, format="png"))
        paths.append(target)
    return paths


def export_digit_grid(run: RunDir, digit: int, out: Path | None = None, count: int = 64, checkpoint: str = "latest",
                      seed: int = 0, scale: int = 4) -> Path:
    """A grid of `count` samples of class `digit`, drawn from a checkpoint of a conditional run."""
    if not 1 <= scale <= 32:
        raise ExportError(f"scale must be from 1 to 32, got {scale}")
    images, step = checkpoint_images(run, count, checkpoint, seed, digit)
    out = out or run.exports_dir / f"grid_step_{step:08d}_digit{digit}_x{scale}.png"
    _atomic(out, lambda f: grid_image(images, scale).save(f, format="PNG"))
    return out


def checkpoint_images(run: RunDir, count: int, checkpoint: str = "latest", seed: int = 0,
                      digit: int | None = None) -> tuple[np.ndarray, int]:
    """`count` samples, uint8 (count, 28, 28), from a checkpoint's sampling generator, and its step.

    A conditional run draws class `digit` for every image, or every class in turn without one.
    """
    import torch

    from engine.checkpoint import CheckpointError, load_checkpoint
    from engine.config import TrainConfig
    from engine.models import balanced_labels, build_models, generate

    if not 1 <= count <= 10_000:
        raise ExportError(f"count must be from 1 to 10000, got {count}")
    try:
        path = run.find_checkpoint(checkpoint)
        payload = load_checkpoint(path)
        cfg = TrainConfig.from_dict(payload["config"])
    except (RunError, CheckpointError, ValueError) as exc:
        raise ExportError(str(exc)) from exc
    if digit is not None and not cfg.conditional:
        raise ExportError(f"run {run.path} is unconditional (preset {cfg.preset}): it cannot be asked for a class")
    if digit is not None and not 0 <= digit < cfg.num_classes:
        raise ExportError(f"digit must be from 0 to {cfg.num_classes - 1} for run {run.path}, got {digit}")
    generator, _ = build_models(cfg)
    state = payload["trainer"]
    # The averaged generator's BatchNorm statistics were re-estimated before the checkpoint was written.
    generator.load_state_dict(state.get("generator_ema") or state["generator"])
    generator.eval()
    noise = torch.randn(count, cfg.latent_dim, generator=torch.Generator().manual_seed(seed))
    labels = None
    if cfg.conditional:
        labels = torch.full((count,), digit) if digit is not None else balanced_labels(count, cfg.num_classes)
    with torch.no_grad():
        parts = [generate(generator, z, None if labels is None else labels[i : i + 500])
                 for i, z in zip(range(0, count, 500), noise.split(500))]
    images = torch.cat(parts).add(1).mul(127.5).clamp(0, 255).round().to(torch.uint8).squeeze(1).numpy()
    return images, int(state["step"])


# ------------------------------------------------------------------ helpers
def _grid(run: RunDir, step: int | None) -> tuple[int, Path]:
    grids = run.sample_grids()
    if not grids:
        raise ExportError(f"run {run.path} has no sample grids yet")
    if step is None:
        return grids[-1]
    for found in grids:
        if found[0] == step:
            return found
    raise ExportError(f"run {run.path} has no grid at step {step} (it has {grids[0][0]}..{grids[-1][0]})")


def _read_grid(path: Path, count: int) -> np.ndarray:
    try:
        return read_grid_png(path, count)
    except (OSError, ValueError) as exc:
        raise ExportError(f"the sample grid {path} could not be read ({exc})") from None


def _labelled(frame: Any, text: str) -> Any:
    """The frame under a black band that says `text` in white."""
    from PIL import Image, ImageDraw

    out = Image.new("L", (frame.width, frame.height + _LABEL_BAND), 0)
    out.paste(frame, (0, _LABEL_BAND))
    ImageDraw.Draw(out).text((3, 1), text, fill=255)
    return out


def _num_samples(run: RunDir) -> int:
    try:
        return int(json.loads(run.config_path.read_text()).get("num_samples", 64))
    except (OSError, ValueError, AttributeError, TypeError):
        return 64


def _flatten(record: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in record.items():
        if key == "class_hist" and isinstance(value, list):
            yield from ((f"class_{i}", v) for i, v in enumerate(value))
        elif key in _CSV_SPLIT and isinstance(value, dict):
            yield from ((f"{key}_{k}", v) for k, v in value.items())
        elif isinstance(value, (dict, list)):
            yield key, json.dumps(value)
        else:
            yield key, value


def _atomic(out: Path, write: Any) -> None:
    """The run folder's one atomic writer (engine.journal), with a write failure said as an ExportError."""
    try:
        atomic_write(out, write)
    except OSError as exc:
        raise ExportError(f"{out} could not be written: {exc.strerror or exc}") from exc


__all__ = ["ExportError", "checkpoint_images", "export_checkpoint_samples", "export_csv", "export_digit_grid",
           "export_gif", "export_grid", "grid_image"]
