"""Runs side by side: one metric of up to six runs overlaid, their summary, config diff and digits.

    app.push_screen(CompareScreen.over_runs_dir(Path("runs")))   # the newest six runs of a folder
    app.push_screen(CompareScreen(open_runs(["runs/a", "runs/b"], Path("runs"))))

The screen reads the run folders itself (about once a second, only what was appended), so it
works the same for finished runs, runs training in another process and runs of this process.
`q` or escape dismisses it. `CompareApp` is the app behind `gan-tui compare`: this screen alone.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import ContentSwitcher, Footer, Static

from tui_gan.compare_data import (
    SORT_KEYS,
    X_AXES,
    RunReader,
    available_metrics,
    config_diff,
    legend_settings,
    newest_runs,
    short_names,
    sort_rows,
    summary,
)
from tui_gan.state import SMOOTHING_LEVELS
from tui_gan.widgets.compare_grids import CompareGrids
from tui_gan.widgets.compare_plot import SMOOTHED, ComparePlot, colour_of
from tui_gan.widgets.compare_tables import DiffTable, SummaryTable

POLL_S = 1.0  # live runs: their folders are read about once a second


class CompareScreen(ModalScreen[None]):
    """Overlaid curves of several runs; keys pick the metric, the x axis, the smoothing and the panel.

    Modal on purpose: over the dashboard, its keys (space, u, b...) must not reach the training run."""

    DEFAULT_CSS = """
    CompareScreen { layout: vertical; background: $background; }
    #cmp-header { height: 1; background: $panel; }
    #cmp-legend { height: auto; max-height: 2; }
    #cmp-plot { height: 1fr; min-height: 7; }
    #cmp-panel { height: auto; max-height: 9; }
    #cmp-panel DataTable { height: auto; max-height: 9; }
    CompareScreen.-grids #cmp-panel { height: 1fr; max-height: 100%; }
    CompareScreen.-grids #cmp-grids { height: 1fr; }
    """
    BINDINGS = [
        Binding("m", "metric(1)", "Metric"),
        Binding("M", "metric(-1)", "Metric back", show=False),
        Binding("x", "x_axis", "X axis"),
        Binding("plus,equals_sign", "smoothing(1)", "Smoother", show=False),
        Binding("minus", "smoothing(-1)", "Rougher", show=False),
        Binding("t", "panel('summary')", "Table"),
        Binding("d", "panel('diff')", "Diff"),
        Binding("g", "panel('grids')", "Digits"),
        Binding("s", "sort", "Sort"),
        Binding("q,escape", "leave", "Leave"),
    ]

    def __init__(self, readers: list[RunReader], *, ascii: bool = False, note: str = "") -> None:
        super().__init__()
        self.readers = readers
        self.metric = "d_loss"
        self.x_axis = "step"
        self.smoothing = 0.9
        self.sort_key = "best"
        self.panel = "summary"
        self._ascii = ascii
        self._note = note
        names = short_names([r.name for r in readers])
        self.labels = [Text(f"{i + 1} {n}", style=Style(color=Color.from_rgb(*colour_of(i)), bold=True))
                       for i, n in enumerate(names)]
        # What differs, on the first screen: each run's label carries its differing settings (`d`: all of them).
        self._settings = [legend_settings([r.config for r in readers], keys) for keys in (3, 2, 1)]

    @classmethod
    def over_runs_dir(cls, runs_dir: Path, *, ascii: bool = False) -> CompareScreen:
        """The dashboard's entry point: the six most recently written runs of `runs_dir`."""
        readers = newest_runs(Path(runs_dir))
        return cls(readers, ascii=ascii, note="" if readers else f"no runs in {runs_dir}")

    def compose(self) -> ComposeResult:
        yield Static(id="cmp-header")
        yield Static(self.legend(80), id="cmp-legend")
        yield ComparePlot(id="cmp-plot")
        with ContentSwitcher(initial="cmp-summary", id="cmp-panel"):
            yield SummaryTable(id="cmp-summary")
            yield DiffTable(id="cmp-diff")
            yield CompareGrids(len(self.readers), ascii=self._ascii, id="cmp-grids")
        yield Footer()

    def legend(self, width: int) -> Text:
        """The runs' labels with their differing settings: three keys if they fit on one line, else
        fewer; on two lines (the legend's most) only when one key does not fit on one."""
        plain = Text("  ").join(self.labels)
        options = [Text("  ").join(label + Text(f" {extra}" if extra else "", style=label.style)
                                   for label, extra in zip(self.labels, settings)) for settings in self._settings]
        for lines in (1, 2):
            for text in options:
                if text.cell_len <= width * lines - (lines - 1) * 10:  # room for a wrap on word boundaries
                    return text
        return plain

    def on_resize(self) -> None:
        self.query_one("#cmp-legend", Static).update(self.legend(self.size.width or 80))

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(POLL_S, self.poll)

    # --------------------------------------------------------------- updates
    def poll(self) -> None:
        """Read what the runs appended; redraw what depends on it (states every time: they age)."""
        changed = [reader.poll() for reader in self.readers]
        if any(changed):
            self._redraw_plot()
            self._redraw_diff()
            self.query_one(CompareGrids).show(self.readers, self.labels)
        self._redraw_summary()
        self._redraw_header()

    def _redraw_header(self) -> None:
        metric = dict(available_metrics(self.readers)).get(self.metric, self.metric)
        x = dict(X_AXES)[self.x_axis]
        smoothing = f"EMA {self.smoothing:g} (+/-)" if self.metric in SMOOTHED else "unsmoothed"
        text = f" {len(self.readers)} run{'' if len(self.readers) == 1 else 's'} | {metric} (m) | x: {x} (x) | {smoothing} | sort: {self.sort_key} (s)"
        self.query_one("#cmp-header", Static).update(self._note or text)

    def _redraw_plot(self) -> None:
        self.query_one(ComparePlot).show(self.readers, self.metric, self.x_axis, self.smoothing)

    def _redraw_summary(self) -> None:
        now = time.time()
        rows = sort_rows([summary(r, now) for r in self.readers], self.sort_key)
        labels = {r.name: label for r, label in zip(self.readers, self.labels)}
        self.query_one(SummaryTable).show(rows, labels, self.sort_key)

    def _redraw_diff(self) -> None:
        self.query_one(DiffTable).show(self.labels, config_diff([r.config for r in self.readers]))

    # --------------------------------------------------------------- actions
    def action_metric(self, delta: int) -> None:
        """Next (or previous) metric; label agreement is offered only when a run has it."""
        keys = [k for k, _ in available_metrics(self.readers)]
        i = keys.index(self.metric) if self.metric in keys else 0
        self.metric = keys[(i + delta) % len(keys)]
        self._redraw_plot()
        self._redraw_header()

    def action_x_axis(self) -> None:
        """step -> images seen -> train time -> step."""
        keys = [k for k, _ in X_AXES]
        self.x_axis = keys[(keys.index(self.x_axis) + 1) % len(keys)]
        self._redraw_plot()
        self._redraw_header()

    def action_smoothing(self, delta: int) -> None:
        """More or less EMA smoothing, the same for every run."""
        levels = SMOOTHING_LEVELS
        i = min(range(len(levels)), key=lambda j: abs(levels[j] - self.smoothing))
        self.smoothing = levels[max(0, min(len(levels) - 1, i + delta))]
        self._redraw_plot()
        self._redraw_header()

    def action_panel(self, name: str) -> None:
        """Show the summary table, the config diff or the digits below the plot."""
        self.panel = name
        self.query_one(ContentSwitcher).current = f"cmp-{name}"
        self.set_class(name == "grids", "-grids")

    def action_sort(self) -> None:
        """Sort the summary by the next column."""
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self._redraw_summary()
        self._redraw_header()

    def action_leave(self) -> None:
        """Back to where the screen was opened from (the dashboard, or the end of `gan-tui compare`)."""
        self.dismiss(None)


class CompareApp(App[int]):
    """`gan-tui compare`: shows one CompareScreen and exits (status 0) when it is dismissed."""

    TITLE = "gan-tui compare"

    def __init__(self, readers: list[RunReader], *, ascii: bool = False) -> None:
        super().__init__()
        self._readers = readers
        self._ascii = ascii

    def on_mount(self) -> None:
        self.push_screen(CompareScreen(self._readers, ascii=self._ascii), callback=lambda _: self.exit(0))
