"""Exports from a run folder: the sample grid as a scaled PNG, a GIF of the grids over time, the
metrics log as CSV, and N single sample PNGs drawn from a checkpoint.

Each reads only the run folder, so the dashboard (in a worker thread) and `gan-tui export RUN ...`
(without any dashboard) call the same functions. Every function returns the path(s) it wrote and
raises ExportError with a plain reason; files are written whole or not at all. The grid, GIF and CSV
exports need only numpy and Pillow (no torch: they answer in well under a second); only the
checkpoint samples run the generator.

Where an export may write (`--out`, or the default under RUN/exports/) is checked before anything is
made: only a new regular file, or, with `force` (always for the default names under exports/), a
file that an export of the same kind wrote. An export knows its own files by a mark inside them:
PNGs carry the text chunk `Software: gan-tui export`, GIFs the same comment, CSVs start with the fixed
header row of CSV_COLUMNS. The mark travels with the file (no sidecar to lose or forge apart from it)
and costs one header read; a file without it (the user's own picture, a run's config.json, a hard link
to one) is never replaced, `force` or not. Never into the run's own files (anything in the run folder
outside exports/), never over a folder, a device, a pipe, a socket or a symbolic link. A refusal is an
ExportRefused (`gan-tui export` exits 2 with its one line).
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from engine.config import LIVE_HYPERPARAMS
from engine.journal import atomic_write
from engine.runs import GRID_PADDING, RunDir, RunError, grid_columns, read_grid_png

MAX_GIF_FRAMES = 200  # longer runs are subsampled evenly (the last grid is always in)
MIN_FRAME_MS, MAX_FRAME_MS = 20, 60_000  # GIF delays are in 1/100 s; viewers show under 20 ms as 100 ms
_LABEL_BAND = 14  # pixels above each GIF frame for its "step N" label
MARK = "gan-tui export"  # inside every PNG (text chunk Software) and GIF (comment) an export writes

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


class ExportRefused(ExportError):
    """The export's target may not be written (it exists, it is the run's own, a device...): a user mistake."""


def export_grid(run: RunDir, out: Path | None = None, scale: int = 4, step: int | None = None,
                images: np.ndarray | None = None, force: bool = False) -> Path:
    """The sample grid of `step` (default: the newest) as a PNG, each pixel `scale` x `scale`.
    `force`: replace `out` if a PNG export wrote it (see the module docstring)."""
    _check_scale(scale)
    if images is None:
        step, path = _grid(run, step)
        images = _read_grid(path, _num_samples(run))
    image = grid_image(images, scale)
    target = check_target(run, out or run.exports_dir / f"grid_step_{step or 0:08d}_x{scale}.png", "png",
                          replace=force or out is None)
    _atomic(target, lambda f: _save_png(image, f))
    return target


def export_gif(run: RunDir, out: Path | None = None, scale: int = 2, frame_ms: int = 200,
               force: bool = False) -> tuple[Path, int]:
    """Every saved grid, oldest first, as an animated GIF that loops, each frame labelled with its
    step; returns (path, frames). `force`: replace `out` if a GIF export wrote it."""
    from PIL import Image

    _check_scale(scale)
    if not MIN_FRAME_MS <= frame_ms <= MAX_FRAME_MS:
        raise ExportRefused(f"frame-ms must be from {MIN_FRAME_MS} to {MAX_FRAME_MS:,}, got {frame_ms}")
    grids = run.sample_grids()
    if not grids:
        raise ExportError(f"run {run.path} has no sample grids yet")
    if out is not None:
        check_target(run, out, "gif", replace=force)  # before the frames are read: a refusal costs nothing
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
    target = check_target(run, out or run.exports_dir / f"samples_{grids[0][0]:08d}-{grids[-1][0]:08d}.gif", "gif",
                          replace=force or out is None)
    _atomic(target, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                               duration=frame_ms, loop=0, comment=MARK.encode()))
    return target, len(frames)


def export_csv(run: RunDir, out: Path | None = None, force: bool = False) -> tuple[Path, int]:
    """metrics.jsonl as one CSV table, one row per record, columns in CSV_COLUMNS order; returns
    (path, rows). Damaged lines are skipped. `force`: replace `out` if a CSV export wrote it."""
    target = check_target(run, out or run.exports_dir / "metrics.csv", "csv", replace=force or out is None)
    records = [r for r in run.read_log() if isinstance(r, dict)]
    if not records:
        raise ExportError(f"run {run.path} has no metrics log yet")
    rows = [dict(_flatten(r)) for r in records]
    extra = sorted({key for row in rows for key in row} - set(CSV_COLUMNS))

    def write(binary: IO[bytes]) -> None:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=[*CSV_COLUMNS, *extra])
        writer.writeheader()
        writer.writerows(rows)
        text.flush()
        text.detach()  # the binary file stays open for the writer's fsync

    _atomic(target, write)
    return target, len(rows)


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
                              seed: int = 0, scale: int = 1, digit: int | None = None, force: bool = False) -> list[Path]:
    """`count` single-digit PNGs from a checkpoint's sampling generator (latest, best, or a step), in
    `out_dir`: a new folder, or a folder whose sample_NNNN.png files are new or (with `force`, and
    always in the default folder under exports/) written by this export.

    `digit`: every image of that class (conditional runs; an unconditional run is an ExportError).
    """
    from PIL import Image

    _check_scale(scale)
    if out_dir is not None:
        _check_folder(run, out_dir)
    images, step = checkpoint_images(run, count, checkpoint, seed, digit)
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    suffix = "" if digit is None else f"_digit{digit}"
    folder = out_dir or run.exports_dir / f"checkpoint_{step:08d}_samples{suffix}"
    _check_folder(run, folder)
    paths = [check_target(run, folder / f"sample_{i:04d}.png", "png", replace=force or out_dir is None, folder_checked=True)
             for i in range(len(images))]  # every file checked before the first is written
    try:
        folder.mkdir(parents=True, exist_ok=True)  # _check_folder: only under exports/ may parents be made
    except OSError as exc:
        raise ExportError(f"{folder} could not be made: {exc.strerror or exc}") from exc
    for path, image in zip(paths, images):
        _atomic(path, lambda f, image=image: _save_png(Image.fromarray(image), f))
    return paths


def export_digit_grid(run: RunDir, digit: int, out: Path | None = None, count: int = 64, checkpoint: str = "latest",
                      seed: int = 0, scale: int = 4, force: bool = False) -> Path:
    """A grid of `count` samples of class `digit`, drawn from a checkpoint of a conditional run.
    `force`: replace `out` if a PNG export wrote it."""
    _check_scale(scale)
    if out is not None:
        check_target(run, out, "png", replace=force)  # before the generator runs
    images, step = checkpoint_images(run, count, checkpoint, seed, digit)
    target = check_target(run, out or run.exports_dir / f"grid_step_{step:08d}_digit{digit}_x{scale}.png", "png",
                          replace=force or out is None)
    _atomic(target, lambda f: _save_png(grid_image(images, scale), f))
    return target


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
        raise ExportRefused(f"count must be from 1 to 10000, got {count}")
    if seed < 0:
        raise ExportRefused(f"seed must be 0 or more, got {seed}")
    try:
        path = run.find_checkpoint(checkpoint)
    except RunError as exc:  # a step or file the user named that is not there is their mistake; no checkpoint yet is not
        raise (ExportError if checkpoint in ("latest", "best") else ExportRefused)(str(exc)) from exc
    try:
        payload = load_checkpoint(path)
        cfg = TrainConfig.from_dict(payload["config"])
    except (RunError, CheckpointError, ValueError) as exc:
        raise ExportError(str(exc)) from exc
    if digit is not None and not cfg.conditional:
        raise ExportRefused(f"run {run.path} is unconditional (preset {cfg.preset}): it cannot be asked for a class")
    if digit is not None and not 0 <= digit < cfg.num_classes:
        raise ExportRefused(f"digit must be from 0 to {cfg.num_classes - 1} for run {run.path}, got {digit}")
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


def check_target(run: RunDir, out: Path, kind: str, replace: bool, folder_checked: bool = False) -> Path:
    """`out` if an export of `kind` (png, gif, csv) may write it, else ExportRefused: a new regular file outside
    the run's own files in a folder that exists (or `folder_checked`), or, with `replace`, one with its mark."""
    out = Path(out).expanduser()
    _refuse_run_files(run, out)
    try:
        info = os.lstat(out)
    except FileNotFoundError:
        if not folder_checked:
            _refuse_new_folders(run, out)
        return out
    except OSError as exc:  # a name too long, a file where a folder should be
        raise ExportRefused(f"{out} cannot be written: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise ExportRefused(f"{out} is a symbolic link; an export writes only its own files (pick another --out)")
    if not stat.S_ISREG(info.st_mode):
        raise ExportRefused(f"{out} is {_file_kind(info.st_mode)}, not a file; an export never writes over it")
    if not replace:
        raise ExportRefused(f"{out} already exists; pick another --out, or pass --force to replace a {kind} export")
    if not _marked(out, kind):
        raise ExportRefused(f"{out} already exists and is not a {kind} that gan-tui export wrote; it is kept "
                            "(pick another --out)")
    return out


# ------------------------------------------------------------------ helpers
def _refuse_run_files(run: RunDir, out: Path) -> None:
    """Nothing of the run itself (config, log, checkpoints, samples, state...) is ever an export's target."""
    real = Path(os.path.realpath(out.parent)) / out.name
    run_real, exports_real = Path(os.path.realpath(run.path)), Path(os.path.realpath(run.exports_dir))
    if real.is_relative_to(run_real) and not (real.is_relative_to(exports_real) and real != exports_real):
        raise ExportRefused(f"{out} is inside the run folder {run.path}; exports go to its exports/ or outside the run")


def _check_folder(run: RunDir, folder: Path) -> None:
    """A folder for sample PNGs: new, or an existing folder (never a file, device or link to one)."""
    folder = Path(folder).expanduser()
    _refuse_run_files(run, folder / "sample_0000.png")
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        _refuse_new_folders(run, folder)
        return
    except OSError as exc:
        raise ExportRefused(f"{folder} cannot be used: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ExportRefused(f"{folder} already exists and is {_file_kind(info.st_mode)}; samples go to a folder "
                            "(pick another --out)")


def _refuse_new_folders(run: RunDir, out: Path) -> None:
    """`out` is new: its folder must exist unless it is under exports/ (a typo in --out makes no folders)."""
    parent = Path(os.path.realpath(out.parent))
    if not (parent.is_relative_to(Path(os.path.realpath(run.exports_dir))) or parent.is_dir()):
        raise ExportRefused(f"{out.parent} is not a folder (an export makes none outside exports/: make it first)")


def _check_scale(scale: int) -> None:
    if not 1 <= scale <= 32:
        raise ExportRefused(f"scale must be from 1 to 32, got {scale}")


def _marked(path: Path, kind: str) -> bool:
    """Whether `path` carries this export's mark for `kind` (read from its header only)."""
    try:
        if kind == "csv":
            with open(path, "rb") as f:
                return f.read(256).startswith(",".join(CSV_COLUMNS[:8]).encode())
        from PIL import Image

        with Image.open(path) as im:
            found = im.info.get("Software" if kind == "png" else "comment")
            return im.format == kind.upper() and found in (MARK, MARK.encode())
    except (OSError, ValueError, SyntaxError):  # not an image at all, or a damaged one: not ours
        return False


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "a special file"


def _save_png(image: Any, f: IO[bytes]) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", MARK)
    image.save(f, format="PNG", pnginfo=info)


def _grid(run: RunDir, step: int | None) -> tuple[int, Path]:
    grids = run.sample_grids()
    if not grids:
        raise ExportError(f"run {run.path} has no sample grids yet")
    if step is None:
        return grids[-1]
    for found in grids:
        if found[0] == step:
            return found
    steps = [found[0] for found in grids]
    near = [s for s in steps if s < step][-1:] + [s for s in steps if s > step][:1]
    raise ExportRefused(f"run {run.path} has no grid at step {step:,}; the nearest saved grid"
                        f"{'s are at steps' if len(near) > 1 else ' is at step'} {' and '.join(f'{s:,}' for s in near)} "
                        f"({len(steps):,} grids from step {steps[0]:,} to {steps[-1]:,})")


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


__all__ = ["ExportError", "ExportRefused", "MARK", "check_target", "checkpoint_images", "export_checkpoint_samples", "export_csv", "export_digit_grid",
           "export_gif", "export_grid", "grid_image"]
