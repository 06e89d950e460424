"""Side work by wall time with step bounds, and the worker's share of the machine, on a fake clock."""

from __future__ import annotations

import pytest

from engine import events as ev
from engine.config import ConfigError, TrainConfig
from engine.schedule import Cadence, DutyCycle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_seconds_zero_is_the_plain_step_count_aligned_to_multiples():
    cadence = Cadence(10, 0.0, FakeClock())
    assert [s for s in range(1, 45) if cadence.due(s)] == [10, 20, 30, 40]
    cadence.mark(13)  # a request in between does not shift the multiples
    assert cadence.due(20)


def test_due_needs_both_the_seconds_and_the_steps():
    clock = FakeClock()
    grid = Cadence(50, 2.0, clock)  # "every 2 s, but no more often than every 50 steps"
    clock.now += 10.0
    assert not grid.due(49)  # time is up, too few steps (a slow machine: steps bound the cost)
    assert grid.due(50)
    grid.mark(50)
    clock.now += 1.0
    assert not grid.due(5000)  # steps are up, too little time (a GPU: time bounds the rate)
    clock.now += 1.0
    assert grid.due(5000)
    grid.mark(5000)
    assert grid.seconds_since() == 0.0


def test_a_share_spaces_costly_work_out_and_cheap_work_keeps_its_seconds():
    clock = FakeClock()
    grid = Cadence(50, 2.0, clock, share=0.02)
    grid.mark(0, cost_s=0.09)  # a 90 ms grid: 2% of the time is one every 4.5 s
    clock.now += 4.0
    assert not grid.due(1000)
    clock.now += 0.5
    assert grid.due(1000)
    grid.mark(1000, cost_s=0.001)  # a 1 ms grid (a GPU): back to every 2 s
    clock.now += 2.0
    assert grid.due(2000)
    steps_only = Cadence(10, 0.0, clock, share=0.02)
    steps_only.mark(10, cost_s=5.0)  # step counts stay exact (tests and reproducible runs)
    assert steps_only.due(20)


def test_zero_steps_is_off_and_a_jump_back_is_restarted_by_mark():
    clock = FakeClock()
    assert not Cadence(0, 0.0, clock).due(100)
    assert not Cadence(0, 1.0, clock).due(100)
    ckpt = Cadence(10, 1.0, clock)
    ckpt.mark(500)
    clock.now += 5
    assert not ckpt.due(300)  # after a rollback to 300, before mark: nothing fires backwards
    ckpt.mark(300)
    clock.now += 5
    assert ckpt.due(310)


def test_duty_cycle_rests_in_proportion_to_the_work():
    clock = FakeClock()
    cycle = DutyCycle(0.05, clock=clock, sleep=clock.sleep)
    cycle.start()
    clock.now += 0.7  # one quality measurement
    assert cycle.rest() == pytest.approx(0.7 * 19)
    clock.now += 0.2
    cycle.rest()
    assert cycle.busy_s == pytest.approx(0.9)
    assert cycle.busy_s / (cycle.busy_s + cycle.rested_s) == pytest.approx(0.05)
    cycle.hurry()
    clock.now += 1.0
    assert cycle.rest() == 0.0


def test_duty_cycle_waiting_for_work_is_not_work_and_rests_are_capped():
    clock = FakeClock()
    cycle = DutyCycle(0.5, clock=clock, sleep=clock.sleep, max_rest_s=3.0)
    clock.now += 50.0  # idle, waiting for a job
    cycle.start()
    clock.now += 1.0
    assert cycle.rest() == pytest.approx(1.0)
    cycle.start()
    clock.now += 10.0
    assert cycle.rest() == 3.0
    assert DutyCycle(1.0, clock=clock, sleep=clock.sleep).rest() == 0.0
    with pytest.raises(ValueError):
        DutyCycle(0.0)


def test_budget_fields_are_validated_and_default_to_time():
    cfg = TrainConfig()
    assert (cfg.log_every_s, cfg.sample_every_s, cfg.checkpoint_every_s) == (0.1, 2.0, 60.0)
    assert (cfg.quality_share, cfg.judge_share) == (0.05, 1.0)
    for name, value in (("sample_every_s", -1.0), ("log_every_s", float("nan")), ("checkpoint_every_s", "5"),
                        ("quality_share", 0.0), ("quality_share", 1.5), ("judge_share", -0.1)):
        with pytest.raises(ConfigError) as info:
            TrainConfig(**{name: value})
        assert info.value.field == name


def test_a_run_on_time_budgets_does_side_work_by_time_not_by_steps(make_runner):
    # Budgets far longer than the test: only the step bound could fire, and it must not on its own.
    runner, sink = make_runner(steps=60, log_every=1, log_every_s=3600.0, sample_every=1, sample_every_s=3600.0,
                               checkpoint_every=1, checkpoint_every_s=3600.0)
    while runner.tick():
        pass
    events = sink.drain()
    assert [e.step for e in events if isinstance(e, ev.SamplesGenerated)] == [0, 60]  # the start-up grid and the last
    assert [e.step for e in events if isinstance(e, ev.MetricsLogged)] == [60]  # the final record only
    assert [(e.step, e.reason) for e in events if isinstance(e, ev.CheckpointSaved)] == [(60, "final")]


def test_a_run_with_zero_budgets_keeps_exact_step_counts(make_runner):
    runner, sink = make_runner(steps=30, log_every=5, sample_every=10, checkpoint_every=15)
    while runner.tick():
        pass
    events = sink.drain()
    assert [e.step for e in events if isinstance(e, ev.SamplesGenerated)] == [0, 10, 20, 30]
    assert [e.step for e in events if isinstance(e, ev.MetricsLogged)] == [5, 10, 15, 20, 25, 30]
    saved = [(e.step, e.reason) for e in events if isinstance(e, ev.CheckpointSaved)]
    assert saved == [(15, "periodic"), (30, "periodic"), (30, "final")]


def test_the_quality_worker_is_cancellable_between_chunks_and_accepts_only_when_idle(synthetic_data):
    import torch
    from torch import nn

    from engine.evaluator import QualityWorker
    from engine.judge import JudgeCancelled

    worker = QualityWorker(synthetic_data, torch.device("cpu"), 100, 8, 0, lambda e: None, share=0.05)
    assert worker.accepting
    worker.submit(10, nn.Linear(8, 784))  # not started: the snapshot waits in the queue
    assert not worker.accepting
    worker._between_chunks(nn.Identity(), ())  # open: returns (and rests only while readying)
    worker.close()
    assert not worker.accepting
    with pytest.raises(JudgeCancelled):
        worker._between_chunks(nn.Identity(), ())  # a run that ended stops the judge at its next chunk
