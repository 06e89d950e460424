"""Checkpoints: exact resume, atomic writes, clear errors."""

import numpy as np
import pytest
import torch

from engine import commands as cmd
from engine import events as ev
from engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from engine.events import RunFinished, RunState, StateChanged
from engine.runs import RunError


def run_steps(runner, n):
    target = runner.trainer.step + n
    while runner.trainer.step < target:
        assert runner.tick()


def weights(runner):
    state = {}
    for name, module in (("G", runner.trainer.G), ("D", runner.trainer.D)):
        state.update({f"{name}.{k}": v.clone() for k, v in module.state_dict().items()})
    return state


@pytest.mark.parametrize("preset", ["mlp-small", "mlp-dropout", "dcgan-small"])
def test_n_steps_save_resume_n_steps_equals_2n_straight(make_runner, preset):
    changes = dict(preset=preset, g_hidden=(), d_hidden=(), steps=1000, checkpoint_every=0)
    straight, _ = make_runner(run_name="straight", **changes)
    run_steps(straight, 24)

    first, _ = make_runner(run_name="split", **changes)
    run_steps(first, 12)
    first.submit(cmd.Stop(save=True))
    first.tick()
    second, _ = make_runner(resume=str(first.run.path), **changes)
    assert second.trainer.step == 12
    run_steps(second, 12)

    a, b = weights(straight), weights(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for opt in ("opt_g", "opt_d"):
        sa, sb = getattr(straight.trainer, opt).state_dict(), getattr(second.trainer, opt).state_dict()
        for idx in sa["state"]:
            assert torch.equal(sa["state"][idx]["exp_avg"], sb["state"][idx]["exp_avg"])
    assert torch.equal(straight.trainer.fixed_noise, second.trainer.fixed_noise)


def test_resume_restores_hyperparam_history_and_rolls_the_log_back(make_runner):
    runner, _ = make_runner(steps=1000, checkpoint_every=0)
    run_steps(runner, 5)
    runner.submit(cmd.SetHyperparams({"lr_g": 1e-4}))
    runner.submit(cmd.SaveCheckpoint())
    run_steps(runner, 10)  # these steps are after the checkpoint and will be lost
    runner.abandon()  # as if the process were killed here: its folder is free for a resume
    resumed, sink = make_runner(resume="latest", lr_g=1e-4, steps=1000, checkpoint_every=0)
    assert resumed.trainer.step == 5
    assert resumed.hparam_history == [{"step": 5, "old": runner.hparam_history[0]["old"], "new": runner.hparam_history[0]["new"]}]
    assert resumed.trainer.opt_g.param_groups[0]["lr"] == 1e-4
    resumed.settle()
    records = resumed.run.read_log()
    assert max(r["step"] for r in records) == 5
    resumed_record = next(r for r in records if r["type"] == "resumed")
    assert resumed_record["lost_steps"] == 10 and records[-1]["type"] == "warning"
    warning = [e for e in sink.drain() if type(e).__name__ == "WarningRaised"][0]
    assert "10 steps" in warning.message


def test_a_resume_sets_aside_the_grids_of_the_lost_steps_and_a_viewer_forgets_them(make_runner):
    """The steps after the checkpoint are drawn again: their old grids go to samples/abandoned/, and a
    viewer that followed the run through the kill drops them too (it showed them as the newest)."""
    from tui_gan.state import DashboardState

    runner, sink = make_runner(steps=1000, checkpoint_every=0, sample_every=2, sample_every_s=0.0)
    run_steps(runner, 4)
    runner.submit(cmd.SaveCheckpoint())
    run_steps(runner, 6)
    runner.settle()
    viewer = DashboardState()
    for event in sink.drain():
        viewer.apply(event)
    assert max(g.step for g in viewer.grids) > 4 and max(s for s, _ in runner.run.sample_grids()) > 4
    runner.abandon()
    viewer.apply(StateChanged(RunState.INTERRUPTED, 10, "connection lost"))  # as the viewer's link says it
    resumed, sink = make_runner(resume="latest", steps=1000, checkpoint_every=0, sample_every=2, sample_every_s=0.0)
    resumed.settle()
    assert [s for s, _ in resumed.run.sample_grids()] == [0, 2, 4]
    assert sorted(p.name for p in (resumed.run.samples_dir / "abandoned").iterdir()) == [
        "step_00000006.png", "step_00000008.png", "step_00000010.png"]
    events = sink.drain()
    for event in events:
        viewer.apply(event)
    assert [g.step for g in viewer.grids] == [0, 2, 4]
    resumed.run.save_grid(6, np.zeros((4, 28, 28), dtype=np.uint8))  # drawn again (then set aside again, below)
    viewer.apply(ev.SamplesGenerated(6, np.zeros((4, 28, 28), dtype=np.uint8), True, str(resumed.run.grid_path(6))))
    viewer.apply(next(e for e in events if isinstance(e, ev.RunStarted)))  # sent again to a viewer that connects
    assert [g.step for g in viewer.grids] == [0, 2, 4, 6]  # no news: nothing forgotten
    resumed.run.abandon_grids_after(4)
    assert (resumed.run.samples_dir / "abandoned" / "step_00000006.1.png").is_file()  # the first one is kept


def test_a_change_made_after_the_checkpoint_is_recorded_when_the_resume_goes_on_with_it(make_runner):
    """config.json holds a learning rate set after the newest checkpoint (the log's record of it is set
    aside with the lost steps): the resumed run trains with it and its history says so."""
    runner, _ = make_runner(steps=1000, checkpoint_every=0)
    run_steps(runner, 5)
    runner.submit(cmd.SaveCheckpoint())
    run_steps(runner, 3)
    runner.submit(cmd.SetHyperparams({"lr_g": 4e-4}))
    run_steps(runner, 3)
    old = runner.hparam_history[0]["old"]
    runner.abandon()
    resumed, sink = make_runner(resume="latest", lr_g=4e-4, steps=1000, checkpoint_every=0)
    assert resumed.trainer.step == 5 and resumed.trainer.opt_g.param_groups[0]["lr"] == 4e-4
    assert resumed.hparam_history == [{"step": 5, "old": old, "new": {**old, "lr_g": 4e-4}, "reason": "resume"}]
    events = sink.drain()
    started = next(i for i, e in enumerate(events) if isinstance(e, ev.RunStarted))
    changed = next(i for i, e in enumerate(events) if isinstance(e, ev.HyperparamsChanged))
    assert changed > started and events[changed].new["lr_g"] == 4e-4
    resumed.settle()
    assert any(r["type"] == "hparams" and r["step"] == 5 and r.get("reason") == "resume" for r in resumed.run.read_log())
    resumed.abandon()
    again, _ = make_runner(resume="latest", steps=1000, checkpoint_every=0)  # the checkpoint's own values
    assert again.hparam_history == []


def test_a_failure_inside_a_step_saves_no_torn_state_over_the_checkpoint_it_resumed_from(make_runner, monkeypatch):
    """Out of memory after D's update: D, its optimizer and the batch RNG have moved, G has not. That
    state is no step's: the checkpoint it resumed from stays byte for byte, and the message names it."""
    import engine.trainer

    runner, _ = make_runner(steps=1000, checkpoint_every=0)
    run_steps(runner, 5)
    runner.submit(cmd.SaveCheckpoint())
    run_steps(runner, 1)
    runner.settle()
    runner.abandon()
    resumed, sink = make_runner(resume="latest", steps=1000, checkpoint_every=0)
    path = resumed.run.checkpoint_path(5)
    before = path.read_bytes()

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine.trainer, "g_loss", out_of_memory)
    assert resumed.tick() is False
    assert path.read_bytes() == before and resumed.run.latest_checkpoint() == path
    error = next(e for e in sink.drain() if isinstance(e, ev.ErrorRaised))
    assert "ran out of memory" in error.message and "step_00000005.pt" in error.message, error.message


def test_out_of_memory_in_the_first_step_says_to_start_again_not_to_resume(make_runner, monkeypatch):
    import engine.trainer

    runner, sink = make_runner(steps=1000, checkpoint_every=0)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine.trainer, "g_loss", out_of_memory)
    assert runner.tick() is False
    error = next(e for e in sink.drain() if isinstance(e, ev.ErrorRaised))
    assert "start the run again" in error.message and "--resume" not in error.message, error.message
    assert runner.run.latest_checkpoint() is None


def test_checkpoint_loads_weights_only_and_holds_everything(make_runner):
    runner, _ = make_runner()
    run_steps(runner, 3)
    runner.submit(cmd.SaveCheckpoint())
    runner.tick()
    runner.settle()
    payload = torch.load(runner.run.latest_checkpoint(), weights_only=True)
    assert {"config", "trainer", "hparam_history", "format"} <= set(payload)
    assert {"generator", "discriminator", "opt_g", "opt_d", "step", "fixed_noise", "rng"} <= set(payload["trainer"])


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"config": {}, "trainer": {"x": torch.ones(3)}, "hparam_history": []})

    def broken(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        save_checkpoint(path, {"config": {}, "trainer": {"x": torch.zeros(3)}, "hparam_history": []})
    assert torch.equal(load_checkpoint(path)["trainer"]["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_corrupt_truncated_and_foreign_checkpoints_are_named(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"config": {}, "trainer": {"x": torch.ones(1000)}, "hparam_history": []})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    for path, message in ((truncated, "corrupt or truncated"), (garbage, "is corrupt"), (foreign, "not a gan-tui checkpoint")):
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "config": {}, "trainer": Evil(), "hparam_history": []}, path)
    with pytest.raises(CheckpointError, match="not a checkpoint gan-tui wrote") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value) and "safe_globals" not in str(info.value)  # no advice to run its code
    assert "GLOBAL print" in str(info.value)  # torch's finding is kept


def test_resume_with_another_preset_or_a_missing_run_is_a_clear_error(make_runner, tmp_path):
    runner, _ = make_runner()
    runner.submit(cmd.Stop())
    runner.tick()
    with pytest.raises(CheckpointError, match="preset 'mlp-small'.*asked for 'mlp'"):
        make_runner(resume=str(runner.run.path), preset="mlp", g_hidden=(), d_hidden=())
    with pytest.raises(RunError, match="does not exist"):
        make_runner(resume=str(tmp_path / "nope"))


def test_corrupt_latest_checkpoint_fails_setup_with_a_message(make_runner, synthetic_data, tmp_path):
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config

    runner, _ = make_runner()
    runner.submit(cmd.Stop())
    runner.tick()
    runner.run.latest_checkpoint().write_bytes(b"\x00" * 10)
    sink = QueueSink()
    failing = Runner(tiny_config(), sink, runs_dir=tmp_path / "runs", resume="latest", data=synthetic_data)
    failing.run_forever()
    events = sink.drain()
    assert "corrupt or truncated" in events[0].message
    assert isinstance(events[-1], RunFinished) and events[-1].state == RunState.FAILED
    assert not any(isinstance(e, StateChanged) and e.state == RunState.RUNNING for e in events)
