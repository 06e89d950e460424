"""Sample quality at a glance: the Frechet-distance curve with its floor, the class histogram as
bars, classes covered, confidence, diversity, and the alarms that are on.

The text parts are pure functions of the state (tested without Textual); the widget composes a
plot and two Statics and only pushes new content into them.
"""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from engine import events as ev
from tui_gan.describe import alarm_title, judge_resumed, judge_status
from tui_gan.state import QualityHistory
from tui_gan.widgets.loss_plot import colour_key, downsample, step_ticks

_BARS = " ▁▂▃▄▅▆▇█"
_FD_COLOUR = (120, 220, 120)
_FLOOR_COLOUR = (200, 200, 80)
class FrechetPlot(PlotextPlot):
    """Frechet distance over steps on a log10 axis, with the real-vs-real floor as a line."""

    _quality: QualityHistory | None = None

    def on_resize(self) -> None:
        if self._quality is not None:
            self.show(self._quality)  # the ticks and the downsampling follow the width

    def show(self, quality: QualityHistory) -> None:
        """Redraw from the quality history."""
        self._quality = quality
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if quality.step:
            width = max(10, self.size.width - 10)
            xs, ys = downsample(np.asarray(quality.step, float), np.asarray(quality.fd, float), width)
            keep = np.isfinite(ys) & (ys > 0)
            plt.plot(xs[keep].tolist(), np.log10(ys[keep]).tolist(), color=_FD_COLOUR, marker="braille")
            if quality.fd_floor and quality.fd_floor > 0:
                plt.hline(math.log10(quality.fd_floor), _FLOOR_COLOUR)
            plt.xticks(*step_ticks(min(quality.step), max(quality.step), width))
            plt.xlabel("step")
            plt.ylabel("log10")
        self.refresh()


FD_LEGEND = f"[b]log10 FD[/]  [{colour_key(_FLOOR_COLOUR)}]── floor[/]"  # short: fits 22 columns at 80x24


class QualityPanel(Vertical):
    """The quality view: FD curve on the left, histogram, figures and alarms on the right."""

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="fd-side"):
                yield Static(FD_LEGEND, id="fd-legend")
                yield FrechetPlot(id="fd-plot")
            with Vertical(id="quality-side"):
                yield Static(id="quality-figures")
                yield Static(id="quality-alarms")

    def show(self, quality: QualityHistory, alarms: dict[str, ev.AlarmRaised]) -> None:
        """Redraw every part."""
        self.query_one(FrechetPlot).show(quality)
        self.query_one("#quality-figures", Static).update(figures_text(quality))
        self.query_one("#quality-alarms", Static).update(alarms_text(alarms))


def histogram_bars(hist: tuple[float, ...] | list[float], width: int = 2) -> tuple[str, str]:
    """Class shares as one line of block bars (full = twice the uniform share) and a label line."""
    k = len(hist)
    if k == 0:
        return "", ""
    top = 2.0 / k
    bars = "".join(_BARS[min(len(_BARS) - 1, round(share / top * (len(_BARS) - 1)))].center(width) for share in hist)
    labels = "".join(str(i % 10).center(width) for i in range(k))
    return bars, labels


def figures_text(quality: QualityHistory) -> Text:
    """The latest figures beside their targets (pure, for tests)."""
    text = Text()
    q, judge = quality.latest, quality.judge
    progress = quality.judge_progress
    if progress is not None:
        text.append(f"{judge_status(progress)}\n", style="bold")
        if progress.resumed:
            text.append(f"{judge_resumed(progress)}\n", style="dim")
        if q is None:
            text.append("(once per dataset, then cached; training goes on meanwhile)", style="dim")
            return text
    if q is None:
        if judge is None:
            text.append("readying the judge: a classifier of this dataset, trained once, then cached", style="dim")
        else:
            text.append(f"judge ready ({judge.accuracy:.1%}); first figures at the next measurement", style="dim")
        return text
    bars, labels = histogram_bars(q.class_hist)
    text.append(bars + "\n", style="bold cyan")
    text.append(labels + "\n", style="dim")
    k = len(q.class_hist)
    ratio = q.fd / q.fd_floor if q.fd_floor > 0 else math.nan
    text.append(f"step {q.step:,}  n={q.n}\n", style="dim")
    text.append(f"FD {q.fd:.1f} = {ratio:.1f}x floor\n", style=_good(ratio <= 3))
    text.append(f"classes {q.classes_covered}/{k}", style=_good(q.classes_covered == k))
    text.append(f" KL {q.kl_uniform:.3f}\n", style=_good(q.kl_uniform <= 0.05))
    text.append(f"conf {q.confidence:.2f}", style=_good(q.confidence >= 0.93))
    text.append(f"  div {q.diversity:.2f}\n", style=_good(q.diversity >= 0.8))
    if q.label_agreement is not None:  # a conditional run: does each class look like what was asked for
        text.append(f"labels {q.label_agreement:.0%}", style=_good(q.label_agreement >= 0.98))
        worst = _worst_class(q)
        text.append(f" worst {worst}\n" if worst else "\n", style="dim")
    if judge is not None:
        text.append(f"judge {judge.accuracy:.1%}, floor {q.fd_floor:.1f}", style="dim")
    return text


def _worst_class(q: ev.QualityMeasured) -> str:
    """The class whose FD is furthest above its own floor, as `7:4x` ("" when not measured)."""
    ratios = [(fd / floor, k) for k, (fd, floor) in enumerate(zip(q.class_fd, q.class_fd_floor))
              if fd is not None and floor and math.isfinite(fd) and floor > 0]
    if not ratios:
        return ""
    ratio, k = max(ratios)
    return f"{k}:{ratio:.0f}x"


def alarms_text(alarms: dict[str, ev.AlarmRaised]) -> Text:
    """The alarms that are on, newest last, each with its message."""
    text = Text()
    if not alarms:
        text.append("no alarms", style="green")
        return text
    for alarm in sorted(alarms.values(), key=lambda a: a.step):
        text.append(f"⚠ {alarm_title(alarm.kind)}", style="bold red")
        text.append(f" {alarm.message}\n")
    return text


def _good(ok: bool) -> str:
    return "green" if ok else "yellow"
