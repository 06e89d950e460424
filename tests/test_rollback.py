"""Rollback: a checkpoint's weights come back exactly, later records and checkpoints are set aside."""

from __future__ import annotations

import torch

from engine import commands as cmd
from engine import events as ev
from engine.checkpoint import load_checkpoint


def run_to(runner, step):
    while runner.trainer.step < step:
        runner.tick()
    runner.settle()  # checkpoints and log lines are written by the journal's thread


def assert_state_equals(trainer, payload):
    saved = payload["trainer"]
    for name, net in (("generator", trainer.G), ("discriminator", trainer.D), ("generator_ema", trainer.G_ema)):
        for key, value in net.state_dict().items():
            assert torch.equal(value, saved[name][key]), f"{name}.{key}"
    for opt, key in ((trainer.opt_g, "opt_g"), (trainer.opt_d, "opt_d")):
        for state, saved_state in zip(opt.state_dict()["state"].values(), saved[key]["state"].values()):
            for k in state:
                assert torch.equal(state[k], saved_state[k])


def test_nan_then_one_key_rollback_restores_the_last_good_checkpoint_exactly_and_resumes(make_runner):
    runner, sink = make_runner(steps=10**6, checkpoint_every=20, log_every=5)
    run_to(runner, 45)
    with torch.no_grad():
        next(runner.trainer.D.parameters()).view(-1)[0] = float("nan")
    run_to(runner, 50)
    assert runner.state == ev.RunState.PAUSED and "nonfinite" in runner.health.active
    runner.submit(cmd.RollBack("last-good", lr_scale=0.5))
    runner.tick()
    runner.settle()
    assert runner.trainer.step == 41  # back at 40 and resumed at once: the same tick ran one step
    events = sink.drain()
    rolled = next(e for e in events if isinstance(e, ev.RolledBack))
    assert (rolled.from_step, rolled.step) == (50, 40)
    assert any(isinstance(e, ev.AlarmCleared) and e.kind == "nonfinite" for e in events)
    assert runner.state == ev.RunState.RUNNING
    assert runner.cfg.lr_g == 1e-4 and runner.trainer.opt_g.param_groups[0]["lr"] == 1e-4  # half the default 2e-4
    runner.settle()  # the log's lines reach the disk on the journal's writer thread
    log = runner.run.read_log()
    assert max(r["step"] for r in log) <= 41
    assert any(r["type"] == "rollback" and r["from_step"] == 50 for r in log)
    abandoned = (runner.run.path / "metrics.abandoned.jsonl").read_text()
    assert '"nonfinite"' in abandoned  # the alarm record was set aside, not lost


def test_rollback_weights_equal_the_checkpoint_and_training_on_retraces_the_same_path(make_runner):
    runner, sink = make_runner(steps=10**6, checkpoint_every=20)
    run_to(runner, 40)
    later = load_checkpoint(runner.run.checkpoint_path(40))
    run_to(runner, 47)
    runner.submit(cmd.Pause())
    runner.tick()
    runner.submit(cmd.RollBack("20"))
    runner.tick()
    assert runner.trainer.step == 20 and runner.state == ev.RunState.PAUSED
    assert_state_equals(runner.trainer, load_checkpoint(runner.run.checkpoint_path(20)))
    assert (runner.run.checkpoints_dir / "abandoned" / "step_00000040.pt").is_file()
    assert [s for s, _ in runner.run.checkpoints()] == [20]
    runner.submit(cmd.Resume())
    run_to(runner, 40)
    assert_state_equals(runner.trainer, later)  # exact: the same batches, noise and updates again


def test_rollback_to_best_uses_the_quality_index_and_refusals_are_warnings(make_runner):
    runner, sink = make_runner(steps=10**6, checkpoint_every=10, keep_checkpoints=2)
    runner.submit(cmd.RollBack("best"))
    runner.tick()
    assert any(isinstance(e, ev.WarningRaised) and "has a quality figure yet" in e.message for e in sink.drain())
    run_to(runner, 10)
    runner.run.record_checkpoint_quality(10, {"fd": 12.0})
    run_to(runner, 40)
    assert [s for s, _ in runner.run.checkpoints()] == [10, 30, 40]  # the best survives pruning
    runner.run.record_checkpoint_quality(30, {"fd": 30.0})
    runner.submit(cmd.RollBack("best"))
    runner.tick()
    assert runner.trainer.step in (10, 11)
    runner.submit(cmd.RollBack("999"))
    runner.tick()
    assert any(isinstance(e, ev.WarningRaised) and "no checkpoint '999'" in e.message for e in sink.drain())
