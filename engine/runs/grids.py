"""Sample grids as PNG files: torchvision's make_grid layout, written atomically, read back exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engine.journal import atomic_write
from engine.runs.errors import RunError

GRID_PADDING = 2


def write_grid_png(path: Path, images: np.ndarray, scale: int = 1) -> None:
    """uint8 (N, 28, 28) -> one grid PNG (torchvision's make_grid layout), optionally scaled up."""
    import torch  # here, not at the top: listing and reading runs must not wait for torch
    from PIL import Image
    from torchvision.utils import make_grid

    tensor = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    if scale > 1:
        tensor = tensor.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    # make_grid repeats one channel into three; one of them is the greyscale picture (mode L, as every
    # other PNG gan-tui writes: a single-sample export, a digit grid).
    grid = make_grid(tensor, nrow=grid_columns(len(images)), padding=GRID_PADDING * scale)[0].numpy()
    # All-or-nothing: a viewer listing samples/ must never open a half-written PNG.
    atomic_write(path, lambda f: Image.fromarray(grid).save(f, format="png"))


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
