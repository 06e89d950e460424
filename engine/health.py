"""Health alarms: what the losses hide, raised once when a condition starts and cleared when it ends.

    monitor = HealthMonitor(cfg)
    for change in monitor.on_metrics(metrics_event): ...   # AlarmRaised / AlarmCleared
    for change in monitor.on_quality(quality_event): ...

Kinds:
- nonfinite: a loss or gradient became NaN/inf (the runner pauses and offers a rollback);
- d_wins: D(real) >= 1 - margin and D(fake) <= margin for alarm_window steps in a row (bce's
  probabilities, lsgan's 1/0 targets); for hinge, whose raw scores pass +-1 in healthy runs, D's
  loss at most 2 x margin (nearly every image past its margin: D has stopped learning); not for
  wgan-gp, whose critic has no such scale;
- grad_spike: a gradient norm above alarm_grad_spike times its median over recent records;
- collapse: classes covered falls alarm_coverage_drop below the run's best, or diversity below
  alarm_diversity_drop of its best (both relative, so a young generator's blobs do not count).
Thresholds are config fields. Pure: no clock, no I/O; the runner logs and posts what it returns.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from engine import events as ev
from engine.config import TrainConfig

Change = ev.AlarmRaised | ev.AlarmCleared
_SPIKE_HISTORY = 20  # records in the running median of each gradient norm
_SPIKE_WARMUP = 5  # records before a spike can be judged at all


class HealthMonitor:
    """Turns metrics and quality records into alarm transitions; `active` holds the alarms now on."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.active: dict[str, ev.AlarmRaised] = {}
        self._d_wins_since: int | None = None
        self._norms: dict[str, deque[float]] = {"D": deque(maxlen=_SPIKE_HISTORY), "G": deque(maxlen=_SPIKE_HISTORY)}
        self._best_covered = 0
        self._best_diversity = 0.0

    # ------------------------------------------------------------------ API
    def on_metrics(self, m: ev.MetricsLogged) -> list[Change]:
        """Judge one metrics record."""
        values = (m.d_loss, m.g_loss, m.grad_norm_d, m.grad_norm_g)
        if not all(math.isfinite(v) for v in values):
            return self._set("nonfinite", m.step, True, f"loss or gradient became NaN/inf before step {m.step}; "
                             "training is paused. Roll back to the last good checkpoint (dashboard: u, or U with lower learning rates).")
        changes = self._set("nonfinite", m.step, False)
        changes += self._judge_d_wins(m)
        changes += self._judge_spike(m)
        return changes

    def on_quality(self, q: ev.QualityMeasured) -> list[Change]:
        """Judge one quality measurement."""
        cfg = self.cfg
        self._best_covered = max(self._best_covered, q.classes_covered)
        self._best_diversity = max(self._best_diversity, q.diversity)
        reasons = []
        if q.classes_covered <= self._best_covered - cfg.alarm_coverage_drop:
            reasons.append(f"classes covered fell to {q.classes_covered} (best {self._best_covered})")
        if q.diversity < cfg.alarm_diversity_drop * self._best_diversity:
            reasons.append(f"diversity fell to {q.diversity:.2f} (best {self._best_diversity:.2f})")
        message = f"mode collapse at step {q.step}: {'; '.join(reasons)}"
        return self._set("collapse", q.step, bool(reasons), message)

    def clear_all(self, step: int) -> list[Change]:
        """After a rollback the conditions describe weights that are gone."""
        changes: list[Change] = [ev.AlarmCleared(step, kind) for kind in self.active]
        self.active.clear()
        self._d_wins_since = None
        for history in self._norms.values():
            history.clear()
        return changes

    # -------------------------------------------------------------- helpers
    def _judge_d_wins(self, m: ev.MetricsLogged) -> list[Change]:
        margin, loss = self.cfg.alarm_d_margin, self.cfg.loss
        if loss == "hinge":
            winning = m.d_loss <= 2 * margin  # 2 at chance, 0 when every score is past its margin
        else:
            winning = loss != "wgan-gp" and m.d_real >= 1 - margin and m.d_fake <= margin
        if not winning:
            self._d_wins_since = None
            return self._set("d_wins", m.step, False)
        if self._d_wins_since is None:
            self._d_wins_since = m.step - self.cfg.log_every  # the record covers the interval before it
        sustained = m.step - self._d_wins_since >= self.cfg.alarm_window
        why = (f"its hinge loss is {m.d_loss:.3f}, nearly every image past its margin, so D has stopped learning"
               if loss == "hinge" else "the generator gets no useful gradient")
        message = (f"the discriminator is winning outright since step {self._d_wins_since}: D(real) {m.d_real:.3f}, "
                   f"D(fake) {m.d_fake:.3f}; {why}. Lower lr_d or raise lr_g.")
        return self._set("d_wins", m.step, True, message) if sustained else []

    def _judge_spike(self, m: ev.MetricsLogged) -> list[Change]:
        spikes = []
        for net, norm in (("D", m.grad_norm_d), ("G", m.grad_norm_g)):
            history = self._norms[net]
            if len(history) >= _SPIKE_WARMUP:
                median = statistics.median(history)
                if median > 0 and norm > self.cfg.alarm_grad_spike * median:
                    spikes.append(f"{net}'s gradient norm jumped to {norm:.3g} ({norm / median:.0f}x its recent median {median:.3g})")
                    continue  # a spike stays out of the median it is judged against
            history.append(norm)
        message = f"exploding gradients at step {m.step}: {'; '.join(spikes)}. Lower the learning rates."
        return self._set("grad_spike", m.step, bool(spikes), message)

    def _set(self, kind: str, step: int, on: bool, message: str = "") -> list[Change]:
        if on and kind not in self.active:
            self.active[kind] = ev.AlarmRaised(step, kind, message)
            return [self.active[kind]]
        if not on and kind in self.active:
            del self.active[kind]
            return [ev.AlarmCleared(step, kind)]
        return []
