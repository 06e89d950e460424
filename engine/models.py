"""Generator and discriminator presets. Every size comes from the config; nothing reads globals.

The MLP presets reproduce the classic MNIST GAN notebooks (so users can compare like with like);
the conv presets follow DCGAN (Radford et al. 2016) scaled to 28x28. The conditional presets
(cond-mlp, cond-dcgan) give G a class embedding concatenated to z and give D a projection head
(Miyato & Koyama 2018): logit + <embed(y), features>. Use `generate` and `discriminate` to call
either kind with or without labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from engine.config import ConfigError, TrainConfig

IMAGE_PIXELS = 28 * 28


@dataclass(frozen=True)
class Preset:
    """One architecture: the widths it takes when the config leaves them empty, and how it builds the pair."""

    g_widths: tuple[int, ...]
    d_widths: tuple[int, ...]
    build: Callable[[TrainConfig, tuple[int, ...], tuple[int, ...]], tuple[nn.Module, nn.Module]]
    conditional: bool = False
    """Takes class labels (needs the data's classes: TrainConfig.resolve_preset)."""


def build_models(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """The (generator, discriminator) pair for a config, freshly initialised. A preset name that is
    not in the table is a ConfigError naming the ones that are (never a silent fall-back)."""
    if cfg.preset == "auto":
        raise ConfigError("preset", cfg.preset, "auto is resolved from the data first (TrainConfig.resolve_preset)")
    preset = PRESET_TABLE.get(cfg.preset)
    if preset is None:
        raise ConfigError("preset", cfg.preset, f"use one of {', '.join(PRESET_TABLE)}")
    if preset.conditional and cfg.num_classes < 2:
        raise ConfigError("num_classes", cfg.num_classes, f"{cfg.preset} needs the data's classes (resolve_preset)")
    return preset.build(cfg, cfg.g_hidden or preset.g_widths, cfg.d_hidden or preset.d_widths)


def is_conditional(module: nn.Module) -> bool:
    """Whether a generator or discriminator takes class labels."""
    return getattr(module, "num_classes", 0) > 0


def generate(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """G(z), or G(z, y) for a conditional generator (labels required then, ignored otherwise)."""
    if is_conditional(generator):
        if labels is None:
            raise ValueError("a conditional generator needs class labels")
        return generator(z, labels)
    return generator(z)


def discriminate(discriminator: nn.Module, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """D(x), or D(x, y) for a projection discriminator."""
    return discriminator(x, labels) if is_conditional(discriminator) else discriminator(x)


def balanced_labels(count: int, num_classes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ... : every class equally often (the quality measurements' labels)."""
    return torch.arange(count, device=device) % num_classes


def grid_labels(count: int, num_classes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Labels of the fixed grid: row r of a K x K grid is class r (else classes cycle)."""
    if count == num_classes * num_classes:
        return torch.arange(count, device=device) // num_classes
    return balanced_labels(count, num_classes, device)


class MLPGenerator(nn.Module):
    """z -> hidden layers (LeakyReLU, optional BatchNorm) -> 784 tanh."""

    def __init__(self, latent_dim: int, widths: tuple[int, ...], batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in = latent_dim
        for width in widths:
            layers.append(nn.Linear(width_in, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width_in = width
        layers += [nn.Linear(width_in, IMAGE_PIXELS), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, 1, 28, 28)


class MLPDiscriminator(nn.Module):
    """784 -> hidden layers (LeakyReLU, optional dropout) -> one logit."""

    def __init__(self, widths: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in = IMAGE_PIXELS
        for width in widths:
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2, inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width_in = width
        layers.append(nn.Linear(width_in, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


class ConvGenerator(nn.Module):
    """z -> 7x7 feature map -> two stride-2 transposed convs -> 28x28 tanh (DCGAN)."""

    def __init__(self, latent_dim: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        c0, c1 = widths
        self.c0 = c0
        self.project = nn.Sequential(nn.Linear(latent_dim, c0 * 49, bias=False), nn.BatchNorm1d(c0 * 49), nn.ReLU(True))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c0, c1, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(True),
            nn.ConvTranspose2d(c1, 1, 4, 2, 1),
            nn.Tanh(),
        )
        _dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z).view(-1, self.c0, 7, 7))


class ConvDiscriminator(nn.Module):
    """28x28 -> two stride-2 convs (LeakyReLU) -> one logit (DCGAN)."""

    def __init__(self, widths: tuple[int, ...], batch_norm: bool) -> None:
        super().__init__()
        c0, c1 = widths
        self.net = nn.Sequential(
            nn.Conv2d(1, c0, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(c0, c1, 4, 2, 1, bias=not batch_norm),
            nn.BatchNorm2d(c1) if batch_norm else nn.Identity(),
            nn.LeakyReLU(0.2, True),
            nn.Flatten(),
            nn.Linear(c1 * 49, 1),
        )
        _dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class ClassConditionalGenerator(nn.Module):
    """A generator body on [z, embed(y)]: the class is a learned embedding (`embed_dim` wide) beside the noise.

    `body(in_features)` builds the body; it is called after the embedding exists, so both draw their
    initial weights in the same order for a given seed whichever body it is."""

    def __init__(self, latent_dim: int, num_classes: int, body: Callable[[int], nn.Module], embed_dim: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.body = body(latent_dim + embed_dim)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z, self.embed(labels)], 1))


class ProjectionMLPDiscriminator(nn.Module):
    """784 -> hidden layers (LeakyReLU) = h; logit = w.h + <embed(y), h>.

    With `mbstd_group` (ProGAN's minibatch standard deviation) the last hidden layer also takes the
    spread of the previous features over each group of that many consecutive images, so a generator
    that draws a class in one style is told apart by its batches. Groups are consecutive: a batch of
    real images followed by as many fakes keeps them apart when the group size divides the count.
    """

    def __init__(self, widths: tuple[int, ...], num_classes: int, mbstd_group: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.mbstd_group = mbstd_group
        layers: list[nn.Module] = []
        width_in = IMAGE_PIXELS
        for width in widths[:-1] if mbstd_group else widths:
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2, inplace=True)]
            width_in = width
        self.features = nn.Sequential(*layers)
        # Only with the option on: off, the state_dict keys stay those of runs made before it existed.
        if mbstd_group:
            self.last = nn.Sequential(nn.Linear(width_in + 1, widths[-1]), nn.LeakyReLU(0.2, inplace=True))
            width_in = widths[-1]
        self.head = nn.Linear(width_in, 1)
        self.embed = nn.Embedding(num_classes, width_in)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)  # start as an unconditional D; the class term grows

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(x.flatten(1))
        if self.mbstd_group:
            h = self.last(torch.cat([h, minibatch_std(h, self.mbstd_group)], 1))
        return self.head(h).squeeze(1) + (self.embed(labels) * h).sum(1)


def minibatch_std(h: torch.Tensor, group: int) -> torch.Tensor:
    """(N, F) features -> (N, 1): the mean over features of their standard deviation within each group
    of `group` consecutive rows (the largest group size up to `group` that divides N)."""
    n = h.size(0)
    g = next(size for size in range(min(group, n), 0, -1) if n % size == 0)
    spread = h.float().view(n // g, g, -1).var(1, unbiased=False).add(1e-8).sqrt().mean(1)
    return spread.repeat_interleave(g).unsqueeze(1).to(h.dtype)


class ProjectionConvDiscriminator(nn.Module):
    """DCGAN's discriminator (no BatchNorm) with a projection head on its flattened features."""

    def __init__(self, widths: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        c0, c1 = widths
        self.features = nn.Sequential(
            nn.Conv2d(1, c0, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c0, c1, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Flatten(),
        )
        self.head = nn.Linear(c1 * 49, 1)
        self.embed = nn.Embedding(num_classes, c1 * 49)
        _dcgan_init(self)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h).squeeze(1) + (self.embed(labels) * h).sum(1)


def _dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) conv weights and N(1, 0.02) norm scales, as in the DCGAN paper."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _require_two(cfg: TrainConfig, g_widths: tuple[int, ...], d_widths: tuple[int, ...]) -> None:
    if len(g_widths) != 2:
        raise ConfigError("g_hidden", cfg.g_hidden, f"{cfg.preset} takes two channel counts, like 128,64")
    if len(d_widths) != 2:
        raise ConfigError("d_hidden", cfg.d_hidden, f"{cfg.preset} takes two channel counts, like 64,128")


# ------------------------------------------------------------------ presets
def _mlp_pair(batch_norm: bool, dropout: float) -> Callable[[TrainConfig, tuple[int, ...], tuple[int, ...]],
                                                          tuple[nn.Module, nn.Module]]:
    def build(cfg: TrainConfig, g_widths: tuple[int, ...], d_widths: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
        return MLPGenerator(cfg.latent_dim, g_widths, batch_norm=batch_norm), MLPDiscriminator(d_widths, dropout=dropout)

    return build


def _dcgan_pair(cfg: TrainConfig, g_widths: tuple[int, ...], d_widths: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    _require_two(cfg, g_widths, d_widths)
    # A batch-normalised critic breaks the per-sample gradient penalty of WGAN-GP.
    return ConvGenerator(cfg.latent_dim, g_widths), ConvDiscriminator(d_widths, batch_norm=cfg.loss != "wgan-gp")


def _cond_mlp_pair(cfg: TrainConfig, g_widths: tuple[int, ...], d_widths: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    return (ClassConditionalGenerator(cfg.latent_dim, cfg.num_classes,
                                      lambda n: MLPGenerator(n, g_widths, batch_norm=True), cfg.g_class_embed),
            ProjectionMLPDiscriminator(d_widths, cfg.num_classes, cfg.d_mbstd))


def _cond_dcgan_pair(cfg: TrainConfig, g_widths: tuple[int, ...], d_widths: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    _require_two(cfg, g_widths, d_widths)
    return (ClassConditionalGenerator(cfg.latent_dim, cfg.num_classes, lambda n: ConvGenerator(n, g_widths),
                                      cfg.g_class_embed),
            ProjectionConvDiscriminator(d_widths, cfg.num_classes))


#: Every preset a config may name (but "auto", which resolve_preset turns into one of these).
PRESET_TABLE: dict[str, Preset] = {
    "cond-mlp": Preset((256, 512, 1024), (512, 256), _cond_mlp_pair, conditional=True),
    "cond-dcgan": Preset((64, 32), (32, 64), _cond_dcgan_pair, conditional=True),
    "dcgan-small": Preset((64, 32), (32, 64), _dcgan_pair),
    "mlp-small": Preset((256,), (256,), _mlp_pair(batch_norm=False, dropout=0.0)),
    "mlp": Preset((256, 512, 1024), (1024, 512, 256), _mlp_pair(batch_norm=True, dropout=0.0)),
    "mlp-dropout": Preset((256, 512, 1024), (1024, 512, 256), _mlp_pair(batch_norm=True, dropout=0.3)),
    "dcgan": Preset((128, 64), (64, 128), _dcgan_pair),
}
#: preset -> (generator widths, discriminator widths) used when the config leaves them empty.
DEFAULT_WIDTHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    name: (p.g_widths, p.d_widths) for name, p in PRESET_TABLE.items()
}
