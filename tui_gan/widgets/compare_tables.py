"""The compare view's tables: one summary row per run (sortable) and the config keys that differ."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from tui_gan.formatting import format_duration

SUMMARY_COLUMNS = (
    ("name", "run"),
    ("best", "best FD/fl"),
    ("to_3x_s", "to 3x"),
    ("confidence", "conf"),
    ("alarms", "alarms"),
    ("step", "step"),
    ("state", "state"),
)


class SummaryTable(DataTable):
    """Best FD/floor and its step, train time to 3x floor, last confidence, alarms, step, state."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._shown: object = None

    def on_mount(self) -> None:
        for key, label in SUMMARY_COLUMNS:
            self.add_column(label, key=key)

    def show(self, rows: list[dict[str, Any]], labels: dict[str, Text], sort_key: str) -> None:
        """Replace the rows (already sorted); the sorted column's header is marked. Unchanged: no redraw."""
        if (rows, sort_key) == self._shown:
            return  # polled every second: an idle table must cost no bytes on a slow link
        self._shown = (rows, sort_key)
        for key, label in SUMMARY_COLUMNS:
            self.columns[key].label = Text(label + (" v" if key == sort_key else ""))  # type: ignore[index]
        self.clear()
        for row in rows:
            best = "-" if row["best"] is None else f"{row['best']:.2f}x @{row['best_step']:,}"
            to_3x = "-" if row["to_3x_s"] is None else format_duration(row["to_3x_s"])
            conf = "-" if row["confidence"] is None else f"{row['confidence']:.2f}"
            alarms = str(row["alarms"]) + (f" ({', '.join(row['active'])})" if row["active"] else "")
            self.add_row(labels[row["name"]], best, to_3x, conf, alarms, f"{row['step']:,}", row["state"], key=row["name"])


class DiffTable(DataTable):
    """Only the config keys whose values differ between the runs; one column per run."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def show(self, labels: list[Text], rows: list[tuple[str, list[str]]]) -> None:
        """Rebuild from config_diff's rows."""
        self.clear(columns=True)
        self.add_column("key", key="key")
        for i, label in enumerate(labels):
            self.add_column(label, key=f"run{i}")
        if not rows:
            self.add_row("(the configs are the same)", *[""] * len(labels))
        for key, values in rows:
            self.add_row(key, *values, key=key)
