"""One GAN training step, with statistics kept on the device and read once per log interval."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.config import ConfigError, TrainConfig
from engine.data import ImageData
from engine.augment import diff_augment
from engine.devices import amp_dtype_for, capability, cpu_has_bf16
from engine.losses import d_loss, d_probability, g_loss, gradient_penalty, mode_seeking_penalty, r1_penalty
from engine.models import build_models, discriminate, generate, grid_labels

_EMA_EVERY = 4  # steps between updates of the generator's weight average
_R1_EVERY = 16  # lazy R1 (StyleGAN2): the penalty every this many steps, weighted up to match
_NORM_CALIBRATION = (4, 256)  # batches x images that re-estimate the averaged G's BatchNorm statistics
# Order of the on-device running sums in Trainer._sums.
_STAT_NAMES = ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")
# With the fp16 GradScaler: steps whose D and G norms were finite (and so count in the means), skipped steps.
_AMP_STAT_NAMES = ("norm_d_steps", "norm_g_steps", "skipped")
_CPU_RNG_BYTES = 5056  # size of a CPU torch.Generator state (a CUDA one is 16 bytes)


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
    skipped: int = 0
    """Steps in which the fp16 GradScaler skipped an update (overflowed gradients; left out of the norms)."""


def resolve_amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for this run, or None for full precision (see devices.amp_dtype_for)."""
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp", cfg.amp, f"fp16 needs CUDA and this run trains on {device.type}; use off or bf16")
    return amp_dtype_for(cfg.amp, device.type, capability(device), cpu_has_bf16())


class Trainer:
    """Owns the nets, their optimizers, the data on the device and the training RNG."""

    def __init__(self, cfg: TrainConfig, data: ImageData, device: torch.device) -> None:
        cfg = cfg.resolve_preset(data.num_classes)  # "auto" and the class count follow the data
        self.cfg = cfg
        self.device = device
        self.data = data.to(device)
        self.num_classes = cfg.num_classes  # 0: unconditional
        torch.manual_seed(cfg.seed)  # weights and dropout masks
        generator, discriminator = build_models(cfg)
        self.G = generator.to(device)
        self.D = discriminator.to(device)
        # Samples come from an exponential moving average of G's weights (Yazici et al. 2019): in
        # short runs it turns the generator's step-to-step jitter into clean, stable digits.
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if cfg.g_ema > 0 else None
        if self.G_ema is not None:
            self._ema_params, self._live_params = list(self.G_ema.parameters()), list(self.G.parameters())
        # The averaged weights need BatchNorm statistics of their own: the live G's running statistics
        # belong to other weights (with them the averaged G drew visibly worse digits, see
        # bench/quality.py's notes). They are re-estimated on fixed noise whenever the average moved.
        self._ema_norms = [m for m in (self.G_ema.modules() if self.G_ema is not None else ())
                           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._norms_step = -1
        self.opt_g = _adam(self.G, cfg.lr_g, cfg)
        self.opt_d = _adam(self.D, cfg.lr_d, cfg)
        # Batches, noise and penalty mixes draw from their own generator so that sampling fresh
        # noise for the screen never shifts the training sequence (exact resume depends on it).
        self.rng = torch.Generator(device=device).manual_seed(cfg.seed)
        noise_rng = torch.Generator().manual_seed(cfg.seed + 1)
        self.fixed_noise = torch.randn(cfg.num_samples, cfg.latent_dim, generator=noise_rng).to(device)
        # A conditional grid has one row per class with the same noise in every row.
        if self.num_classes and cfg.num_samples == self.num_classes**2:
            self.fixed_noise = self.fixed_noise[: self.num_classes].repeat(self.num_classes, 1)
        self.fixed_labels = grid_labels(cfg.num_samples, self.num_classes, device) if self.num_classes else None
        self.amp_dtype = resolve_amp(cfg, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.images_seen = 0
        self._d_prob = d_probability(cfg.loss)
        # Real and fake must not share batch statistics, so a D with BatchNorm sees them apart, and so
        # does one with minibatch-std groups unless its group size divides the batch (groups are
        # consecutive, so real and fake then never share one).
        group = getattr(self.D, "mbstd_group", 0)
        self._d_joint_pass = (not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.D.modules())
                              and (not group or cfg.batch_size % group == 0))
        self._sums = torch.zeros(len(_STAT_NAMES), device=device)
        self._amp_sums = torch.zeros(len(_AMP_STAT_NAMES), device=device)
        self._count = 0
        # True while a step is under way, and after an exception inside one: the nets, optimizers and
        # RNG then hold part of a step (D updated, G not), which no checkpoint should pass off as whole.
        self.mid_step = False

    # ------------------------------------------------------------------ API
    @property
    def epoch(self) -> float:
        """Real images drawn so far, in passes over the dataset."""
        return self.images_seen / len(self.data.images)

    def train_step(self) -> None:
        """`d_steps` discriminator updates, then one generator update. No host sync."""
        self.mid_step = True
        cfg = self.cfg
        batch = cfg.batch_size
        for i in range(cfg.d_steps):
            real_y = fake_y = None
            if self.num_classes:
                real, real_y = self.data.labelled_batch(batch, self.rng)
                fake_y = torch.randint(self.num_classes, (batch,), device=self.device, generator=self.rng)
                if cfg.mode_seeking:  # the two halves ask for the same classes: pairs for the mode-seeking term
                    half = batch // 2
                    fake_y = torch.cat([fake_y[:half].repeat(2), fake_y[2 * half :]])
            else:
                real = self.data.batch(batch, self.rng)
            z = torch.randn(batch, cfg.latent_dim, device=self.device, generator=self.rng)
            with self._autocast():
                # The last D update's fakes are reused by the G update (as in pytorch/examples dcgan),
                # so only their graph is kept: one generator forward per update saved.
                with torch.set_grad_enabled(i == cfg.d_steps - 1):
                    fake = generate(self.G, z, fake_y)
                real_in, fake_in = real, fake.detach()
                if cfg.diff_augment:
                    real_in = diff_augment(real, self.rng, cfg.diff_augment_cutout)
                    fake_in = diff_augment(fake_in, self.rng, cfg.diff_augment_cutout)
                real_out, fake_out = self._discriminate(real_in, fake_in, real_y, fake_y)
                loss_d = d_loss(cfg.loss, real_out, fake_out, cfg.label_smoothing)
            if cfg.r1_gamma and self.step % _R1_EVERY == 0 and i == 0:
                r1 = r1_penalty(lambda x: discriminate(self.D, x, real_y), real_in)
                loss_d = loss_d + (cfg.r1_gamma / 2 * _R1_EVERY) * r1
            if cfg.loss == "wgan-gp":
                loss_d = loss_d + cfg.gp_weight * gradient_penalty(lambda x: discriminate(self.D, x, real_y), real,
                                                               fake.detach().float(), self.rng)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(loss_d).backward()
            self.scaler.unscale_(self.opt_d)
            grad_d = _grad_norm(self.D)
            _skip_if_nonfinite(self.opt_d, grad_d, self.scaler)
            self.scaler.step(self.opt_d)
            self.scaler.update()
            if self.scaler.is_enabled():
                d_ok = torch.isfinite(grad_d) if i == 0 else d_ok & torch.isfinite(grad_d)
        self.images_seen += batch * cfg.d_steps

        self.D.requires_grad_(False)  # G's update needs D's input gradients only
        with self._autocast():
            fake_in = diff_augment(fake, self.rng, cfg.diff_augment_cutout) if cfg.diff_augment else fake
            loss_g = g_loss(cfg.loss, discriminate(self.D, fake_in, fake_y).float())
            if cfg.mode_seeking:
                loss_g = loss_g + cfg.mode_seeking * mode_seeking_penalty(fake, z)
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
            if self.scaler.is_enabled():
                # A step the fp16 scaler skipped has inf gradients by design (that is how it finds its
                # scale): it is counted and kept out of the norms, so it never reads as a divergence.
                grad_d, grad_g = _count_skips(self._amp_sums, grad_d, grad_g, d_ok)
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
        self.mid_step = False

    @property
    def conditional(self) -> bool:
        """The generator takes a class."""
        return self.num_classes > 0

    @property
    def sampler(self) -> nn.Module:
        """The net that draws samples: the weight average of G (its BatchNorm statistics brought up
        to date first) when there is one, else G. Call `generate(sampler, z, labels)` in eval mode."""
        if self.G_ema is None:
            return self.G
        self._refresh_ema_norms()
        return self.G_ema

    @property
    def unread_steps(self) -> int:
        """Steps whose statistics read_stats() has not returned yet."""
        return self._count

    def read_stats(self) -> StepStats | None:
        """Means since the last call (one host sync), or None if no step ran since."""
        if self._count == 0:
            return None
        skipped = 0
        if self.scaler.is_enabled():
            sums = torch.cat([self._sums, self._amp_sums]).tolist()  # the only sync of the hot loop
            values, (norm_d_n, norm_g_n, skipped_f) = [v / self._count for v in sums[:4]], sums[6:]
            # Norms average over the steps that were not skipped; none at all (the scale collapsed) is NaN.
            values += [sums[4] / norm_d_n if norm_d_n else math.nan, sums[5] / norm_g_n if norm_g_n else math.nan]
            skipped = int(round(skipped_f))
        else:
            values = (self._sums / self._count).tolist()  # the only sync of the hot loop
        stats = StepStats(*values, steps=self._count, finite=all(np.isfinite(values)), skipped=skipped)
        self.discard_stats()
        return stats

    def discard_stats(self) -> None:
        """Forget the running sums (after a rollback they describe weights that are gone)."""
        self._sums.zero_()
        self._amp_sums.zero_()
        self._count = 0

    @torch.no_grad()
    def sample(self, noise: torch.Tensor | None = None, digit: int | None = None) -> np.ndarray:
        """Images from the generator in eval mode, uint8 (N, 28, 28) on the host.

        Without arguments: the fixed grid (one row per class for a conditional run). With `noise`:
        a conditional run draws class `digit` for every image, or the fixed grid's classes (cycling
        through the classes when the counts differ). `digit` needs a conditional run (ValueError).
        """
        z = self.fixed_noise if noise is None else noise.to(self.device)
        labels = self.labels_for(len(z), digit) if noise is not None or digit is not None else self.fixed_labels
        if self.G_ema is not None:
            return to_uint8(generate(self.sampler, z, labels).float())
        self.G.eval()
        try:
            images = generate(self.G, z, labels).float()
        finally:
            self.G.train()
        return to_uint8(images)

    def labels_for(self, count: int, digit: int | None = None) -> torch.Tensor | None:
        """Class labels for `count` samples: all `digit`, else the grid's layout; None when unconditional."""
        if not self.num_classes:
            if digit is not None:
                raise ValueError("this run's generator is unconditional: it cannot be asked for a class")
            return None
        if digit is None:
            return grid_labels(count, self.num_classes, self.device)
        if not 0 <= digit < self.num_classes:
            raise ValueError(f"class must be from 0 to {self.num_classes - 1}, got {digit}")
        return torch.full((count,), digit, dtype=torch.long, device=self.device)

    def fresh_noise(self, seed: int | None = None, count: int | None = None) -> torch.Tensor:
        """New noise (the fixed batch's size by default), from its own RNG (training's sequence is untouched)."""
        gen = torch.Generator().manual_seed(seed if seed is not None else time.time_ns() % 2**63)
        return torch.randn(count or self.cfg.num_samples, self.cfg.latent_dim, generator=gen)

    def set_hyperparams(self, cfg: TrainConfig) -> None:
        """Adopt a config whose live hyperparameters changed; optimizers follow at once."""
        self.cfg = cfg
        for opt, lr in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr
                group["betas"] = (cfg.beta1, cfg.beta2)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; tensors and plain data only (weights_only loadable)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "batches": self.rng.get_state(),
                               "batches_device": self.device.type}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.G_ema is not None:
            self._refresh_ema_norms()  # exports load generator_ema as saved: its statistics must fit
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

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Restore from state_dict(); the config must already match (checked by the caller).

        All or nothing: if any part fails to load, everything is put back as it was and the error
        is raised. Returns notes for the user (a checkpoint from another device type, whose batch
        RNG cannot be restored here, continues with batches reseeded deterministically).
        """
        batch_rng, notes = self._batch_rng_for(state)
        before = copy.deepcopy(self.state_dict())
        try:
            self._restore(state, batch_rng)
        except Exception:
            self._restore(before, before["rng"]["batches"])
            raise
        return notes

    def _batch_rng_for(self, state: dict[str, Any]) -> tuple[torch.Tensor | int, list[str]]:
        """The saved batch-RNG state if this device's generator can take it, else a seed and a note."""
        saved = state["rng"]["batches"]
        saved_type = state["rng"].get("batches_device") or ("cpu" if saved.numel() == _CPU_RNG_BYTES else "cuda")
        if saved_type == self.device.type and saved.numel() == self.rng.get_state().numel():
            return saved, []
        step = int(state["step"])
        # Derived from the run's seed and the step only: resuming the same checkpoint twice draws the same batches.
        seed = (self.cfg.seed * 1_000_003 + step) % 2**63
        note = (f"the checkpoint at step {step} was written on {saved_type} and this run trains on {self.device.type}: "
                f"its batch random-number state does not carry over, so batches were reseeded (seed {seed}) and "
                "differ from the original run's from here on")
        return seed, [note]

    def _restore(self, state: dict[str, Any], batch_rng: torch.Tensor | int) -> None:
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
        self._norms_step = -1
        torch.set_rng_state(state["rng"]["torch"])
        if isinstance(batch_rng, int):
            self.rng.manual_seed(batch_rng)
        else:
            self.rng.set_state(batch_rng)
        if self.device.type == "cuda":
            if "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
            else:  # saved on the CPU: dropout masks on this GPU start from the run's seed
                torch.cuda.manual_seed(self.cfg.seed)
        self.discard_stats()
        self.mid_step = False

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

    @torch.no_grad()
    def _refresh_ema_norms(self) -> None:
        """Re-estimate the averaged G's BatchNorm statistics from its own activations on fixed noise.

        Train-mode passes with momentum None make each running statistic the plain mean over the
        calibration batches; the noise has its own seed, so neither training's RNG nor the result
        depends on when this runs. A no-op when nothing changed since the last call.
        """
        if self.G_ema is None or not self._ema_norms or self._norms_step == self.step:
            return
        batches, size = _NORM_CALIBRATION
        gen = torch.Generator().manual_seed(self.cfg.seed + 3)
        momenta = [m.momentum for m in self._ema_norms]
        for m in self._ema_norms:
            m.reset_running_stats()
            m.momentum = None
        self.G_ema.train()
        try:
            for _ in range(batches):
                z = torch.randn(size, self.cfg.latent_dim, generator=gen).to(self.device)
                generate(self.G_ema, z, self.labels_for(size))
        finally:
            self.G_ema.eval()
            for m, momentum in zip(self._ema_norms, momenta):
                m.momentum = momentum
        self._norms_step = self.step

    def _discriminate(self, real: torch.Tensor, fake: torch.Tensor, real_y: torch.Tensor | None = None,
                      fake_y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """D on both batches. One concatenated pass when real and fake cannot mix in it: half the launches."""
        if not self._d_joint_pass:
            return discriminate(self.D, real, real_y).float(), discriminate(self.D, fake, fake_y).float()
        labels = None if real_y is None or fake_y is None else torch.cat([real_y, fake_y])
        out = discriminate(self.D, torch.cat([real, fake]), labels).float()
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


def _count_skips(
    amp_sums: torch.Tensor, grad_d: torch.Tensor, grad_g: torch.Tensor, d_ok: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add a step's skip bookkeeping to `amp_sums` (on the device); the norms with skipped ones zeroed."""
    g_ok = torch.isfinite(grad_g)
    amp_sums += torch.stack([d_ok.float(), g_ok.float(), (~(d_ok & g_ok)).float()])
    return torch.where(d_ok, grad_d, 0.0), torch.where(g_ok, grad_g, 0.0)


def _grad_norm(module: nn.Module) -> torch.Tensor:
    """Total L2 norm of a module's gradients, as a device tensor (no sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(module.parameters()).device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
