"""DiffAugment (Zhao et al. 2020): the same random translation and cutout applied to real and fake
images before D, differentiably, so D cannot overfit a small dataset and G still gets gradients.

All randomness comes from the trainer's own generator (exact resume depends on it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SHIFT = 1 / 8  # largest translation, as a share of the side (3 px at 28)
# arange(n) per (n, device), made once: three calls a step would otherwise launch 15 kernels for them,
# a tenth of a small preset's step inside a CUDA graph.
_RANGES: dict[tuple[int, torch.device], torch.Tensor] = {}


def diff_augment(x: torch.Tensor, generator: torch.Generator, cutout: float = 0.5) -> torch.Tensor:
    """Random translation (background fill) then cutout of (B, 1, H, W) images in [-1, 1].

    `cutout`: side of the cut-out square as a share of the image side (0: translation only).
    """
    moved = _translate(x, generator)
    return _cutout(moved, generator, cutout) if cutout > 0 else moved


def _translate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    s = int(h * _SHIFT + 0.5)
    dev = x.device
    shift_y = torch.randint(-s, s + 1, (b, 1, 1), device=dev, generator=generator)
    shift_x = torch.randint(-s, s + 1, (b, 1, 1), device=dev, generator=generator)
    rows = (_arange(h, dev).view(1, h, 1) + shift_y + s).expand(b, h, w)
    cols = (_arange(w, dev).view(1, 1, w) + shift_x + s).expand(b, h, w)
    padded = F.pad(x, (s, s, s, s), value=-1.0)  # -1 is the digits' background
    batch = _arange(b, dev).view(b, 1, 1).expand(b, h, w)
    return padded[batch, 0, rows, cols].unsqueeze(1)


def _cutout(x: torch.Tensor, generator: torch.Generator, share: float) -> torch.Tensor:
    b, _, h, w = x.shape
    size = max(1, int(h * share + 0.5))
    dev = x.device
    top = torch.randint(0, h + 1 - size % 2, (b, 1, 1), device=dev, generator=generator) - size // 2
    left = torch.randint(0, w + 1 - size % 2, (b, 1, 1), device=dev, generator=generator) - size // 2
    rows = _arange(h, dev).view(1, h, 1)
    cols = _arange(w, dev).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return torch.where(inside.unsqueeze(1), -1.0, x)  # a Python number: no tensor of -1s to fill


def _arange(n: int, device: torch.device) -> torch.Tensor:
    """arange(n) on `device`, read-only, kept once made outside a CUDA graph capture (inside one it is
    made in the graph's memory, which only replays write: an eager step could not use it)."""
    key = (n, device)
    cached = _RANGES.get(key)
    if cached is not None:
        return cached
    values = torch.arange(n, device=device)
    if device.type != "cuda" or not torch.cuda.is_current_stream_capturing():
        _RANGES[key] = values
    return values
