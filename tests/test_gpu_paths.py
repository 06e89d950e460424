"""The GPU path's fixes, each exercised on the CPU: judge initialisation on another device, a batch
RNG from another device type, fp16 steps the GradScaler skips, amp choice by compute capability,
cuda:N, --deterministic, out-of-memory and sticky CUDA errors, device readings in events."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from engine import devices
from engine import commands as cmd
from engine import events as ev
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.config import ConfigError, TrainConfig
from engine.protocol import decode_event, encode_event, parse_line
from engine.trainer import Trainer
from tests.conftest import tiny_config


def run_to(runner, step):
    while runner.trainer.step < step:
        assert runner.tick()


def weights(trainer):
    return {f"{n}.{k}": v.clone() for n, m in (("G", trainer.G), ("D", trainer.D)) for k, v in m.state_dict().items()}


# ----------------------------------------------------------- judge initialisation
def test_judge_weights_are_drawn_on_the_generators_device_then_moved(monkeypatch):
    from engine.judge import new_classifier

    drawn_on = []
    real_init = nn.init.kaiming_uniform_

    def spy(tensor, *args, **kwargs):
        if kwargs.get("generator") is not None:  # the constructor's own default init runs on meta first
            drawn_on.append((tensor.device.type, kwargs["generator"].device.type))
        return real_init(tensor, *args, **kwargs)

    monkeypatch.setattr(nn.init, "kaiming_uniform_", spy)
    # A target device other than the generator's (on a GPU box: cuda with a CPU generator, which raised).
    model = new_classifier(10, torch.device("meta"), torch.Generator().manual_seed(1))
    assert drawn_on and all(t == g == "cpu" for t, g in drawn_on)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    # Same seed, same weights, wherever they end up.
    a = new_classifier(10, torch.device("cpu"), torch.Generator().manual_seed(1))
    b = new_classifier(10, torch.device("cpu"), torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------- amp choice
@pytest.mark.parametrize(
    ("amp", "device_type", "cap", "expected"),
    [
        ("auto", "cuda", (9, 0), torch.bfloat16),  # H100
        ("auto", "cuda", (8, 0), torch.bfloat16),  # A100
        ("auto", "cuda", (7, 5), torch.float16),  # T4: no bf16 tensor cores, emulated bf16 is slow
        ("auto", "cuda", (7, 0), torch.float16),  # V100
        ("auto", "cuda", (6, 1), None),  # Pascal: slow fp16 too
        ("auto", "cpu", None, None),  # a CPU without bf16 instructions
        ("off", "cuda", (9, 0), None),
        ("fp16", "cuda", (9, 0), torch.float16),
        ("bf16", "cpu", None, torch.bfloat16),
    ],
)
def test_amp_auto_picks_bf16_only_from_compute_capability_8(amp, device_type, cap, expected):
    assert devices.amp_dtype_for(amp, device_type, cap) is expected


def test_amp_auto_on_a_cpu_picks_bf16_only_where_it_has_bf16_instructions():
    assert devices.amp_dtype_for("auto", "cpu", None, cpu_bf16=True) is torch.bfloat16
    assert devices.amp_dtype_for("off", "cpu", None, cpu_bf16=True) is None
    assert devices.cpu_has_bf16({"avx512_bf16": True, "avx512_f": True})
    assert devices.cpu_has_bf16({"amx_bf16": True})
    assert not devices.cpu_has_bf16({"avx2": True, "avx512_f": True})  # emulated bf16 is slower than fp32
    assert not devices.cpu_has_bf16({"architecture": "arm64", "bf16": True})  # not measured: stays off


def test_bf16_autocast_on_the_cpu_trains_finite_and_resumes_exactly(monkeypatch, synthetic_data):
    """The CPU default where the CPU has bf16 instructions: steps in bf16, samples in full precision,
    and a run saved halfway and loaded into a fresh trainer goes on exactly as one that never stopped."""
    import engine.trainer

    monkeypatch.setattr(engine.trainer, "cpu_has_bf16", lambda: True)
    cfg = tiny_config(preset="cond-mlp", g_hidden=(32,), d_hidden=(32, 16), amp="auto")
    straight, first = Trainer(cfg, synthetic_data, torch.device("cpu")), Trainer(cfg, synthetic_data, torch.device("cpu"))
    assert straight.amp_dtype is torch.bfloat16
    for _ in range(6):
        straight.train_step()
    for _ in range(3):
        first.train_step()
    second = Trainer(cfg, synthetic_data, torch.device("cpu"))
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    for _ in range(3):
        second.train_step()
    assert straight.read_stats().finite
    a, b = straight.G.state_dict(), second.G.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    images = straight.sample()
    assert images.shape == (straight.cfg.num_samples, 28, 28) and images.dtype.name == "uint8"
    assert all(p.dtype == torch.float32 for p in straight.G.parameters())
    assert devices.device_name(torch.device("cpu"), straight.amp_dtype) == "CPU, bf16"  # what viewers show


def test_amp_capability_is_asked_of_the_chosen_gpu(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or (7, 5))
    assert devices.capability(torch.device("cuda", 1)) == (7, 5)
    assert asked == [torch.device("cuda", 1)]


# ---------------------------------------------------------------------- cuda:N
def test_device_cuda_n_is_validated_and_a_missing_index_is_one_clear_line(monkeypatch):
    assert TrainConfig(device="cuda:1").device == "cuda:1"
    for bad in ("gpu", "cuda:", "cuda:x", "cuda:1:2", "CUDA"):
        with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N"):
            TrainConfig(device=bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        devices.resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert devices.resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ConfigError) as info:
        devices.resolve_device("cuda:2")
    assert "\n" not in str(info.value) and "2 CUDA GPUs here (cuda:0, cuda:1)" in str(info.value)


def test_cli_takes_cuda_n_and_deterministic(tmp_path):
    from tui_gan.cli import parse_options

    options = parse_options(["--device", "cuda:3", "--deterministic"])
    assert options.config.device == "cuda:3" and options.config.deterministic is True
    assert parse_options([]).config.deterministic is False


def test_deterministic_turns_on_torchs_deterministic_kernels(make_runner, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        runner, _ = make_runner(deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        run_to(runner, 10)  # every preset op has a deterministic kernel: nothing raises
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


# ------------------------------------------------------- batch RNG across devices
def _as_if_saved_on_cuda(path):
    payload = load_checkpoint(path)
    payload.pop("format")
    payload["trainer"]["rng"]["batches"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state
    payload["trainer"]["rng"].pop("batches_device")
    payload["trainer"]["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)
    save_checkpoint(path, payload)


def test_a_checkpoint_from_a_gpu_resumes_on_the_cpu_with_a_note_and_reseeded_batches(make_runner):
    first, _ = make_runner(run_name="gpu-run", steps=1000, checkpoint_every=0)
    run_to(first, 12)
    first.submit(cmd.Stop(save=True))
    first.tick()
    _as_if_saved_on_cuda(first.run.latest_checkpoint())

    results = []
    for _ in range(2):
        resumed, sink = make_runner(resume=str(first.run.path), steps=1000, checkpoint_every=0)
        assert resumed.trainer.step == 12
        notes = [e for e in sink.drain() if isinstance(e, ev.WarningRaised) and e.kind == "rng"]
        assert len(notes) == 1 and "written on cuda" in notes[0].message and "reseeded" in notes[0].message
        run_to(resumed, 20)
        results.append(weights(resumed.trainer))
        resumed.submit(cmd.Stop(save=False))
        resumed.tick()
    # Reseeded deterministically: the same checkpoint resumed twice trains the same way.
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_rollback_to_a_gpu_checkpoint_works_and_a_broken_one_never_half_restores(make_runner):
    runner, sink = make_runner(steps=10**6, checkpoint_every=10)
    run_to(runner, 10)
    runner.settle()  # checkpoints reach the disk on the journal's writer thread
    _as_if_saved_on_cuda(runner.run.checkpoint_path(10))
    run_to(runner, 25)
    runner.submit(cmd.RollBack("10"))
    runner.tick()
    events = sink.drain()
    assert any(isinstance(e, ev.RolledBack) and e.step == 10 for e in events)
    assert any(isinstance(e, ev.WarningRaised) and e.kind == "rng" for e in events)

    # A checkpoint whose discriminator does not load: refused, and nothing of it is left behind.
    run_to(runner, 30)
    runner.settle()
    payload = load_checkpoint(runner.run.checkpoint_path(30))
    payload.pop("format")
    key = list(payload["trainer"]["discriminator"])[-1]
    payload["trainer"]["discriminator"][key] = torch.zeros(3, 3)
    save_checkpoint(runner.run.checkpoint_path(30), payload)
    run_to(runner, 33)
    before, opt_before = weights(runner.trainer), copy.deepcopy(runner.trainer.opt_g.state_dict())
    rng_before = runner.trainer.rng.get_state()
    runner.submit(cmd.RollBack("30"))
    runner.tick()
    warning = next(e for e in sink.drain() if isinstance(e, ev.WarningRaised))
    assert warning.kind == "rollback" and "not rolled back" in warning.message
    assert runner.trainer.step == 34  # stayed at 33, then the tick trained one step
    runner2_weights = weights(runner.trainer)
    assert runner2_weights.keys() == before.keys()
    # Everything was put back before training went on: the optimizer kept its step count, the RNG moved on from its own state.
    assert runner.trainer.opt_g.state_dict()["state"][0]["step"] == opt_before["state"][0]["step"] + 1
    assert not torch.equal(runner.trainer.rng.get_state(), rng_before)


def test_trainer_restore_is_all_or_nothing(synthetic_data):
    trainer = Trainer(tiny_config(), synthetic_data, torch.device("cpu"))
    for _ in range(3):
        trainer.train_step()
    good = copy.deepcopy(trainer.state_dict())
    bad = copy.deepcopy(good)
    bad["step"] = 99
    bad["generator"] = {k: torch.full_like(v, 7.0) for k, v in bad["generator"].items()}
    bad["opt_d"] = {"state": {}, "param_groups": []}  # fails after G was already loaded
    with pytest.raises(ValueError):
        trainer.load_state_dict(bad)
    assert trainer.step == 3
    for key, value in trainer.G.state_dict().items():
        assert torch.equal(value, good["generator"][key])
    assert torch.equal(trainer.rng.get_state(), good["rng"]["batches"])


# --------------------------------------------------------------- fp16 skipped steps
def test_steps_the_fp16_scaler_skips_are_counted_not_alarmed(make_runner):
    runner, sink = make_runner(steps=10**6, log_every=5, g_ema=0)
    # On a GPU an fp16 overflow makes the scaler skip the update and halve its scale. Here a scaler
    # with an infinite scale forces that overflow on the CPU; then it recovers at a sane scale.
    runner.trainer.scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))
    start = weights(runner.trainer)
    run_to(runner, 3)
    assert all(torch.equal(v, start[k]) for k, v in weights(runner.trainer).items())  # skipped: nothing moved
    runner.trainer.scaler.update(2.0**16)
    run_to(runner, 10)
    events = sink.drain()
    metrics = [e for e in events if isinstance(e, ev.MetricsLogged)]
    assert [m.amp_skipped for m in metrics] == [3, 0]
    assert all(torch.isfinite(torch.tensor([m.grad_norm_d, m.grad_norm_g])).all() for m in metrics)
    assert not any(isinstance(e, ev.AlarmRaised) for e in events)
    assert runner.state == ev.RunState.RUNNING and "nonfinite" not in runner.health.active
    runner.settle()  # the log's lines reach the disk on the journal's writer thread
    records = [r for r in runner.run.read_log() if r["type"] == "metrics"]
    assert [r["amp_skipped"] for r in records] == [3, 0]


def test_an_interval_of_nothing_but_skips_is_still_a_divergence(synthetic_data):
    trainer = Trainer(tiny_config(), synthetic_data, torch.device("cpu"))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))
    for _ in range(4):
        trainer.train_step()
    stats = trainer.read_stats()
    assert stats.skipped == 4 and not stats.finite  # the scale never recovered: the alarm is right


def test_fp16_on_a_cpu_reached_through_auto_is_refused(synthetic_data):
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        Trainer(tiny_config(device="auto", amp="fp16"), synthetic_data, torch.device("cpu"))


# ------------------------------------------------------------- OOM and CUDA errors
def test_out_of_memory_saves_a_checkpoint_then_suggests_a_smaller_batch(make_runner, monkeypatch):
    runner, sink = make_runner(steps=10**6, checkpoint_every=0)
    run_to(runner, 7)

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner.trainer, "train_step", oom)
    assert not runner.tick()
    events = sink.drain()
    names = [type(e).__name__ for e in events]
    saved = names.index("CheckpointSaved")
    error = next(e for e in events if isinstance(e, ev.ErrorRaised))
    assert saved < names.index("ErrorRaised") and events[saved].reason == "error"
    assert "ran out of memory at batch size 16; try --batch-size 8" in error.message
    assert "checkpoint at step 7 saved" in error.message and "\n" not in error.message
    assert (events[-1].step, events[-1].state, events[-1].run_dir) == (7, ev.RunState.FAILED, str(runner.run.path))
    assert runner.run.checkpoint_path(7).is_file()


def test_a_sticky_cuda_error_never_raises_in_the_failure_handler(make_runner, monkeypatch):
    runner, sink = make_runner(steps=10**6)
    run_to(runner, 5)
    poisoned = RuntimeError("CUDA error: an illegal memory access was encountered")

    def fail(*_args, **_kwargs):
        raise poisoned

    # After such an error every device call fails: stepping, reading weights, saving.
    monkeypatch.setattr(runner.trainer, "train_step", fail)
    monkeypatch.setattr(runner.trainer, "state_dict", fail)
    monkeypatch.setattr("engine.saver.weights_finite", fail)
    assert not runner.tick()
    events = sink.drain()
    assert not any(isinstance(e, ev.CheckpointSaved) for e in events)
    error = next(e for e in events if isinstance(e, ev.ErrorRaised))
    assert "unrecoverable error" in error.message and "--resume" in error.message
    assert isinstance(events[-1], ev.RunFinished) and events[-1].state == ev.RunState.FAILED
    assert (runner.run.path / "error.log").is_file()


def test_an_ordinary_error_after_which_saving_fails_still_ends_with_a_final_event(make_runner, monkeypatch):
    runner, sink = make_runner(steps=10**6)
    run_to(runner, 5)

    def fail(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner.trainer, "train_step", fail)
    monkeypatch.setattr("engine.saver.weights_finite", fail)
    assert not runner.tick()
    events = sink.drain()
    assert isinstance(events[-1], ev.RunFinished) and events[-1].state == ev.RunState.FAILED
    assert any(isinstance(e, ev.WarningRaised) and "no checkpoint after the error" in e.message for e in events)


# ------------------------------------------------------------ device readings
def test_gpu_name_and_memory_travel_in_events_and_round_trip_the_protocol(make_runner, monkeypatch):
    reading = devices.MemoryReading(allocated_mb=812.5, reserved_mb=1024.0, total_mb=81_559.0, peak_mb=900.0)
    monkeypatch.setattr("engine.monitoring.memory_reading", lambda device: reading)
    monkeypatch.setattr("engine.monitoring.device_name", lambda device, precision=None: "NVIDIA H100 80GB HBM3")
    _, sink = make_runner()
    stats = next(e for e in sink.drain() if isinstance(e, ev.DeviceStats))
    assert stats == ev.DeviceStats(0, "cpu", "NVIDIA H100 80GB HBM3", 812.5, 1024.0, 81_559.0, 900.0)
    assert decode_event(parse_line(encode_event(stats))) == stats
    metrics = ev.MetricsLogged(5, 0.1, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1e-3, 1e-3, 100.0, 1.0, amp_skipped=2)
    assert decode_event(parse_line(encode_event(metrics))) == metrics


def test_the_cpu_posts_no_device_readings(make_runner):
    runner, sink = make_runner(steps=12)
    while runner.tick():
        pass
    assert not any(isinstance(e, ev.DeviceStats) for e in sink.drain())


@pytest.mark.parametrize("requested, cores, expected", [(0, 2, 1), (0, 1, 1), (0, 16, 15), (3, 2, 3), (1, 64, 1)])
def test_cpu_training_leaves_a_core_for_side_work_unless_told(requested, cores, expected):
    assert devices.training_threads(requested, cores, environ={}) == expected


def test_a_launchers_omp_num_threads_is_the_auto_choice():
    assert devices.training_threads(0, 16, environ={"OMP_NUM_THREADS": "2"}) == 2  # a Ray trial's share
    assert devices.training_threads(0, 16, environ={"OMP_NUM_THREADS": "junk"}) == 15
    assert devices.training_threads(4, 16, environ={"OMP_NUM_THREADS": "2"}) == 4  # --threads wins


def test_a_cpu_run_trains_with_its_thread_count_and_the_quality_worker_with_one(make_runner, tmp_path):
    import threading

    before = torch.get_num_threads()
    try:
        runner, _ = make_runner(device="cpu", threads=1)
        assert torch.get_num_threads() == 1  # setup() ran on this thread: the one that trains
        runner.abandon()
        runner, _ = make_runner(device="cpu", threads=2, run_name="two")
        assert torch.get_num_threads() == 2
        runner.abandon()
    finally:
        torch.set_num_threads(before)
    seen = []
    from engine.evaluator import QualityWorker

    worker_thread_counts = []
    original = torch.set_num_threads
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "set_num_threads", lambda n: worker_thread_counts.append((threading.current_thread().name, n)))
        mp.setattr("engine.evaluator.load_or_train", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no judge here")))
        worker = QualityWorker(runner.trainer.data, torch.device("cpu"), 10, 8, 0, seen.append, cache_dir=tmp_path)
        worker.start()
        worker.wait_idle(10)
        worker.close()
    assert original is torch.set_num_threads
    assert worker_thread_counts == [("gan-tui-quality", 1)] and "quality metrics are off" in seen[-1].message


def test_threads_is_validated_and_reaches_the_config_from_the_command_line():
    from tui_gan.options import parse_options

    assert parse_options(["--dataset", "synthetic", "--threads", "3"]).config.threads == 3
    with pytest.raises(ConfigError, match="threads"):
        TrainConfig(threads=-1)


def test_running_out_of_memory_is_no_poisoned_context_so_the_checkpoint_is_still_saved():
    from engine.devices import describe_failure, is_sticky_device_error

    for exc in (RuntimeError("CUDA error: out of memory"), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")):
        assert not is_sticky_device_error(exc)
        assert "--batch-size 32" in describe_failure(exc, 64)
    assert is_sticky_device_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
