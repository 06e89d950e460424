"""Up to six runs' curves of one metric on one chart, each run in its own stable colour."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

from tui_gan.compare_data import METRICS, X_AXES, RunReader, curves, x_at_steps
from tui_gan.widgets.loss_plot import downsample, ema, step_ticks

#: A run's colour is its place in the list: the first run is always blue, the second orange, ...
PALETTE = (
    (90, 160, 255),
    (255, 130, 80),
    (110, 210, 110),
    (230, 200, 70),
    (200, 120, 230),
    (80, 210, 210),
)
#: Metrics logged every few steps are smoothed; quality figures are few and each one counts.
SMOOTHED = ("d_loss", "g_loss", "d_probs")
_SECOND_LINE = "dot"  # D(G(z)) beside D(x): the same colour, a sparser marker


def colour_of(index: int) -> tuple[int, int, int]:
    """The stable colour of the run at `index`."""
    return PALETTE[index % len(PALETTE)]


class ComparePlot(PlotextPlot):
    """One metric of every run, smoothed alike, downsampled to the width, markers at hyperparameter changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[tuple[str, int]] = []  # (run name, points) of every line drawn last
        self.markers: list[tuple[str, float]] = []  # (run name, x) of every hyperparameter-change marker
        self.x_range: tuple[float, float] | None = None
        self._shown: tuple[list[RunReader], str, str, float] | None = None

    def on_resize(self) -> None:
        # The first show() can come before layout (width 0): the downsampling and the ticks follow the width.
        if self._shown is not None:
            self.show(*self._shown)

    def show(self, readers: list[RunReader], metric: str, x_axis: str, smoothing: float) -> None:
        """Redraw from the readers' series."""
        self._shown = (readers, metric, x_axis, smoothing)
        self.lines, self.markers = [], []
        low, high = float("inf"), float("-inf")
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        label = dict(METRICS).get(metric, metric)
        smoothed = metric in SMOOTHED
        plt.title(f"{label} (EMA {smoothing:g})" if smoothed else f"{label} (each measurement)")
        plt.xlabel(dict(X_AXES).get(x_axis, x_axis))
        width = max(10, self.size.width - 10)
        for i, reader in enumerate(readers):
            colour = colour_of(i)
            for n, (_, xs, ys) in enumerate(curves(reader.series, metric, x_axis)):
                if not len(xs):
                    continue
                smooth = ema(ys.tolist(), smoothing) if smoothed else ys
                dx, dy = downsample(xs, smooth, width)
                keep = np.isfinite(dy)
                if keep.any():
                    marker = _SECOND_LINE if n else "braille"
                    plt.plot(dx[keep].tolist(), dy[keep].tolist(), color=colour, marker=marker)
                    self.lines.append((reader.name, int(np.isfinite(ys).sum())))
                    low, high = min(low, float(dx[keep].min())), max(high, float(dx[keep].max()))
            changes = reader.series.changes
            if changes:
                for x in x_at_steps(reader.series, changes, x_axis):
                    plt.vline(float(x), colour)
                    self.markers.append((reader.name, float(x)))
        self.x_range = (low, high) if self.lines else None
        if self.x_range is not None and x_axis in ("step", "images"):
            plt.xticks(*step_ticks(low, high, width))  # whole steps at round spacing, not plotext's 2499.2
        self.refresh()
