"""Health alarms: each fires on a constructed case, once, and clears; none fires on a healthy run."""

from __future__ import annotations

import math

import torch

from engine import commands as cmd
from engine import events as ev
from engine.health import HealthMonitor
from tests.conftest import tiny_config


def metrics(step, d_real=0.6, d_fake=0.4, gd=1.0, gg=1.0, d_loss=1.2):
    return ev.MetricsLogged(step, 0.0, d_loss, 0.9, d_real, d_fake, gg, gd, 1e-3, 1e-3, 1000.0, 1.0)


def quality(step, covered=10, diversity=1.0):
    return ev.QualityMeasured(step, 20.0, 8.0, 1000, (0.1,) * 10, covered, 0.01, 0.9, diversity)


def feed(monitor, records):
    changes = []
    for record in records:
        on = monitor.on_quality if isinstance(record, ev.QualityMeasured) else monitor.on_metrics
        changes += on(record)
    return [(type(c).__name__, c.kind, c.step) for c in changes]


def test_d_wins_fires_once_after_the_window_and_clears():
    monitor = HealthMonitor(tiny_config(loss="bce", log_every=20, alarm_window=100))
    winning = [metrics(s, d_real=0.99, d_fake=0.01) for s in range(20, 400, 20)]
    changes = feed(monitor, [metrics(0), *winning, metrics(400)])
    assert changes == [("AlarmRaised", "d_wins", 100), ("AlarmCleared", "d_wins", 400)]


def test_a_hinge_d_wins_by_its_loss_not_by_scores_past_one():
    monitor = HealthMonitor(tiny_config(loss="hinge", log_every=20, alarm_window=100))
    healthy = [metrics(s, d_real=1.46, d_fake=-1.16, d_loss=0.6) for s in range(20, 400, 20)]
    assert feed(monitor, healthy) == []  # raw hinge scores pass +-1 in healthy runs
    won = [metrics(s, d_real=3.0, d_fake=-3.0, d_loss=0.02) for s in range(400, 800, 20)]
    assert feed(monitor, won) == [("AlarmRaised", "d_wins", 480)]
    assert "hinge loss is 0.020" in monitor.active["d_wins"].message


def test_d_wins_is_not_judged_for_a_wgan_critic():
    monitor = HealthMonitor(tiny_config(loss="wgan-gp", alarm_window=20))
    assert feed(monitor, [metrics(s, d_real=1.0, d_fake=0.0) for s in range(5, 500, 5)]) == []


def test_a_gradient_spike_fires_once_and_stays_out_of_the_median():
    monitor = HealthMonitor(tiny_config())
    calm = [metrics(s, gd=1.0 + 0.01 * (s % 3)) for s in range(5, 55, 5)]
    changes = feed(monitor, [*calm, metrics(55, gd=50.0), metrics(60, gd=60.0), metrics(65, gd=1.0)])
    assert changes == [("AlarmRaised", "grad_spike", 55), ("AlarmCleared", "grad_spike", 65)]
    feed(monitor, [metrics(70, gd=80.0)])
    assert "D's gradient norm jumped to 80" in monitor.active["grad_spike"].message
    assert "median 1.01" in monitor.active["grad_spike"].message  # the spikes of 50 and 60 did not count


def test_collapse_fires_on_lost_classes_or_lost_diversity_relative_to_the_best():
    monitor = HealthMonitor(tiny_config())
    young = [quality(100, covered=3, diversity=0.3), quality(200, covered=9, diversity=0.9)]
    assert feed(monitor, young) == []  # early blobs are not a collapse
    assert feed(monitor, [quality(300, covered=7)]) == [("AlarmRaised", "collapse", 300)]
    assert feed(monitor, [quality(400, covered=6)]) == []  # not repeated
    assert feed(monitor, [quality(500, covered=10)]) == [("AlarmCleared", "collapse", 500)]
    changes = feed(monitor, [quality(600, covered=10, diversity=0.4)])
    assert changes == [("AlarmRaised", "collapse", 600)] and "diversity" in monitor.active["collapse"].message


def test_nonfinite_metrics_fire_and_clear():
    monitor = HealthMonitor(tiny_config())
    assert feed(monitor, [metrics(5, d_loss=math.nan)]) == [("AlarmRaised", "nonfinite", 5)]
    assert feed(monitor, [metrics(10, d_loss=math.inf)]) == []
    assert feed(monitor, [metrics(15)]) == [("AlarmCleared", "nonfinite", 15)]


# ------------------------------------------------------------- real runs
def alarms_of(events):
    return [e for e in events if isinstance(e, ev.AlarmRaised)]


def test_a_nan_injected_in_a_step_pauses_at_once_with_an_alarm_and_no_bad_checkpoint(make_runner):
    runner, sink = make_runner(log_every=1)
    runner.tick()
    with torch.no_grad():
        next(runner.trainer.D.parameters()).view(-1)[0] = float("nan")
    runner.tick()
    assert runner.state == ev.RunState.PAUSED
    (alarm,) = alarms_of(sink.drain())
    assert alarm.kind == "nonfinite" and "roll back" in alarm.message.lower()
    runner.settle()  # log lines are written by the run's journal thread
    assert runner.run.latest_checkpoint() is None
    log = runner.run.read_log()
    assert any(r["type"] == "alarm" and r["kind"] == "nonfinite" for r in log)
    assert [p for p in runner.trainer.G.parameters() if not torch.isfinite(p).all()] == []  # the update was skipped


def test_a_discriminator_forced_to_win_raises_d_wins_once(make_runner):
    runner, sink = make_runner(steps=400, lr_g=1e-6, lr_d=1e-2, alarm_window=60, checkpoint_every=0, sample_every=1000)
    while runner.tick():
        pass
    alarms = alarms_of(sink.drain())
    assert [a.kind for a in alarms] == ["d_wins"]
    assert "winning outright" in alarms[0].message


def test_a_healthy_short_run_raises_no_alarm(make_runner):
    runner, sink = make_runner(steps=300, g_hidden=(64,), d_hidden=(64,), latent_dim=16, batch_size=32,
                               checkpoint_every=0, sample_every=1000)
    while runner.tick():
        pass
    assert alarms_of(sink.drain()) == []


def test_a_generator_forced_to_collapse_raises_collapse(make_runner, mnist_data, mnist_judge, judge_cache):
    runner, sink = make_runner(data=mnist_data, judge_cache=judge_cache, steps=10**6, quality_every=20,
                               quality_samples=400, checkpoint_every=0, sample_every=1000)
    for _ in range(40):
        runner.tick()
    assert runner.quality.wait_idle(120)
    runner.tick()
    with torch.no_grad():  # every z now maps to one image
        for net in (runner.trainer.G, runner.trainer.G_ema):
            next(net.parameters()).zero_()
    for _ in range(20):
        runner.tick()
    assert runner.quality.wait_idle(120)
    runner.tick()
    events = sink.drain()
    measured = [e for e in events if isinstance(e, ev.QualityMeasured)]
    assert measured[-1].step == 60 and len(measured) >= 2  # a snapshot waiting for the judge is replaced by a newer one
    assert measured[-1].diversity < 0.05
    assert [a.kind for a in alarms_of(events)] == ["collapse"]
    runner.submit(cmd.Stop(save=False))
    runner.tick()
