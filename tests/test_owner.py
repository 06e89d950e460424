"""One owner per run folder, and a run that always ends well: a second trainer on a live folder is
refused and touches nothing; commands that fail when applied are warnings; the failure path never
raises; Stop is safe at any moment."""

from __future__ import annotations

import os

import pytest
import torch

from engine import commands as cmd
from engine import events as ev
from engine.lock import RunLocked
from engine.server import SOCKET_NAME


def snapshot(folder):
    """Every file under `folder` with its bytes and mtime."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_trainer_on_a_live_folder_is_refused_and_touches_nothing(make_runner, tmp_path, synthetic_data):
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config

    live, _ = make_runner(steps=10**6, checkpoint_every=10)
    while live.trainer.step < 25:
        live.tick()
    live.settle()
    (live.run.path / SOCKET_NAME).write_bytes(b"")  # stands in for the live trainer's socket
    before = snapshot(live.run.path)
    for kwargs in (dict(resume=str(live.run.path)), dict(resume="latest"), dict(run_name="run")):
        sink = QueueSink()
        second = Runner(tiny_config(), sink, runs_dir=tmp_path / "runs", data=synthetic_data, **kwargs)
        with pytest.raises(RunLocked) as info:
            second.setup()
        assert f"process {os.getpid()}" in str(info.value) and f"gan-tui attach {live.run.path}" in str(info.value)
        assert "\n" not in str(info.value)
        second.run_forever()  # as the thread would: one ErrorRaised, RunFinished, nothing written
        events = sink.drain()
        assert [type(e).__name__ for e in events] == ["ErrorRaised", "StateChanged", "RunFinished"]
        assert events[0].message == str(info.value) and events[-1].state == ev.RunState.FAILED
    assert snapshot(live.run.path) == before
    assert live.tick()  # the live run goes on
    live.submit(cmd.Stop())
    while live.tick():
        pass
    resumed, _ = make_runner(resume=str(live.run.path), steps=10**6)  # released at the end: resumable
    assert resumed.trainer.step == 26


def test_stop_before_setup_ends_with_a_checkpoint(tmp_path, synthetic_data):
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config

    sink = QueueSink()
    runner = Runner(tiny_config(steps=10**6), sink, runs_dir=tmp_path, run_name="s", data=synthetic_data)
    runner.submit(cmd.Stop())  # a signal during start-up
    runner.start()
    assert runner.join(60)
    events = sink.drain()
    assert (events[-1].step, events[-1].state, events[-1].run_dir) == (0, ev.RunState.STOPPED, str(runner.run.path))
    assert runner.run.latest_checkpoint() is not None and runner.run.read_state()["state"] == "stopped"


def test_a_failure_inside_the_failure_path_never_escapes(make_runner, monkeypatch):
    runner, sink = make_runner()
    runner.tick()
    monkeypatch.setattr(runner.trainer, "train_step", lambda: (_ for _ in ()).throw(RuntimeError("device lost")))
    monkeypatch.setattr(runner.trainer, "state_dict", lambda: (_ for _ in ()).throw(RuntimeError("device lost again")))
    assert runner.tick() is False
    events = sink.drain()
    assert any(isinstance(e, ev.ErrorRaised) and "device lost" in e.message for e in events)
    assert any(isinstance(e, ev.WarningRaised) and "device lost again" in e.message for e in events)
    assert (events[-1].step, events[-1].state, events[-1].run_dir) == (1, ev.RunState.FAILED, str(runner.run.path))
    assert runner.run.read_state()["state"] == "failed"


def test_commands_that_fail_when_applied_are_warnings_and_change_nothing(make_runner):
    runner, sink = make_runner(steps=10**6, checkpoint_every=10)
    while runner.trainer.step < 20:
        runner.tick()
    runner.settle()
    weights = {k: v.clone() for k, v in runner.trainer.G.state_dict().items()}
    # A malformed file at a checkpoint's name, and one that loads but does not fit the nets.
    good = torch.load(runner.run.checkpoint_path(10), weights_only=True)
    torch.save({"format": 1, "config": good["config"], "trainer": {"step": 5}, "hparam_history": []},
               runner.run.checkpoint_path(5))
    misfit = dict(good, trainer=dict(good["trainer"], discriminator={"net.0.weight": torch.zeros(3, 3)}))
    torch.save(misfit, runner.run.checkpoint_path(15))
    for command in (cmd.RollBack("5"), cmd.RollBack("15"), cmd.SampleFresh(seed=2**70), cmd.SampleFresh(seed=-1),
                    cmd.ExportSamples("/etc/passwd"), cmd.ExportSamples("../config.json"),
                    cmd.SetHyperparams({"lr_g": 10**400})):
        runner.submit(command)
    runner.submit(cmd.Pause())
    runner.tick()
    runner.settle()
    events = sink.drain()
    warnings = [e.message for e in events if isinstance(e, ev.WarningRaised)]
    assert len(warnings) == 7, warnings
    assert "malformed" in warnings[0] and "does not fit" in warnings[1] and "nothing changed" in warnings[1]
    assert not any(isinstance(e, (ev.RolledBack, ev.SamplesExported, ev.HyperparamsChanged)) for e in events)
    assert runner.trainer.step == 20 and runner.state == ev.RunState.PAUSED
    for k, v in runner.trainer.G.state_dict().items():
        assert torch.equal(v, weights[k])
    assert not (runner.run.path.parent / "config.json").exists()
    runner.submit(cmd.Resume())
    runner.tick()
    assert runner.trainer.step == 21  # and it trains on


def test_rollback_restores_the_hyperparameters_of_the_checkpoint_then_scales(make_runner):
    runner, sink = make_runner(steps=10**6, checkpoint_every=10, lr_g=1e-3, lr_d=2e-3)
    while runner.trainer.step < 10:
        runner.tick()
    runner.submit(cmd.SetHyperparams({"lr_g": 3e-4, "beta1": 0.2}))
    while runner.trainer.step < 15:
        runner.tick()
    runner.settle()
    sink.drain()
    runner.submit(cmd.RollBack("10"))
    runner.tick()
    runner.settle()
    events = sink.drain()
    rolled = next(e for e in events if isinstance(e, ev.RolledBack))
    assert rolled.hyperparams["lr_g"] == 1e-3 and rolled.hyperparams["beta1"] == 0.5
    assert rolled.replaced["lr_g"] == 3e-4 and rolled.replaced["beta1"] == 0.2
    changed = next(e for e in events if isinstance(e, ev.HyperparamsChanged))
    assert changed.old["lr_g"] == 3e-4 and changed.new["lr_g"] == 1e-3
    assert runner.cfg.lr_g == 1e-3 and runner.trainer.opt_g.param_groups[0]["lr"] == 1e-3
    assert runner.trainer.opt_g.param_groups[0]["betas"][0] == 0.5
    runner.settle()  # the log's lines reach the disk on the journal's writer thread
    log = runner.run.read_log()
    assert any(r["type"] == "hparams" and r.get("reason") == "rollback" and r["new"]["lr_g"] == 1e-3 for r in log)
    # U: the checkpoint's rates, then scaled.
    runner.submit(cmd.SetHyperparams({"lr_g": 7e-4}))
    runner.tick()
    runner.submit(cmd.RollBack("10", lr_scale=0.5))
    runner.tick()
    runner.settle()
    assert runner.cfg.lr_g == 5e-4 and runner.cfg.lr_d == 1e-3
    assert runner.trainer.opt_d.param_groups[0]["lr"] == 1e-3
