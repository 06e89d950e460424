"""One GAN training step, with statistics kept on the device and read once per log interval.

On CUDA the step can be recorded in a CUDA graph and replayed several steps at a time
(`train_steps`, engine/graph.py); everywhere else, and for the steps a graph cannot take, it runs
eagerly, the same code launched op by op (`train_step`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.config import ConfigError, TrainConfig
from engine.data import ImageData
from engine.augment import diff_augment
from engine.devices import amp_dtype_for, capability, cpu_has_bf16
from engine.graph import CaptureError, CapturePlan, StepGraph, graph_key, resolve_graph_mode, steps_per_replay
from engine.losses import d_loss, d_probability, g_loss, gradient_penalty, mode_seeking_penalty, r1_penalty
from engine.models import build_models, discriminate, generate, grid_labels
from engine.sampling import EmaNorms, class_labels, fresh_noise, to_uint8
from engine.step import (EMA_EVERY, R1_EVERY, LiveHyperparams, StepStats, count_skips, ema_weight, grad_norm,
                         make_adam, set_adam_betas, skip_if_nonfinite)
from engine.trainer_state import load_trainer_state, trainer_state_dict

# Order of the on-device running sums in Trainer._sums.
_STAT_NAMES = ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g")
# With the fp16 GradScaler: steps whose D and G norms were finite (and so count in the means), skipped steps.
_AMP_STAT_NAMES = ("norm_d_steps", "norm_g_steps", "skipped")


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
        self.amp_dtype = resolve_amp(cfg, device)
        captured, note = resolve_graph_mode(cfg, device, self.amp_dtype)  # ConfigError for `on` without CUDA
        torch.manual_seed(cfg.seed)  # weights and dropout masks
        generator, discriminator = build_models(cfg)
        self.G = generator.to(device)
        self.D = discriminator.to(device)
        # Samples come from an exponential moving average of G's weights (Yazici et al. 2019): in
        # short runs it turns the generator's step-to-step jitter into clean, stable digits.
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if cfg.g_ema > 0 else None
        if self.G_ema is not None:
            self._ema_params, self._live_params = list(self.G_ema.parameters()), list(self.G.parameters())
        self._ema_norms = EmaNorms(self.G_ema, cfg.latent_dim, cfg.seed)  # the average's own BatchNorm statistics
        # Learning rates, betas and label smoothing live in device tensors that a change fills in place.
        self.hyper = LiveHyperparams(cfg, device)
        self.opt_g = make_adam(self.G, self.hyper.lr_g, self.hyper, cfg, capturable=captured)
        self.opt_d = make_adam(self.D, self.hyper.lr_d, self.hyper, cfg, capturable=captured)
        # Batches, noise and penalty mixes draw from their own generator so that sampling fresh
        # noise for the screen never shifts the training sequence (exact resume depends on it).
        self.rng = torch.Generator(device=device).manual_seed(cfg.seed)
        noise_rng = torch.Generator().manual_seed(cfg.seed + 1)
        self.fixed_noise = torch.randn(cfg.num_samples, cfg.latent_dim, generator=noise_rng).to(device)
        # A conditional grid has one row per class with the same noise in every row.
        if self.num_classes and cfg.num_samples == self.num_classes**2:
            self.fixed_noise = self.fixed_noise[: self.num_classes].repeat(self.num_classes, 1)
        self.fixed_labels = grid_labels(cfg.num_samples, self.num_classes, device) if self.num_classes else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.images_seen = 0
        # The step count on the device (float64, exact): what a recorded EMA update reads its decay from.
        self.step_counter = torch.zeros((), dtype=torch.float64, device=device)
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
        self.capture = CapturePlan(captured, steps_per_replay(cfg), graph_key(cfg))
        self._graph = StepGraph(device) if captured else None
        self._notes: list[str] = [note] if note else []

    # ------------------------------------------------------------------ API
    @property
    def epoch(self) -> float:
        """Real images drawn so far, in passes over the dataset."""
        return self.images_seen / len(self.data.images)

    def train_step(self) -> None:
        """One step, eagerly: `d_steps` discriminator updates, then one generator update. No host sync."""
        if self._graph is not None and self.capture.warming:
            self._graph.run_eager(self._step)  # warm-up: on the stream the capture will use
        else:
            self._step()
        self.capture.stepped_eagerly()

    def train_steps(self, limit: int) -> int:
        """Run at most `limit` steps; returns how many ran (0 only for a limit below 1).

        With a CUDA graph: a replay of `capture.steps` steps when the step is a multiple of that
        and `limit` allows it (the first such call records the graph, and records it again after a
        change of the step's shape); otherwise one eager step. Without: one eager step. Callers
        pass the steps left to the end of the run or to a requested single step, and read
        `take_notes()` afterwards (the capture says what happened in one line).
        """
        if limit < 1:
            return 0
        action = self.capture.action(self.step, limit)
        if action == "capture":
            self._capture()
            action = self.capture.action(self.step, limit)
        if action != "replay":
            self.train_step()  # looked up on the instance: a test may stand in for it
            return 1
        return self._replay()

    def take_notes(self) -> list[str]:
        """One-line notes for the user since the last call: why steps are eager, what was captured."""
        notes, self._notes = self._notes, []
        return notes

    @property
    def graph_summary(self) -> str:
        """How steps run now, in a few words: 'CUDA graph, 8 steps a replay' or 'eager'."""
        if self.capture.ready:
            return f"CUDA graph, {self.capture.steps} steps a replay"
        return "eager (capturing soon)" if self.capture.enabled else "eager"

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
        self.refresh_ema_norms()
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
        return class_labels(count, self.num_classes, self.device, digit)

    def fresh_noise(self, seed: int | None = None, count: int | None = None) -> torch.Tensor:
        """New noise (the fixed batch's size by default), from its own RNG (training's sequence is untouched)."""
        return fresh_noise(self.cfg.latent_dim, count or self.cfg.num_samples, seed)

    def set_hyperparams(self, cfg: TrainConfig) -> None:
        """Adopt a config whose live hyperparameters changed; the next step uses them.

        The values are written into the tensors the step (and a recorded graph) reads; a change of
        the step's shape (d_steps, or betas where Adam takes numbers) has the graph recorded again.
        """
        self.cfg = cfg
        self.hyper.fill(cfg)
        for opt in (self.opt_g, self.opt_d):
            set_adam_betas(opt, cfg.beta1, cfg.beta2)
        if self.capture.retarget(graph_key(cfg)) and self._graph is not None:
            self._graph.release()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; tensors and plain data only (weights_only loadable)."""
        return trainer_state_dict(self)

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Restore from state_dict() into the existing tensors (a graph's stay valid); the config must
        already match (checked by the caller). All or nothing: on failure everything is put back and
        the error raised. Returns notes for the user (engine/trainer_state.load_trainer_state)."""
        return load_trainer_state(self, state)

    def refresh_ema_norms(self) -> None:
        """Re-estimate the averaged G's BatchNorm statistics for its current weights (engine/sampling.EmaNorms)."""
        self._ema_norms.refresh(self.step, self.labels_for, self.device)

    def forget_ema_norms(self) -> None:
        """The averaged G's BatchNorm statistics are stale (its weights were replaced)."""
        self._ema_norms.forget()

    # -------------------------------------------------------------- helpers
    def _step(self) -> None:
        """The step itself, capture-safe: Python decides only what is the same at every replay (its
        position in a graph included, see engine/graph.py); what changes lives in device tensors."""
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
                loss_d = d_loss(cfg.loss, real_out, fake_out, real_target=self.hyper.real_target)
            if cfg.r1_gamma and self.step % R1_EVERY == 0 and i == 0:
                r1 = r1_penalty(lambda x: discriminate(self.D, x, real_y), real_in)
                loss_d = loss_d + (cfg.r1_gamma / 2 * R1_EVERY) * r1
            if cfg.loss == "wgan-gp":
                loss_d = loss_d + cfg.gp_weight * gradient_penalty(lambda x: discriminate(self.D, x, real_y), real,
                                                               fake.detach().float(), self.rng)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(loss_d).backward()
            self.scaler.unscale_(self.opt_d)
            grad_d = grad_norm(self.D)
            skip_if_nonfinite(self.opt_d, grad_d, self.scaler)
            self.scaler.step(self.opt_d)
            self.scaler.update()
            if self.scaler.is_enabled():
                d_ok = torch.isfinite(grad_d) if i == 0 else d_ok & torch.isfinite(grad_d)
        self.images_seen += batch * cfg.d_steps

        self.D.requires_grad_(False)  # G's update needs D's input gradients only
        try:
            with self._autocast():
                fake_in = diff_augment(fake, self.rng, cfg.diff_augment_cutout) if cfg.diff_augment else fake
                loss_g = g_loss(cfg.loss, discriminate(self.D, fake_in, fake_y).float())
                if cfg.mode_seeking:
                    loss_g = loss_g + cfg.mode_seeking * mode_seeking_penalty(fake, z)
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler.scale(loss_g).backward()
        finally:  # also when a capture fails in between: D must train again afterwards
            self.D.requires_grad_(True)
        self.scaler.unscale_(self.opt_g)
        grad_g = grad_norm(self.G)
        skip_if_nonfinite(self.opt_g, grad_g, self.scaler)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self._update_ema()

        with torch.no_grad():
            if self.scaler.is_enabled():
                # A step the fp16 scaler skipped has inf gradients by design (that is how it finds its
                # scale): it is counted and kept out of the norms, so it never reads as a divergence.
                grad_d, grad_g = count_skips(self._amp_sums, grad_d, grad_g, d_ok)
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
            self.step_counter += 1
        self._count += 1
        self.step += 1
        self.mid_step = False

    def _capture(self) -> None:
        """Record `capture.steps` steps into the graph. Nothing runs while recording, so the host's
        counters are put back afterwards; a failure under `auto` means eager steps from now on."""
        assert self._graph is not None
        counters = (self.step, self.images_seen, self._count)

        def steps() -> None:
            for _ in range(self.capture.steps):
                self._step()

        try:
            self._graph.capture(steps, [self.rng])
        except CaptureError as exc:
            if self.cfg.cuda_graph == "on":
                raise CaptureError(f"recording the training step in a CUDA graph failed ({exc.reason}); "
                                   "--cuda-graph auto trains with eager steps instead") from exc
            self.capture.disable()
            self._graph = None
            self._notes.append(f"training with eager steps, not a CUDA graph: recording the step failed ({exc.reason})")
            return
        finally:
            self.step, self.images_seen, self._count = counters
            self.mid_step = False
        first = self.capture.captures == 0
        self.capture.captured()
        what = f"{self.capture.steps} training steps per CUDA graph replay"
        self._notes.append(f"captured {what}" if first else f"captured again for the new step shape: {what}")

    def _replay(self) -> int:
        assert self._graph is not None
        steps = self.capture.steps
        self.mid_step = True
        self._graph.replay()
        self.images_seen += steps * self.cfg.batch_size * self.cfg.d_steps
        self._count += steps
        self.step += steps
        self.mid_step = False
        return steps

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Every EMA_EVERY steps with the decay compounded to match: on small nets a per-step update
        # cost a third of the step's time, and the average is no different to the eye. The decay comes
        # from the device step counter (see engine/step.ema_weight), so a recorded update stays right.
        if self.G_ema is None or self.step % EMA_EVERY:
            return
        weight = ema_weight(self.step_counter, self.cfg.g_ema)
        torch._foreach_lerp_(self._ema_params, self._live_params, [weight] * len(self._ema_params))

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
        # No cast cache while recording: cached casts would be made outside the graph's memory.
        capturing = self.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=not capturing)

