import math

import pytest
import torch

from engine.config import LOSSES, PRESETS
from engine.trainer import Trainer
from tests.conftest import tiny_config


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_and_loss_trains_with_finite_losses(preset, loss, synthetic_data):
    cfg = tiny_config(preset=preset, loss=loss, g_hidden=(), d_hidden=(), batch_size=8, label_smoothing=0.1)
    trainer = Trainer(cfg, synthetic_data, torch.device("cpu"))
    before = [p.detach().clone() for p in trainer.G.parameters()]
    for _ in range(3):
        trainer.train_step()
    stats = trainer.read_stats()
    assert stats.finite and stats.steps == 3
    assert all(math.isfinite(v) for v in (stats.d_loss, stats.g_loss, stats.grad_norm_d, stats.grad_norm_g))
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters()))
    images = trainer.sample()
    # A conditional preset's grid is one row per class (K x K); the others keep num_samples.
    assert images.shape == (trainer.cfg.num_samples, 28, 28) and images.dtype.name == "uint8"


def test_d_steps_draw_more_real_images(synthetic_data):
    trainer = Trainer(tiny_config(d_steps=3), synthetic_data, torch.device("cpu"))
    trainer.train_step()
    assert trainer.images_seen == 3 * 16


def test_presets_reproduce_the_classic_sizes():
    from engine.models import build_models

    g, d = build_models(tiny_config(preset="mlp-small", g_hidden=(), d_hidden=(), latent_dim=100))
    assert [m.out_features for m in g.modules() if isinstance(m, torch.nn.Linear)] == [256, 784]
    assert [m.out_features for m in d.modules() if isinstance(m, torch.nn.Linear)] == [256, 1]
    g, d = build_models(tiny_config(preset="mlp", g_hidden=(), d_hidden=()))
    assert [m.out_features for m in g.modules() if isinstance(m, torch.nn.Linear)] == [256, 512, 1024, 784]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in g.modules())
    assert [m.out_features for m in d.modules() if isinstance(m, torch.nn.Linear)] == [1024, 512, 256, 1]
    _, d = build_models(tiny_config(preset="mlp-dropout", g_hidden=(), d_hidden=()))
    assert any(isinstance(m, torch.nn.Dropout) for m in d.modules())


def test_read_stats_flags_non_finite_values(synthetic_data):
    trainer = Trainer(tiny_config(), synthetic_data, torch.device("cpu"))
    with torch.no_grad():
        next(trainer.D.parameters()).fill_(float("nan"))
    trainer.train_step()
    assert trainer.read_stats().finite is False
