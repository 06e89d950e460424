"""A new user's first hour (issue 25), engine side: the judge's work is never lost, a fallback says why."""

from __future__ import annotations

import json
import time

from engine import events as ev
from tests.conftest import tiny_config


def test_a_fallback_run_records_the_dataset_it_really_trains_on(monkeypatch, tmp_path, make_runner):
    import engine.data as data_mod

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(*_args):
        raise OSError("Name or service not known")

    monkeypatch.setattr(data_mod, "_download", no_network)
    from engine.record import QueueSink
    from engine.runner import Runner

    sink = QueueSink()
    runner = Runner(tiny_config(dataset="kmnist", steps=5), sink, runs_dir=tmp_path / "runs", run_name="fallback")
    runner.setup()
    runner.settle()
    started = next(e for e in sink.drain() if isinstance(e, ev.RunStarted))
    assert started.config["dataset"] == "synthetic" and "--data-root" in started.dataset_note
    assert json.loads(runner.run.config_path.read_text())["dataset"] == "synthetic"
    runner.abandon()


def test_a_run_that_ends_before_its_judge_is_ready_says_so_and_keeps_the_judges_training(make_runner, tmp_path,
                                                                                          mnist_data):
    """The judge trains on the real t10k digits (minutes on 2 cores); the run stops after its first epoch
    began: the log and a warning say why there is no quality figure, and the next run continues."""
    from engine import commands as cmd

    cache = tmp_path / "judges"
    runner, sink = make_runner(data=mnist_data, judge_cache=cache, quality_every=10, steps=10**6)
    events: list[ev.Event] = []
    deadline = time.monotonic() + 300
    while not any(isinstance(e, ev.JudgeProgress) for e in events) and time.monotonic() < deadline:
        runner.tick()  # the worker's events reach the sink through the training thread's queue
        events += sink.drain()
    seen = next(e for e in events if isinstance(e, ev.JudgeProgress))
    assert seen.epoch == 1 and seen.resumed == 0
    runner.submit(cmd.Stop(save=False))
    while runner.tick():
        pass
    events += sink.drain()
    warning = next(e for e in events if isinstance(e, ev.WarningRaised) and e.kind == "judge")
    assert "ended before its quality judge was ready" in warning.message and "next run" in warning.message
    runner.settle()
    records = [json.loads(line) for line in runner.run.metrics_path.read_text().splitlines()]
    assert any(r["type"] == "judge_unfinished" for r in records)
