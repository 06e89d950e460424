"""One GAN training step, with statistics kept on the device and read once per log interval."""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.config import ConfigError, TrainConfig
from engine.data import ImageData
from engine.losses import d_loss, d_probability, g_loss, gradient_penalty
from engine.models import build_models

_EMA_EVERY = 4  # steps between updates of the generator's weight average
# Order of the on-device running sums in Trainer._sums.
_STAT_NAMES = ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")


@dataclass(frozen=True)
class StepStats:
    """Means over the steps since the last read, plus a flag for non-finite values."""

    d_loss: float
    g_loss: float
    d_real: float
    d_fake: float
    grad_norm_d: float
    grad_norm_g: float
    steps: int
    finite: bool


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "torch sees no CUDA GPU here; use cpu or auto")
    return torch.device(name)


def resolve_amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision. 'auto' is bf16 on CUDA GPUs that have it, off on CPU."""
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


class Trainer:
    """Owns the nets, their optimizers, the data on the device and the training RNG."""

    def __init__(self, cfg: TrainConfig, data: ImageData, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.data = data.to(device)
        torch.manual_seed(cfg.seed)  # weights and dropout masks
        generator, discriminator = build_models(cfg)
        self.G = generator.to(device)
        self.D = discriminator.to(device)
        # Samples come from an exponential moving average of G's weights (Yazici et al. 2019): in
        # short runs it turns the generator's step-to-step jitter into clean, stable digits.
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if cfg.g_ema > 0 else None
        if self.G_ema is not None:
            self._ema_params, self._live_params = list(self.G_ema.parameters()), list(self.G.parameters())
            self._ema_buffers = [b for b in self.G_ema.buffers() if b.is_floating_point()]
            self._live_buffers = [b for b in self.G.buffers() if b.is_floating_point()]
        self.opt_g = _adam(self.G, cfg.lr_g, cfg)
        self.opt_d = _adam(self.D, cfg.lr_d, cfg)
        # Batches, noise and penalty mixes draw from their own generator so that sampling fresh
        # noise for the screen never shifts the training sequence (exact resume depends on it).
        self.rng = torch.Generator(device=device).manual_seed(cfg.seed)
        noise_rng = torch.Generator().manual_seed(cfg.seed + 1)
        self.fixed_noise = torch.randn(cfg.num_samples, cfg.latent_dim, generator=noise_rng).to(device)
        self.amp_dtype = resolve_amp(cfg, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.images_seen = 0
        self._d_prob = d_probability(cfg.loss)
        # Real and fake must not share batch statistics, so a D with BatchNorm sees them apart.
        self._d_has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.D.modules())
        self._sums = torch.zeros(len(_STAT_NAMES), device=device)
        self._count = 0

    # ------------------------------------------------------------------ API
    @property
    def epoch(self) -> float:
        """Real images drawn so far, in passes over the dataset."""
        return self.images_seen / len(self.data.images)

    def train_step(self) -> None:
        """`d_steps` discriminator updates, then one generator update. No host sync."""
        cfg = self.cfg
        batch = cfg.batch_size
        for i in range(cfg.d_steps):
            real = self.data.batch(batch, self.rng)
            z = torch.randn(batch, cfg.latent_dim, device=self.device, generator=self.rng)
            with self._autocast():
                # The last D update's fakes are reused by the G update (as in pytorch/examples dcgan),
                # so only their graph is kept: one generator forward per update saved.
                with torch.set_grad_enabled(i == cfg.d_steps - 1):
                    fake = self.G(z)
                real_out, fake_out = self._discriminate(real, fake.detach())
                loss_d = d_loss(cfg.loss, real_out, fake_out, cfg.label_smoothing)
            if cfg.loss == "wgan-gp":
                loss_d = loss_d + cfg.gp_weight * gradient_penalty(self.D, real, fake.detach().float(), self.rng)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(loss_d).backward()
            self.scaler.unscale_(self.opt_d)
            grad_d = _grad_norm(self.D)
            _skip_if_nonfinite(self.opt_d, grad_d, self.scaler)
            self.scaler.step(self.opt_d)
            self.scaler.update()
        self.images_seen += batch * cfg.d_steps

        self.D.requires_grad_(False)  # G's update needs D's input gradients only
        with self._autocast():
            loss_g = g_loss(cfg.loss, self.D(fake).float())
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.D.requires_grad_(True)
        self.scaler.unscale_(self.opt_g)
        grad_g = _grad_norm(self.G)
        _skip_if_nonfinite(self.opt_g, grad_g, self.scaler)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self._update_ema()

        with torch.no_grad():
            self._sums += torch.stack(
                [
                    loss_d.detach(),
                    loss_g.detach(),
                    self._d_prob(real_out.detach()).mean(),
                    self._d_prob(fake_out.detach()).mean(),
                    grad_d,
                    grad_g,
                ]
            )
        self._count += 1
        self.step += 1

    @property
    def sampler(self) -> nn.Module:
        """The net that draws samples: the weight average of G when there is one, else G."""
        return self.G_ema if self.G_ema is not None else self.G

    @property
    def unread_steps(self) -> int:
        """Steps whose statistics read_stats() has not returned yet."""
        return self._count

    def read_stats(self) -> StepStats | None:
        """Means since the last call (one host sync), or None if no step ran since."""
        if self._count == 0:
            return None
        values = (self._sums / self._count).tolist()  # the only sync of the hot loop
        stats = StepStats(*values, steps=self._count, finite=all(np.isfinite(values)))
        self._sums.zero_()
        self._count = 0
        return stats

    def discard_stats(self) -> None:
        """Forget the running sums (after a rollback they describe weights that are gone)."""
        self._sums.zero_()
        self._count = 0

    @torch.no_grad()
    def sample(self, noise: torch.Tensor | None = None) -> np.ndarray:
        """Images from the generator in eval mode, uint8 (N, 28, 28) on the host."""
        z = self.fixed_noise if noise is None else noise.to(self.device)
        if self.G_ema is not None:
            return to_uint8(self.G_ema(z).float())
        self.G.eval()
        try:
            images = self.G(z).float()
        finally:
            self.G.train()
        return to_uint8(images)

    def fresh_noise(self, seed: int | None = None) -> torch.Tensor:
        """New noise of the fixed batch's size, from its own RNG (training's sequence is untouched)."""
        gen = torch.Generator().manual_seed(seed if seed is not None else time.time_ns() % 2**63)
        return torch.randn(self.cfg.num_samples, self.cfg.latent_dim, generator=gen)

    def set_hyperparams(self, cfg: TrainConfig) -> None:
        """Adopt a config whose live hyperparameters changed; optimizers follow at once."""
        self.cfg = cfg
        for opt, lr in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr
                group["betas"] = (cfg.beta1, cfg.beta2)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; tensors and plain data only (weights_only loadable)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "batches": self.rng.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "generator": self.G.state_dict(),
            "generator_ema": self.G_ema.state_dict() if self.G_ema is not None else {},
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "images_seen": self.images_seen,
            "fixed_noise": self.fixed_noise.cpu(),
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict(); the config must already match (checked by the caller)."""
        self.G.load_state_dict(state["generator"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state.get("generator_ema") or state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.set_hyperparams(self.cfg)  # the optimizers' saved groups hold the old values
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.fixed_noise = state["fixed_noise"].to(self.device)
        torch.set_rng_state(state["rng"]["torch"])
        self.rng.set_state(state["rng"]["batches"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.discard_stats()

    # -------------------------------------------------------------- helpers
    @torch.no_grad()
    def _update_ema(self) -> None:
        # Every _EMA_EVERY steps with the decay compounded to match: on small nets a per-step update
        # cost a third of the step's time, and the average is no different to the eye.
        if self.G_ema is None or self.step % _EMA_EVERY:
            return
        # Warm-up: early on, average over the steps so far rather than towards the random init.
        decay = min(self.cfg.g_ema ** _EMA_EVERY, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(self._ema_params, self._live_params, 1.0 - decay)
        if self._ema_buffers:
            torch._foreach_copy_(self._ema_buffers, self._live_buffers)  # BatchNorm statistics follow G

    def _discriminate(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D on both batches. One concatenated pass when D has no batch statistics: half the launches."""
        if self._d_has_batchnorm:
            return self.D(real).float(), self.D(fake).float()
        out = self.D(torch.cat([real, fake])).float()
        return out[: real.size(0)], out[real.size(0) :]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], (N, 1, 28, 28) -> uint8 (N, 28, 28) on the host."""
    return ((images.squeeze(1) + 1.0) * 127.5).clamp_(0, 255).round_().to(torch.uint8).cpu().numpy()


def _adam(module: nn.Module, lr: float, cfg: TrainConfig) -> torch.optim.Adam:
    # fused: one kernel for the whole update. On nets this small the optimizer is a large share of
    # a step, and fused measured about 20% faster per step than foreach on the 2-core CPU.
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def _skip_if_nonfinite(opt: torch.optim.Optimizer, grad_norm: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
    """Make the fused Adam step a no-op when the gradients are not finite, without a host sync.

    The fused kernel reads `found_inf` (the hook GradScaler uses), so NaN never reaches the weights
    or Adam's moments: the runner sees the non-finite statistics at the next log read, pauses, and
    the nets it pauses with are the last finite ones. With fp16 the scaler does this itself.
    """
    if not scaler.is_enabled():
        opt.found_inf = (~torch.isfinite(grad_norm)).float()  # type: ignore[attr-defined]


def _grad_norm(module: nn.Module) -> torch.Tensor:
    """Total L2 norm of a module's gradients, as a device tensor (no sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(module.parameters()).device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
