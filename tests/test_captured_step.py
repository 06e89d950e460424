"""The captured step's contract, checked on the CPU: no host sync in any step, live hyperparameters
as device tensors filled in place, restore into the existing tensors, a new capture asked for when
the step's shape changes, `--cuda-graph on` refused without CUDA. The capture itself needs CUDA:
its test (captured and eager steps agree) runs where CUDA is present."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.config import PRESETS, ConfigError, TrainConfig
from engine.graph import STEPS_PER_REPLAY, CapturePlan, OpCounter, graph_key, resolve_graph_mode, steps_per_replay
from engine.step import EMA_EVERY, R1_EVERY, ema_weight
from engine.trainer import Trainer
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def live_tensors(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Every tensor a recorded graph reads or writes, by name."""
    tensors = {f"G.{k}": v for k, v in trainer.G.state_dict(keep_vars=True).items()}
    tensors.update({f"D.{k}": v for k, v in trainer.D.state_dict(keep_vars=True).items()})
    if trainer.G_ema is not None:
        tensors.update({f"E.{k}": v for k, v in trainer.G_ema.state_dict(keep_vars=True).items()})
    for name, opt in (("opt_g", trainer.opt_g), ("opt_d", trainer.opt_d)):
        for i, p in enumerate(opt.param_groups[0]["params"]):
            tensors.update({f"{name}.{i}.{k}": v for k, v in opt.state[p].items()})
    tensors.update({f"hyper.{k}": v for k, v in trainer.hyper.tensors().items()})
    tensors.update(step_counter=trainer.step_counter, sums=trainer._sums, fixed_noise=trainer.fixed_noise)
    return tensors


def identities(trainer: Trainer) -> dict[str, tuple[int, int]]:
    return {name: (id(t), t.data_ptr()) for name, t in live_tensors(trainer).items()}


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in live_tensors(trainer).items() if k[0] in "GDE" or k.startswith("opt")}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------- host syncs
RECIPES = [dict(preset=p, g_hidden=(), d_hidden=()) for p in PRESETS if p != "auto"] + [
    dict(loss="bce", label_smoothing=0.1), dict(loss="lsgan"), dict(loss="wgan-gp"), dict(loss="hinge", diff_augment=False),
    dict(preset="cond-mlp", d_hidden=(32, 16), r1_gamma=1.0, mode_seeking=1.0, d_mbstd=4, d_steps=2),
    dict(preset="cond-mlp", d_hidden=(32, 16), d_mbstd=4, batch_size=6),  # groups that do not divide: two D passes
]


@pytest.mark.parametrize("changes", RECIPES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_no_step_of_any_preset_or_loss_makes_the_host_wait(changes, synthetic_data):
    trainer = Trainer(tiny_config(**{"batch_size": 8, **changes}), synthetic_data, CPU)
    with OpCounter() as counter:
        for _ in range(R1_EVERY):  # R1's step and four EMA updates among them
            trainer.train_step()
    assert sum(counter.ops.values()) > 0 and dict(counter.syncs) == {}


def test_the_counter_sees_each_kind_of_host_sync():
    x = torch.arange(6.0)
    with OpCounter() as counter:
        x.sum().item()
        bool(x[0] > 1)
        x[x > 2].sum()  # a mask as an index: its size is the mask's count
        torch.nonzero(x)
        torch.repeat_interleave(torch.tensor([1, 2]))
        x[torch.tensor([0, 2])].sum()  # whole-number indices: no wait
    assert set(counter.syncs) == {"_local_scalar_dense", "index", "nonzero", "repeat_interleave"}
    assert counter.syncs["index"] == 1


# ------------------------------------------------------------ hyperparameters
def test_hyperparameters_are_device_tensors_that_a_change_fills_in_place(synthetic_data):
    trainer = Trainer(tiny_config(loss="bce"), synthetic_data, CPU)
    before = {name: id(t) for name, t in trainer.hyper.tensors().items()}
    assert trainer.opt_g.param_groups[0]["lr"] is trainer.hyper.lr_g
    assert trainer.opt_d.param_groups[0]["lr"] is trainer.hyper.lr_d
    new = trainer.cfg.with_hyperparams(lr_g=1e-5, lr_d=3e-5, beta1=0.1, beta2=0.99, label_smoothing=0.2)
    trainer.set_hyperparams(new)
    assert {name: id(t) for name, t in trainer.hyper.tensors().items()} == before
    assert trainer.opt_g.param_groups[0]["lr"] is trainer.hyper.lr_g
    values = {name: float(t) for name, t in trainer.hyper.tensors().items()}
    assert values == {"lr_g": 1e-5, "lr_d": 3e-5, "beta1": 0.1, "beta2": 0.99, "label_smoothing": 0.2,
                      "real_target": float(torch.tensor(0.8, dtype=torch.float32))}
    assert trainer.opt_g.param_groups[0]["betas"] == (0.1, 0.99)


def test_a_learning_rate_change_takes_effect_at_the_next_step(synthetic_data):
    a, b = (Trainer(tiny_config(), synthetic_data, CPU) for _ in range(2))
    for _ in range(5):
        a.train_step()
        b.train_step()
    a.set_hyperparams(a.cfg.with_hyperparams(lr_g=1e-2))
    a.train_step()
    b.train_step()
    assert all(torch.equal(x, y) for x, y in zip(a.D.parameters(), b.D.parameters()))  # lr_d unchanged
    assert not any(torch.equal(x, y) for x, y in zip(a.G.parameters(), b.G.parameters()))


def test_the_ema_decay_from_the_device_counter_is_pythons_bit_for_bit():
    for step in (0, 4, 8, 100, 4_444, 10**6):
        expected = 1.0 - min(0.9995**EMA_EVERY, (1 + step) / (10 + step))
        got = ema_weight(torch.tensor(float(step), dtype=torch.float64), 0.9995)
        assert got.dtype == torch.float32 and torch.equal(got, torch.tensor(expected, dtype=torch.float32))


# ---------------------------------------------------------------- restoring
def test_restore_copies_into_the_existing_tensors_and_resumes_exactly(synthetic_data, tmp_path):
    cfg = tiny_config(preset="cond-mlp", d_hidden=(32, 16))
    ahead, behind = Trainer(cfg, synthetic_data, CPU), Trainer(cfg, synthetic_data, CPU)
    for _ in range(6):
        ahead.train_step()
    for _ in range(3):
        behind.train_step()
    ids = identities(behind)
    save_checkpoint(tmp_path / "c.pt", {"config": cfg.to_dict(), "trainer": ahead.state_dict(), "hparam_history": []})
    behind.load_state_dict(load_checkpoint(tmp_path / "c.pt")["trainer"])
    assert identities(behind) == ids
    assert behind.step == 6 and float(behind.step_counter) == 6.0
    assert_same(weights(behind), weights(ahead))
    for _ in range(5):
        ahead.train_step()
        behind.train_step()
    assert_same(weights(behind), weights(ahead))


def test_a_failed_restore_keeps_identities_and_values(synthetic_data):
    trainer = Trainer(tiny_config(), synthetic_data, CPU)
    for _ in range(3):
        trainer.train_step()
    ids, before = identities(trainer), weights(trainer)
    bad = copy.deepcopy(trainer.state_dict())
    bad["generator"] = {k: torch.full_like(v, 7.0) for k, v in bad["generator"].items()}
    key = next(iter(bad["opt_d"]["state"]))
    bad["opt_d"]["state"][key]["exp_avg"] = torch.zeros(3, 3)  # fails after G and opt_g were loaded
    with pytest.raises(ValueError, match="shape"):
        trainer.load_state_dict(bad)
    assert identities(trainer) == ids
    assert_same(weights(trainer), before)


@pytest.mark.parametrize("form", ["cpu float32", "float64", "number", "missing"])
def test_adams_step_count_loads_in_every_form_a_checkpoint_may_hold(form, synthetic_data):
    """fused or capturable Adam keeps `step` as a float32 tensor on the device; plain Adam as a CPU
    tensor of the default dtype; old checkpoints as a number; a checkpoint from before the first
    update has no state at all (the moments then start over at zeros)."""
    source, target = Trainer(tiny_config(), synthetic_data, CPU), Trainer(tiny_config(), synthetic_data, CPU)
    for _ in range(4):
        source.train_step()
        target.train_step()
    state = copy.deepcopy(source.state_dict())
    for entry in state["opt_g"]["state"].values():
        if form == "float64":
            entry["step"] = entry["step"].double()
        elif form == "number":
            entry["step"] = float(entry["step"])
    if form == "missing":
        state["opt_g"]["state"] = {}
    target.load_state_dict(state)
    for p in target.opt_g.param_groups[0]["params"]:
        live = target.opt_g.state[p]
        assert live["step"].dtype == torch.float32 and float(live["step"]) == (0.0 if form == "missing" else 4.0)
        assert (live["exp_avg"].abs().sum() == 0) == (form == "missing")


def test_checkpoints_keep_their_format_numbers_in_the_groups(synthetic_data):
    trainer = Trainer(tiny_config(), synthetic_data, CPU)
    trainer.train_step()
    group = trainer.state_dict()["opt_g"]["param_groups"][0]
    assert group["lr"] == trainer.cfg.lr_g and isinstance(group["lr"], float)
    assert group["betas"] == (trainer.cfg.beta1, trainer.cfg.beta2) and group["capturable"] is False
    fresh = torch.optim.Adam(Trainer(tiny_config(), synthetic_data, CPU).G.parameters(), fused=True)
    fresh.load_state_dict(copy.deepcopy(trainer.state_dict()["opt_g"]))  # what any gan-tui does with it


# ------------------------------------------------------------ capture plan
def test_a_change_of_the_steps_shape_asks_for_a_new_capture_and_a_rate_change_does_not(synthetic_data):
    trainer = Trainer(tiny_config(), synthetic_data, CPU)
    key = trainer.capture.key
    trainer.set_hyperparams(trainer.cfg.with_hyperparams(lr_g=1e-3, lr_d=1e-3, label_smoothing=0.1))
    assert trainer.capture.key == key
    trainer.set_hyperparams(trainer.cfg.with_hyperparams(d_steps=2))
    assert trainer.capture.key != key and trainer.capture.key == graph_key(trainer.cfg)

    plan = CapturePlan(True, STEPS_PER_REPLAY, key, warmup=2)
    k = STEPS_PER_REPLAY
    assert [plan.action(0, 100), plan.warming] == ["eager", True]  # warming up first
    plan.stepped_eagerly()
    plan.stepped_eagerly()
    assert [plan.action(s, 100) for s in (2, k - 1, k, 2 * k)] == ["eager", "eager", "capture", "capture"]
    assert plan.action(k, k - 1) == "eager"  # the steps left do not fill a replay
    plan.captured()
    assert plan.action(k, 100) == "replay" and plan.action(k + 1, 100) == "eager" and plan.captures == 1
    assert not plan.retarget(key)  # the same shape: the graph stays
    assert plan.retarget((2, 16)) and not plan.ready
    assert plan.action(2 * k, 100) == "eager"  # one warm-up step for the new shape
    plan.stepped_eagerly()
    assert plan.action(3 * k, 100) == "capture"
    plan.captured()
    assert plan.captures == 2
    assert steps_per_replay(tiny_config(r1_gamma=1.0)) % R1_EVERY == 0  # R1's step has a fixed place too


def test_cpu_steps_through_train_steps_are_the_eager_steps(synthetic_data):
    a, b = Trainer(tiny_config(), synthetic_data, CPU), Trainer(tiny_config(), synthetic_data, CPU)
    assert a.train_steps(0) == 0
    ran = 0
    while ran < 10:
        ran += a.train_steps(10 - ran)
    for _ in range(10):
        b.train_step()
    assert a.step == b.step == 10 and a.unread_steps == 10
    assert_same(weights(a), weights(b))
    assert a.take_notes() == [] and a.graph_summary == "eager" and not a.capture.enabled


# ---------------------------------------------------------------- the switch
def test_cuda_graph_on_without_cuda_is_refused_in_one_line(synthetic_data):
    with pytest.raises(ConfigError, match="cuda_graph") as info:
        TrainConfig(cuda_graph="on", device="cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="needs CUDA"):
        Trainer(tiny_config(device="auto", cuda_graph="on"), synthetic_data, CPU)  # auto landed on the CPU
    with pytest.raises(ConfigError, match="GradScaler"):
        TrainConfig(cuda_graph="on", amp="fp16")
    with pytest.raises(ConfigError, match="use one of auto, on, off"):
        TrainConfig(cuda_graph="yes")
    from tui_gan.options import parse_options

    assert parse_options(["--dataset", "synthetic", "--cuda-graph", "off"]).config.cuda_graph == "off"
    assert parse_options(["--dataset", "synthetic"]).config.cuda_graph == "auto"
    result = subprocess.run([sys.executable, "-m", "tui_gan.cli", "--headless", "--dataset", "synthetic", "--device", "cpu",
                             "--cuda-graph", "on"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "cuda_graph" in result.stderr


def test_auto_decides_without_a_gpu_what_a_gpu_would_get():
    cuda = torch.device("cuda")
    assert resolve_graph_mode(TrainConfig(), CPU, None) == (False, "")
    assert resolve_graph_mode(TrainConfig(cuda_graph="off"), cuda, torch.bfloat16) == (False, "")
    captured, note = resolve_graph_mode(TrainConfig(), cuda, torch.float16)
    assert not captured and "fp16" in note and "\n" not in note
    with pytest.raises(ConfigError, match="GradScaler"):
        resolve_graph_mode(TrainConfig(cuda_graph="on"), cuda, torch.float16)
    if hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        assert resolve_graph_mode(TrainConfig(), cuda, torch.bfloat16) == (True, "")


# ------------------------------------------------------------------ on CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the capture itself needs CUDA")
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_captured_and_eager_steps_agree_on_cuda(amp, synthetic_data):
    cuda = torch.device("cuda")
    runs = {}
    for mode in ("on", "off"):
        trainer = Trainer(tiny_config(device="cuda", amp=amp, cuda_graph=mode, preset="cond-mlp", d_hidden=(32, 16),
                                      batch_size=32), synthetic_data, cuda)
        done = 0
        while done < 64:
            done += trainer.train_steps(64 - done)
        torch.cuda.synchronize()
        runs[mode] = (trainer, weights(trainer), trainer.read_stats())
    captured, eager = runs["on"], runs["off"]
    assert captured[0].capture.ready and captured[0].capture.captures == 1 and not eager[0].capture.enabled
    tolerance = 1e-3 if amp == "off" else 5e-2
    for key, value in eager[1].items():
        assert torch.allclose(captured[1][key].float(), value.float(), rtol=tolerance, atol=tolerance), key
    assert abs(captured[2].d_loss - eager[2].d_loss) <= tolerance * max(1.0, abs(eager[2].d_loss)) * 10
