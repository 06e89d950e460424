"""Live D and G losses (textual-plotext): raw values faint behind an EMA, markers at changes.

The pure functions (ema, downsample, step_ticks) shape the data; the widget only draws. Points
are always downsampled to the widget's width, so a run of any length costs the same to draw. The
view options (log scale, smoothing, window) are reactives: setting one redraws.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tui_gan.state import SMOOTHING_LEVELS, MetricsHistory

RECENT_POINTS = 300  # "recent" window: the last this many metrics records

_RAW_COLOURS = {"D": (70, 90, 150), "G": (150, 80, 70)}
_SMOOTH_COLOURS = {"D": (90, 160, 255), "G": (255, 120, 90)}
MARKER_COLOUR = (200, 200, 80)


def ema(values: Sequence[float], alpha: float) -> np.ndarray:
    """Exponential moving average with weight `alpha` on the past (0 = raw); NaNs are skipped."""
    out = np.empty(len(values), dtype=np.float64)
    acc = math.nan
    for i, v in enumerate(values):
        if math.isfinite(v):
            acc = v if not math.isfinite(acc) else alpha * acc + (1.0 - alpha) * v
        out[i] = acc
    return out


def downsample(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `buckets` points: the mean of each equal-count bucket (NaNs ignored)."""
    n = len(x)
    if n <= buckets or buckets <= 0:
        return x, y
    edges = np.linspace(0, n, buckets + 1).astype(int)
    xs = np.array([x[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    with np.errstate(all="ignore"):
        ys = np.array([np.nanmean(y[a:b]) if np.isfinite(y[a:b]).any() else np.nan for a, b in zip(edges[:-1], edges[1:])])
    return xs, ys


def to_log10(values: np.ndarray) -> np.ndarray:
    """log10 of positive values; others become NaN (hidden). Plotted on a linear axis on purpose."""
    with np.errstate(all="ignore"):
        return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)


def step_ticks(low: float, high: float, width: int) -> tuple[list[int], list[str]]:
    """Whole-number step ticks at a round spacing (1, 2 or 5 x 10^k), about one per 10 columns."""
    low_i, high_i = math.ceil(low), math.floor(high)
    if high_i <= low_i:
        return [low_i], [step_label(low_i)]
    wanted = max(2, min(10, width // 8))
    raw = (high_i - low_i) / wanted
    spacing = 1
    for base in (1, 2, 5, 10):
        spacing = max(1, int(base * 10 ** math.floor(math.log10(max(raw, 1)))))
        if spacing >= raw:
            break
    first = math.ceil(low_i / spacing) * spacing
    ticks = list(range(first, high_i + 1, spacing))
    return ticks, [step_label(t) for t in ticks]


def step_label(step: int) -> str:
    """A step for an axis: 950, 12000, 120k, 1.5M (whole numbers; short where they are long)."""
    if step >= 1_000_000 and step % 100_000 == 0:
        return f"{step / 1_000_000:g}M"
    if step >= 100_000 and step % 1000 == 0:
        return f"{step // 1000}k"
    return str(step)


def colour_key(colour: tuple[int, int, int]) -> str:
    """A rich colour for a plotext RGB colour, for legends drawn beside the plot."""
    return "rgb({},{},{})".format(*colour)


class LossChart(PlotextPlot):
    """The chart part of LossPlot (no legend inside: it is drawn above, off the data)."""


class LossPlot(Vertical):
    """D and G loss: a legend line, then the chart."""

    log_scale: reactive[bool] = reactive(False)
    smoothing: reactive[float] = reactive(0.9)
    whole_run: reactive[bool] = reactive(True)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._history: MetricsHistory | None = None
        self._markers: list[int] = []

    def compose(self) -> ComposeResult:
        yield Static(id="loss-legend")
        yield LossChart(id="loss-chart")

    def on_mount(self) -> None:
        self.replot()

    def on_resize(self) -> None:
        self.replot()  # the ticks and the downsampling follow the width

    def show(self, history: MetricsHistory, markers: list[int]) -> None:
        """Redraw from the run's history."""
        self._history, self._markers = history, markers
        self.replot()

    def smoother(self, delta: int) -> None:
        """One smoothing level more (+1) or less (-1)."""
        levels = SMOOTHING_LEVELS
        index = min(range(len(levels)), key=lambda i: abs(levels[i] - self.smoothing))
        self.smoothing = levels[max(0, min(len(levels) - 1, index + delta))]

    def watch_log_scale(self) -> None:
        self.replot()

    def watch_smoothing(self) -> None:
        self.replot()

    def watch_whole_run(self) -> None:
        self.replot()

    def legend(self) -> str:
        """The legend and view options as one line of markup."""
        scale = "log10 " if self.log_scale else ""
        window = "whole run" if self.whole_run else f"last {RECENT_POINTS} records"
        marks = f"  [{colour_key(MARKER_COLOUR)}]│[/] change" if self._markers else ""
        return (f"[b]{scale}loss[/]  [{colour_key(_SMOOTH_COLOURS['D'])}]━━ D[/]  "
                f"[{colour_key(_SMOOTH_COLOURS['G'])}]━━ G[/]{marks}  [dim]EMA {self.smoothing:g}, {window}[/]")

    def replot(self) -> None:
        """Rebuild the figure from the stored history and the current view options."""
        if not self.is_mounted:
            return
        self.query_one("#loss-legend", Static).update(self.legend())
        chart = self.query_one(LossChart)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        history = self._history
        if history is None or len(history) == 0:
            chart.refresh()
            return
        start = 0 if self.whole_run else max(0, len(history) - RECENT_POINTS)
        steps = np.asarray(history.step[start:], dtype=np.float64)
        width = max(10, chart.size.width - 10)
        for name, values in (("D", history.d_loss[start:]), ("G", history.g_loss[start:])):
            raw = np.asarray(values, dtype=np.float64)
            smooth = ema(raw, self.smoothing)
            if self.log_scale:
                raw, smooth = to_log10(raw), to_log10(smooth)
            if self.smoothing > 0:
                _plot(plt, *downsample(steps, raw, width), _RAW_COLOURS[name])
            _plot(plt, *downsample(steps, smooth, width), _SMOOTH_COLOURS[name])
        for step in self._markers:
            if steps.size and steps[0] <= step <= steps[-1]:
                plt.vline(step, MARKER_COLOUR)
        plt.xticks(*step_ticks(steps[0], steps[-1], width))
        plt.xlabel("step")
        if self.log_scale:
            plt.ylabel("log10")
        chart.refresh()


def _plot(plt: Any, xs: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int]) -> None:
    keep = np.isfinite(ys)  # a gap (NaN) is bridged, so the line stays continuous
    if keep.any():
        plt.plot(xs[keep].tolist(), ys[keep].tolist(), color=colour, marker="braille")
