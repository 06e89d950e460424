"""Live D and G losses (textual-plotext): raw values faint behind an EMA, markers at changes.

The pure functions (ema, downsample, visible_window) shape the data; the widget only draws. Points
are always downsampled to the widget's width, so a run of any length costs the same to draw.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from textual_plotext import PlotextPlot

from tui_gan.state import MetricsHistory

RECENT_POINTS = 300  # "recent" window: the last this many metrics records

_RAW_COLOURS = {"D": (70, 90, 150), "G": (150, 80, 70)}
_SMOOTH_COLOURS = {"D": (90, 160, 255), "G": (255, 120, 90)}


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


class LossPlot(PlotextPlot):
    """D and G loss on one chart with a legend."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.smoothing = 0.9
        self.log_scale = False
        self.whole_run = True
        self._history: MetricsHistory | None = None
        self._markers: list[int] = []

    def show(self, history: MetricsHistory, markers: list[int]) -> None:
        """Redraw from the run's history."""
        self._history, self._markers = history, markers
        self.replot()

    def replot(self) -> None:
        """Rebuild the plotext figure from the stored history and the current view options."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        history = self._history
        scale = "log10 " if self.log_scale else ""
        window = "whole run" if self.whole_run else f"last {RECENT_POINTS} records"
        plt.title(f"{scale}loss ({window}, EMA {self.smoothing:g})")
        if history is None or len(history) == 0:
            self.refresh()
            return
        start = 0 if self.whole_run else max(0, len(history) - RECENT_POINTS)
        steps = np.asarray(history.step[start:], dtype=np.float64)
        width = max(10, self.size.width - 10)
        for name, values in (("D", history.d_loss[start:]), ("G", history.g_loss[start:])):
            raw = np.asarray(values, dtype=np.float64)
            smooth = ema(raw, self.smoothing)
            if self.log_scale:
                raw, smooth = to_log10(raw), to_log10(smooth)
            if self.smoothing > 0:
                xs, ys = downsample(steps, raw, width)
                _plot(plt, xs, ys, _RAW_COLOURS[name], None)
            xs, ys = downsample(steps, smooth, width)
            _plot(plt, xs, ys, _SMOOTH_COLOURS[name], f"{name} loss")
        for step in self._markers:
            if steps.size and steps[0] <= step <= steps[-1]:
                plt.vline(step, (200, 200, 80))
        plt.xlabel("step")
        self.refresh()


def _plot(plt: object, xs: np.ndarray, ys: np.ndarray, colour: tuple[int, int, int], label: str | None) -> None:
    keep = np.isfinite(ys)
    if not keep.any():
        return
    kwargs = {"color": colour, "marker": "braille"}
    if label:
        kwargs["label"] = label
    plt.plot(xs[keep].tolist(), ys[keep].tolist(), **kwargs)  # type: ignore[attr-defined]
