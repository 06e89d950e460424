"""Class-conditional presets: training, the per-class grid, picking a digit, label agreement."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engine import commands as cmd
from engine import events as ev
from engine.config import CONDITIONAL_PRESETS, TrainConfig
from engine.data import ImageData
from engine.protocol import decode_command, decode_event, encode_command, encode_event, parse_line
from engine.trainer import Trainer
from tests.conftest import tiny_config

_SHORT_RUN_STEPS = 1000  # enough for the projection D to teach G every class (most samples read as asked)


def _to_unit(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)


def _read_as(judge, images: np.ndarray) -> torch.Tensor:
    """The classes the judge reads in uint8 (N, 28, 28) images."""
    _, probs = judge.model.features_and_probs(_to_unit(images))
    return probs.argmax(1).cpu()


def _mostly(read: torch.Tensor, digit: int) -> bool:
    """After a short run: the asked-for class is the one read most often, and in at least half the images."""
    counts = torch.bincount(read, minlength=10)
    return int(counts.argmax()) == digit and counts[digit] >= len(read) / 2


@pytest.mark.parametrize("preset", CONDITIONAL_PRESETS)
def test_each_conditional_preset_trains_on_mnist_with_finite_losses(preset, mnist_data):
    cfg = TrainConfig(dataset="mnist", preset=preset, device="cpu", batch_size=16, quality_every=0)
    trainer = Trainer(cfg, mnist_data, torch.device("cpu"))
    assert trainer.cfg.num_classes == 10 and trainer.conditional
    for _ in range(3):
        trainer.train_step()
    stats = trainer.read_stats()
    assert stats.finite and all(math.isfinite(v) for v in (stats.d_loss, stats.g_loss, stats.grad_norm_g))
    assert trainer.sample().shape == (100, 28, 28)


def test_auto_is_conditional_for_labelled_data_and_unconditional_without_labels(mnist_data, make_runner):
    assert TrainConfig().preset == "auto"
    labelled = TrainConfig(dataset="mnist").resolve_preset(mnist_data.num_classes)
    assert (labelled.preset, labelled.num_classes, labelled.num_samples) == ("cond-mlp", 10, 100)
    unlabelled_data = ImageData(mnist_data.images[:2000], None, mnist_data.info)
    runner, sink = make_runner(data=unlabelled_data, preset="auto", g_hidden=(), d_hidden=(), batch_size=16)
    assert (runner.cfg.preset, runner.cfg.num_classes) == ("mlp", 0)
    saved = TrainConfig.load(runner.run.config_path)  # config.json holds the resolved preset
    assert saved.preset == "mlp"
    for _ in range(5):
        assert runner.tick()
    metrics = [e for e in sink.drain() if isinstance(e, ev.MetricsLogged)]
    assert metrics and all(math.isfinite(m.d_loss) and math.isfinite(m.g_loss) for m in metrics)
    with pytest.raises(ValueError, match="conditional preset needs labelled data"):
        TrainConfig(preset="cond-mlp").resolve_preset(0)


def test_grid_rows_share_noise_and_each_row_is_one_class(synthetic_data):
    trainer = Trainer(tiny_config(preset="cond-mlp", dataset="synthetic"), synthetic_data, torch.device("cpu"))
    k = trainer.num_classes
    assert trainer.cfg.num_samples == k * k
    noise = trainer.fixed_noise.view(k, k, -1)
    assert all(torch.equal(noise[r], noise[0]) for r in range(k))
    assert torch.equal(trainer.fixed_labels.view(k, k), torch.arange(k).view(k, 1).expand(k, k))


def test_ema_generator_uses_batchnorm_statistics_of_its_own_weights(mnist_data):
    trainer = Trainer(TrainConfig(dataset="mnist", device="cpu", quality_every=0), mnist_data, torch.device("cpu"))
    for _ in range(60):
        trainer.train_step()
    sampler = trainer.sampler
    z = torch.randn(512, trainer.cfg.latent_dim, generator=torch.Generator().manual_seed(5))
    y = trainer.labels_for(512)
    with torch.no_grad():
        eval_out = sampler(z, y)
        # In train mode BatchNorm uses the batch's own statistics: what eval mode must approximate.
        sampler.train()
        batch_out = sampler(z, y)
        sampler.eval()
    assert (eval_out - batch_out).abs().mean() < 0.02
    live = [b for b in trainer.G.buffers() if b.is_floating_point()]
    mine = [b for b in sampler.buffers() if b.is_floating_point()]
    assert any(not torch.allclose(a, b) for a, b in zip(live, mine))


def test_label_agreement_is_near_one_for_real_labels_and_near_chance_when_shuffled(mnist_data, mnist_judge):
    from engine.quality import QualityReference

    ref = QualityReference.build(mnist_judge, mnist_data, 500)
    held_out = mnist_judge.split.held_out[1000:2000]  # not the reference's own images
    images = mnist_data.images_at(held_out)
    labels = mnist_data.labels[held_out]
    real = ref.measure(0, images, labels)
    assert real.label_agreement >= 0.97
    assert len(real.class_fd) == 10 and all(fd < 3 * floor for fd, floor in zip(real.class_fd, real.class_fd_floor))
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    assert abs(ref.measure(0, images, shuffled).label_agreement - 0.1) < 0.05
    assert ref.measure(0, images).label_agreement is None  # unconditional samples have no figure


def test_conditional_commands_and_figures_cross_the_wire():
    command = cmd.SampleFresh(seed=1, digit=3, count=20)
    assert decode_command(parse_line(encode_command(command))) == command
    with pytest.raises(ValueError, match="digit"):
        decode_command({"command": "sample_fresh", "digit": -1})
    quality = ev.QualityMeasured(5, 10.0, 9.0, 100, (0.1,) * 10, 10, 0.0, 0.99, 1.0, 0.97, (1.0, math.nan), (2.0, 3.0))
    back = decode_event(parse_line(encode_event(quality)))
    assert back.label_agreement == 0.97 and back.class_fd[0] == 1.0 and math.isnan(back.class_fd[1])
    assert back.class_fd_floor == (2.0, 3.0)
    samples = decode_event(parse_line(encode_event(ev.SamplesGenerated(1, np.zeros((2, 28, 28), np.uint8), False, "", 7))))
    assert samples.digit == 7


@pytest.fixture(scope="module")
def short_conditional_run(mnist_data, tmp_path_factory):
    """The default (conditional) recipe trained for a short real run on MNIST t10k, with a final checkpoint."""
    from engine.runner import QueueSink, Runner

    torch.set_num_threads(1)  # the shared 2-core machine; the test's speed barely changes
    cfg = TrainConfig(dataset="mnist", device="cpu", steps=_SHORT_RUN_STEPS, quality_every=0, checkpoint_every=0,
                      sample_every=_SHORT_RUN_STEPS, log_every=100)
    sink = QueueSink()
    runner = Runner(cfg, sink, runs_dir=tmp_path_factory.mktemp("cond-runs"), run_name="cond", data=mnist_data)
    runner.setup()
    while runner.tick():
        pass
    assert runner.state == ev.RunState.FINISHED
    return runner, sink


def test_picking_a_digit_draws_that_digit_and_rows_are_classes(short_conditional_run, mnist_judge):
    runner, sink = short_conditional_run
    grid = runner.trainer.sample()
    read = _read_as(mnist_judge, grid).view(10, 10)
    rows_right = (read == torch.arange(10).view(10, 1)).float().mean()
    assert rows_right >= 0.6, read  # 10 samples a row; most rows read as their class
    sink.drain()
    cmd.apply(runner, cmd.SampleFresh(seed=3, digit=7, count=50))
    (event,) = [e for e in sink.drain() if isinstance(e, ev.SamplesGenerated)]
    assert event.digit == 7 and event.images.shape == (50, 28, 28) and not event.fixed
    assert _mostly(_read_as(mnist_judge, event.images), 7)
    cmd.apply(runner, cmd.SampleFresh(digit=12))
    assert any(isinstance(e, ev.WarningRaised) and "from 0 to 9" in e.message for e in sink.drain())


def test_export_digit_from_the_checkpoint(short_conditional_run, mnist_judge, tmp_path, capsys):
    from PIL import Image

    from tui_gan.cli import main

    runner, _ = short_conditional_run
    run = str(runner.run.path)
    assert main(["export", run, "samples", "--digit", "4", "--count", "40", "--out", str(tmp_path / "fours")]) == 0
    files = sorted((tmp_path / "fours").glob("*.png"))
    assert len(files) == 40
    images = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    assert _mostly(_read_as(mnist_judge, images), 4)
    assert main(["export", run, "grid", "--digit", "2", "--count", "16", "--scale", "1", "--out", str(tmp_path / "g.png")]) == 0
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (4 * 30 + 2, 4 * 30 + 2)
    capsys.readouterr()
    assert main(["export", run, "samples", "--digit", "10"]) == 2  # a digit the run has not: the user's mistake
    err = capsys.readouterr().err.strip()
    assert err.startswith("gan-tui:") and "from 0 to 9" in err and "\n" not in err


def test_a_conditional_run_resumes_exactly(make_runner):
    from tests.test_checkpoint import run_steps, weights

    changes = dict(preset="cond-mlp", steps=1000, checkpoint_every=0)
    straight, _ = make_runner(run_name="straight", **changes)
    run_steps(straight, 16)
    first, _ = make_runner(run_name="split", **changes)
    run_steps(first, 8)
    first.submit(cmd.Stop(save=True))
    first.tick()
    second, _ = make_runner(resume=str(first.run.path), **changes)
    assert (second.cfg.preset, second.cfg.num_classes) == ("cond-mlp", 10)
    run_steps(second, 8)
    a, b = weights(straight), weights(second)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert np.array_equal(straight.trainer.sample(), second.trainer.sample())


# ---------------------------------------------------------------- the recipe's options (issue 11's quality)
_NEW_OPTIONS = [dict(d_mbstd=4), dict(diff_augment_cutout=0.0), dict(mode_seeking=1.0), dict(mode_seeking=1.0, batch_size=7),
                dict(g_class_embed=10)]


@pytest.mark.parametrize("changes", _NEW_OPTIONS, ids=lambda c: "-".join(map(str, c.values())))
def test_each_recipe_option_trains_cond_mlp_with_finite_losses(changes, synthetic_data):
    trainer = Trainer(tiny_config(preset="cond-mlp", g_hidden=(32,), d_hidden=(32, 16), **changes), synthetic_data,
                      torch.device("cpu"))
    for _ in range(4):
        trainer.train_step()
    stats = trainer.read_stats()
    assert stats.finite and trainer.conditional and trainer.sample().shape == (100, 28, 28)


@pytest.mark.parametrize("batch", [16, 6])
def test_minibatch_std_groups_never_mix_real_and_fake(batch, synthetic_data):
    """Changing the fakes never changes D's scores for the reals beside them, in the trainer's own D pass
    (one joint pass when the group size divides the batch, two passes when it does not)."""
    trainer = Trainer(tiny_config(preset="cond-mlp", d_hidden=(32, 16), d_mbstd=4, batch_size=batch), synthetic_data,
                      torch.device("cpu"))
    assert trainer._d_joint_pass == (batch % 4 == 0)
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(batch, 1, 28, 28, generator=gen) * 2 - 1
    labels = torch.randint(10, (batch,), generator=gen)
    with torch.no_grad():
        real_a, fake_a = trainer._discriminate(real, torch.full_like(real, -1.0), labels, labels)
        real_b, fake_b = trainer._discriminate(real, torch.rand(real.shape, generator=gen) * 2 - 1, labels, labels)
    assert torch.equal(real_a, real_b) and not torch.equal(fake_a, fake_b)


def test_minibatch_std_is_the_spread_within_each_group():
    from engine.models import minibatch_std

    h = torch.tensor([[0.0, 0.0], [2.0, 4.0], [5.0, 5.0], [5.0, 5.0]])
    assert torch.allclose(minibatch_std(h, 2).squeeze(1), torch.tensor([1.5, 1.5, 0.0, 0.0]), atol=1e-3)
    assert minibatch_std(h[:3], 2).shape == (3, 1)  # 2 does not divide 3: groups of 1 (no spread)


def test_options_off_keep_the_state_dict_of_runs_made_before_them():
    from engine.models import build_models

    cfg = TrainConfig(preset="cond-mlp", num_classes=10, d_mbstd=0, g_class_embed=32)
    g, d = build_models(cfg)
    assert list(d.state_dict()) == ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias",
                                    "head.weight", "head.bias", "embed.weight"]
    assert g.state_dict()["embed.weight"].shape == (10, 32) and g.state_dict()["body.net.0.weight"].shape[1] == 64 + 32
    _, d_std = build_models(TrainConfig(preset="cond-mlp", num_classes=10, d_mbstd=4))
    assert d_std.state_dict()["last.0.weight"].shape == (256, 512 + 1)


def test_a_config_saved_before_the_options_existed_reads_as_it_trained(tmp_path):
    from engine.config import LEGACY_VALUES

    old = TrainConfig(preset="cond-mlp").to_dict()
    for key in LEGACY_VALUES:
        del old[key]
    (tmp_path / "config.json").write_text(json.dumps(old))
    for cfg in (TrainConfig.from_saved(old), TrainConfig.load(tmp_path / "config.json")):
        assert {key: getattr(cfg, key) for key in LEGACY_VALUES} == LEGACY_VALUES
    assert TrainConfig.from_saved({**old, "d_mbstd": 8}).d_mbstd == 8  # a saved value wins


def test_an_old_conditional_run_resumes_with_the_nets_it_trained(make_runner):
    """A run whose config.json and checkpoint predate the options resumes through its own config file."""
    from engine.config import LEGACY_VALUES
    from engine.runner import QueueSink, Runner
    from tests.test_checkpoint import run_steps

    first, _ = make_runner(run_name="old", preset="cond-mlp", steps=1000, checkpoint_every=0, **LEGACY_VALUES)
    run_steps(first, 4)
    first.submit(cmd.Stop(save=True))
    first.tick()
    before = {k: v.clone() for k, v in first.trainer.D.state_dict().items()}
    path = first.run.path
    config = json.loads(first.run.config_path.read_text())
    first.run.config_path.write_text(json.dumps({k: v for k, v in config.items() if k not in LEGACY_VALUES}))
    checkpoints = list((path / "checkpoints").glob("*.pt"))
    assert checkpoints
    for checkpoint in checkpoints:
        payload = torch.load(checkpoint, weights_only=True)
        payload["config"] = {k: v for k, v in payload["config"].items() if k not in LEGACY_VALUES}
        torch.save(payload, checkpoint)
    runner = Runner(TrainConfig.load(first.run.config_path), QueueSink(), runs_dir=path.parent, resume=str(path),
                    data=first.data)
    runner.setup()
    assert runner.trainer.cfg.d_mbstd == 0 and runner.trainer.step == 4
    assert all(torch.equal(before[k], v) for k, v in runner.trainer.D.state_dict().items())
    run_steps(runner, 2)
    runner.abandon()


def test_mode_seeking_penalises_pairs_drawn_alike():
    from engine.losses import mode_seeking_penalty

    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    alike = torch.zeros(8, 1, 28, 28)
    varied = torch.cat([torch.full((4, 1, 28, 28), -1.0), torch.full((4, 1, 28, 28), 1.0)])
    assert mode_seeking_penalty(alike, z) > 100 * mode_seeking_penalty(varied, z)
