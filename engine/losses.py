"""GAN objectives. Each takes discriminator outputs (raw logits or critic scores) and returns a scalar.

All stay on the device: nothing here reads a value back to the host.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from engine.config import LOSSES, ConfigError


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0,
           real_target: torch.Tensor | None = None) -> torch.Tensor:
    """Discriminator loss on real and fake outputs (without WGAN-GP's penalty, see gradient_penalty).

    `real_target`: bce's target for real images as a 0-d device tensor (1 - label_smoothing, filled in
    place when the smoothing changes: a captured step reads it), instead of `label_smoothing`.
    """
    if kind == "bce":
        # One-sided smoothing (Salimans et al. 2016): only real targets move, to 1 - s.
        target = real_target.expand_as(real) if real_target is not None else torch.full_like(real, 1.0 - label_smoothing)
        return F.binary_cross_entropy_with_logits(real, target) + F.binary_cross_entropy_with_logits(
            fake, torch.zeros_like(fake)
        )
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "lsgan":
        return 0.5 * ((real - 1.0).pow(2).mean() + fake.pow(2).mean())
    if kind == "wgan-gp":
        return fake.mean() - real.mean()
    raise _unknown(kind)


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss on the discriminator's outputs for generated images."""
    if kind == "bce":
        # Non-saturating: maximise log D(G(z)) instead of minimising log(1 - D(G(z))).
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if kind == "lsgan":
        return 0.5 * (fake - 1.0).pow(2).mean()
    if kind in ("hinge", "wgan-gp"):
        return -fake.mean()
    raise _unknown(kind)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, generator=generator)
    mixed = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


def r1_penalty(discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean ||grad D(x)||^2 on real images; the caller weighs it by gamma / 2."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).float().sum(), real, create_graph=True)
    return grad.flatten(1).square().sum(1).mean()


def mode_seeking_penalty(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """MSGAN's term (Mao et al. 2019): small when the two halves of a batch of fakes (the same classes
    asked for) differ in pixels as much as their noise differs; G minimises it beside its loss."""
    half = fake.size(0) // 2
    if half == 0:
        return fake.new_zeros(())
    images = (fake[:half] - fake[half : 2 * half]).abs().flatten(1).mean(1)
    noise = (z[:half] - z[half : 2 * half]).abs().mean(1)
    return 1.0 / ((images / noise).mean().float() + 1e-5)


def d_probability(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """How D's raw output is shown as "D(x)": a probability for bce, the raw score otherwise."""
    return torch.sigmoid if kind == "bce" else (lambda x: x)


def _unknown(kind: str) -> ConfigError:
    return ConfigError("loss", kind, f"use one of {', '.join(LOSSES)}")
