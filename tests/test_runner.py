"""The runner, driven deterministically with tick() (no thread) except where the thread is the point."""

import json
import threading
import time

import numpy as np
import torch

from engine import commands as cmd
from engine import events as ev
from engine.config import TrainConfig
from engine.runs import read_grid_png


def kinds(events):
    return [type(e).__name__ for e in events]


def test_startup_events_then_metrics_samples_and_checkpoints_in_order(make_runner):
    runner, sink = make_runner(steps=20)
    while runner.tick():
        pass
    events = sink.drain()
    names = kinds(events)
    assert names[:4] == ["RunStarted", "StateChanged", "SamplesGenerated", "MetricsLogged"]
    assert names[-3:] == ["CheckpointSaved", "StateChanged", "RunFinished"]
    metrics = [e for e in events if isinstance(e, ev.MetricsLogged)]
    assert [m.step for m in metrics] == [5, 10, 15, 20]
    assert all(m.images_per_s > 0 and np.isfinite(m.d_loss) for m in metrics)
    samples = [e for e in events if isinstance(e, ev.SamplesGenerated)]
    assert [s.step for s in samples] == [0, 10, 20]
    assert isinstance(samples[-1].images, np.ndarray) and samples[-1].images.dtype == np.uint8
    assert events[-1].state == ev.RunState.FINISHED
    # The grid PNG on disk decodes to exactly the images that were posted.
    assert np.array_equal(read_grid_png(samples[-1].path, 16), samples[-1].images)
    # Every log line is one JSON object with the metrics keys.
    for line in runner.run.metrics_path.read_text().splitlines():
        record = json.loads(line)
        assert {"step", "d_loss", "g_loss", "images_per_s"} <= set(record)


def test_pause_stops_steps_single_step_moves_one_resume_goes_on(make_runner):
    runner, sink = make_runner()
    runner.tick()
    runner.submit(cmd.Pause())
    runner.tick()
    paused_at = runner.trainer.step
    for _ in range(5):
        runner.tick()
    assert runner.trainer.step == paused_at and runner.state == ev.RunState.PAUSED
    runner.submit(cmd.Step())
    runner.tick()
    runner.tick()
    assert runner.trainer.step == paused_at + 1
    runner.submit(cmd.Resume())
    runner.tick()
    runner.tick()
    assert runner.trainer.step == paused_at + 3
    states = [e.state for e in sink.drain() if isinstance(e, ev.StateChanged)]
    assert states == [ev.RunState.RUNNING, ev.RunState.PAUSED, ev.RunState.RUNNING]


def test_set_hyperparams_reaches_the_optimizers_at_once_and_is_logged(make_runner):
    runner, sink = make_runner()
    runner.tick()
    runner.submit(cmd.SetHyperparams({"lr_g": 1e-5, "lr_d": 3e-5, "beta1": 0.1, "d_steps": 2}))
    runner.tick()
    assert runner.trainer.opt_g.param_groups[0]["lr"] == 1e-5
    assert runner.trainer.opt_d.param_groups[0]["lr"] == 3e-5
    assert runner.trainer.opt_g.param_groups[0]["betas"] == (0.1, 0.999)
    assert runner.cfg.d_steps == 2
    runner.settle()
    changed = [e for e in sink.drain() if isinstance(e, ev.HyperparamsChanged)]
    assert len(changed) == 1 and changed[0].step == 1
    assert changed[0].old["lr_g"] == TrainConfig().lr_g and changed[0].new["lr_g"] == 1e-5
    logged = [json.loads(l) for l in runner.run.metrics_path.read_text().splitlines()]
    assert any(r["type"] == "hparams" and r["new"]["lr_d"] == 3e-5 and r["step"] == 1 for r in logged)


def test_invalid_hyperparams_change_nothing_and_warn(make_runner):
    runner, sink = make_runner()
    runner.tick()
    for bad in ({"lr_g": -1.0}, {"lr_d": float("nan")}, {"beta2": 1.5}, {"preset": "mlp"}, {"d_steps": "x"}):
        runner.submit(cmd.SetHyperparams(bad))
    runner.tick()
    assert runner.trainer.opt_g.param_groups[0]["lr"] == TrainConfig().lr_g
    events = sink.drain()
    assert not any(isinstance(e, ev.HyperparamsChanged) for e in events)
    warnings = [e for e in events if isinstance(e, ev.WarningRaised)]
    assert len(warnings) == 5 and all("not changed" in w.message for w in warnings)


def test_save_and_export_write_files_and_report_paths(make_runner, tmp_path):
    runner, sink = make_runner()
    runner.tick()
    runner.submit(cmd.SaveCheckpoint())
    runner.submit(cmd.ExportSamples("out.png"))
    runner.submit(cmd.SampleFresh(seed=12345))
    runner.tick()
    runner.settle()  # the writes happen on the journal's thread; their events follow once done
    events = sink.drain()
    saved = next(e for e in events if isinstance(e, ev.CheckpointSaved))
    exported = next(e for e in events if isinstance(e, ev.SamplesExported))
    fresh = next(e for e in events if isinstance(e, ev.SamplesGenerated) and not e.fixed)
    assert saved.reason == "requested" and torch.load(saved.path, weights_only=True)["trainer"]["step"] == saved.step
    grid = read_grid_png(exported.path, 16)
    fixed = [e for e in events if isinstance(e, ev.SamplesGenerated) and e.fixed][-1]
    assert np.array_equal(grid, fixed.images) and not np.array_equal(fresh.images, fixed.images)
    assert exported.path == str(runner.run.exports_dir / "out.png")


def test_stop_wins_and_saves(make_runner):
    runner, sink = make_runner()
    runner.tick()
    runner.submit(cmd.Pause())
    runner.submit(cmd.Stop())
    runner.submit(cmd.Resume())
    assert runner.tick() is False
    events = sink.drain()
    assert kinds(events)[-3:] == ["CheckpointSaved", "StateChanged", "RunFinished"]
    assert events[-1].state == ev.RunState.STOPPED
    assert runner.run.latest_checkpoint() is not None


def test_a_change_sent_just_before_a_stop_reaches_the_final_checkpoint(make_runner):
    from engine.checkpoint import load_checkpoint

    runner, sink = make_runner()
    runner.tick()
    runner.submit(cmd.SetHyperparams({"lr_g": 4e-4}))
    runner.submit(cmd.Stop())
    runner.submit(cmd.SetHyperparams({"lr_d": 4e-4}))  # after the stop: moot
    assert runner.tick() is False
    changed = [e for e in sink.drain() if isinstance(e, ev.HyperparamsChanged)]
    assert len(changed) == 1 and changed[0].new["lr_g"] == 4e-4
    final = load_checkpoint(runner.run.latest_checkpoint())
    assert final["config"]["lr_g"] == 4e-4 and final["config"]["lr_d"] != 4e-4


def test_exception_in_training_is_an_error_event_a_checkpoint_and_a_clean_stop(make_runner, monkeypatch):
    runner, sink = make_runner()
    runner.tick()
    monkeypatch.setattr(runner.trainer, "train_step", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert runner.tick() is False
    events = sink.drain()
    error = next(e for e in events if isinstance(e, ev.ErrorRaised))
    assert "boom" in error.message and "Traceback" in error.traceback
    assert "boom" in runner.run.error_path.read_text()
    assert (events[-1].step, events[-1].state, events[-1].run_dir) == (1, ev.RunState.FAILED, str(runner.run.path))
    assert runner.run.latest_checkpoint() is not None


def test_a_broken_consumer_never_stops_training(make_runner, capsys):
    runner, _ = make_runner()
    runner.record.sink = lambda event: 1 / 0
    for _ in range(10):
        assert runner.tick()
    assert runner.trainer.step == 10


def test_full_disk_on_save_is_a_warning_and_training_goes_on(make_runner, monkeypatch):
    import engine.checkpoint as ck

    runner, sink = make_runner()
    runner.tick()

    def full_disk(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full_disk)
    runner.submit(cmd.SaveCheckpoint())
    assert runner.tick()
    warning = next(e for e in sink.drain() if isinstance(e, ev.WarningRaised))
    assert "NOT saved" in warning.message and "No space left" in warning.message
    assert list(runner.run.checkpoints_dir.iterdir()) == []  # no half-written temporary file left


def test_thread_paused_runner_blocks_on_its_queue_and_obeys_commands(tmp_path, synthetic_data):
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config

    sink = QueueSink()
    runner = Runner(tiny_config(steps=10**6), sink, runs_dir=tmp_path, run_name="t", data=synthetic_data)
    runner.start()
    sink.wait_for(ev.MetricsLogged)
    runner.submit(cmd.Pause())
    sink.wait_for(ev.StateChanged)
    step = runner.trainer.step
    time.sleep(0.3)
    assert runner.trainer.step == step
    waiting = [t for t in threading.enumerate() if t.name == "gan-tui-trainer"][0]
    assert waiting.is_alive()
    runner.submit(cmd.Resume())
    sink.wait_for(ev.MetricsLogged)
    runner.submit(cmd.Stop())
    assert runner.join(30)
    assert runner.trainer.step > step


def _slow_checkpoints(write, seconds: float):
    """journal.atomic_write, with checkpoint files taking `seconds` to land (training moves on meanwhile)."""

    def slow(path, content) -> None:
        if path.name.startswith("step_") and path.suffix == ".pt":
            time.sleep(seconds)
        write(path, content)

    return slow


class _QualityRecorder:
    """Stands in for the quality worker: the weights it was asked to measure, by step."""

    failed = ""
    ready = False
    judge_progress = None

    def __init__(self) -> None:
        self.sent: dict[int, dict[str, torch.Tensor]] = {}

    def submit(self, step, generator, keep=False) -> None:
        self.sent[step] = {k: v.clone() for k, v in generator.state_dict().items()}

    def invalidate(self) -> None:
        pass

    def close(self, timeout: float = 5.0) -> None:
        pass


def test_a_checkpoints_quality_is_measured_on_the_weights_it_holds(make_runner, monkeypatch):
    """The copy for a checkpoint's measurement is taken as it is saved, not once its file has landed
    (steps later): quality.json, the best checkpoint and a rollback to best rank what the files hold."""
    import engine.journal as journal
    from engine.checkpoint import load_checkpoint

    runner, _ = make_runner(steps=60)
    runner.monitor.quality = recorder = _QualityRecorder()
    write = journal.atomic_write
    monkeypatch.setattr(journal, "atomic_write", _slow_checkpoints(write, 0.2))
    while runner.trainer.step < 45:
        runner.tick()
    runner.settle()
    for step in (20, 40):
        held = load_checkpoint(runner.run.checkpoint_path(step))["trainer"]["generator_ema"]
        assert all(torch.equal(held[k], recorder.sent[step][k]) for k in held), step


def test_a_save_asked_for_after_a_change_is_written_even_while_the_steps_periodic_one_is_in_flight(make_runner, monkeypatch):
    import engine.journal as journal
    from engine.checkpoint import load_checkpoint

    runner, sink = make_runner(steps=1000)
    write = journal.atomic_write
    monkeypatch.setattr(journal, "atomic_write", _slow_checkpoints(write, 0.3))
    while runner.trainer.step < 20:
        runner.tick()  # the periodic checkpoint of step 20 is now on its way to the disk
    runner.submit(cmd.Pause())
    runner.submit(cmd.SetHyperparams({"lr_g": 4e-4}))
    runner.submit(cmd.SaveCheckpoint())
    runner.tick()
    runner.settle()
    saved = [e for e in sink.drain() if isinstance(e, ev.CheckpointSaved)]
    assert [e.reason for e in saved if e.step == 20] == ["periodic", "requested"]
    payload = load_checkpoint(runner.run.checkpoint_path(20))
    assert payload["config"]["lr_g"] == 4e-4 and payload["hparam_history"][-1]["new"]["lr_g"] == 4e-4
