"""Drawing samples: class labels for a grid, fresh noise, the averaged generator's own BatchNorm
statistics, and images as uint8 on the host. Nothing here touches training's RNG."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from engine.models import generate, grid_labels

_NORM_CALIBRATION = (4, 256)  # batches x images that re-estimate the averaged G's BatchNorm statistics


class EmaNorms:
    """The BatchNorm statistics of the averaged generator, re-estimated from its own activations.

    The live G's running statistics belong to other weights (with them the averaged G drew visibly
    worse digits, see bench/quality.py's notes), so they are re-estimated on fixed noise whenever
    the average moved: train-mode passes with momentum None make each running statistic the plain
    mean over the calibration batches. The noise has its own seed, so neither training's RNG nor
    the result depends on when this runs.
    """

    def __init__(self, g_ema: nn.Module | None, latent_dim: int, seed: int) -> None:
        self.g_ema = g_ema
        self.norms = [m for m in (g_ema.modules() if g_ema is not None else ())
                      if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.latent_dim = latent_dim
        self.seed = seed
        self.step = -1  # the step they were estimated at

    @torch.no_grad()
    def refresh(self, step: int, labels_for: Callable[[int], torch.Tensor | None], device: torch.device) -> None:
        """Bring the statistics up to date for the weights at `step`; a no-op when they are."""
        if self.g_ema is None or not self.norms or self.step == step:
            return
        batches, size = _NORM_CALIBRATION
        gen = torch.Generator().manual_seed(self.seed + 3)
        momenta = [m.momentum for m in self.norms]
        for m in self.norms:
            m.reset_running_stats()
            m.momentum = None
        self.g_ema.train()
        try:
            for _ in range(batches):
                z = torch.randn(size, self.latent_dim, generator=gen).to(device)
                generate(self.g_ema, z, labels_for(size))
        finally:
            self.g_ema.eval()
            for m, momentum in zip(self.norms, momenta):
                m.momentum = momentum
        self.step = step

    def forget(self) -> None:
        """The averaged weights were replaced: estimate again at the next refresh."""
        self.step = -1


def class_labels(count: int, num_classes: int, device: torch.device, digit: int | None = None) -> torch.Tensor | None:
    """Class labels for `count` samples: all `digit`, else the grid's layout; None when unconditional."""
    if not num_classes:
        if digit is not None:
            raise ValueError("this run's generator is unconditional: it cannot be asked for a class")
        return None
    if digit is None:
        return grid_labels(count, num_classes, device)
    if not 0 <= digit < num_classes:
        raise ValueError(f"class must be from 0 to {num_classes - 1}, got {digit}")
    return torch.full((count,), digit, dtype=torch.long, device=device)


def fresh_noise(latent_dim: int, count: int, seed: int | None = None) -> torch.Tensor:
    """New noise from its own RNG (seeded by the clock unless `seed`): training's sequence is untouched."""
    gen = torch.Generator().manual_seed(seed if seed is not None else time.time_ns() % 2**63)
    return torch.randn(count, latent_dim, generator=gen)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], (N, 1, 28, 28) -> uint8 (N, 28, 28) on the host."""
    return ((images.squeeze(1) + 1.0) * 127.5).clamp_(0, 255).round_().to(torch.uint8).cpu().numpy()
