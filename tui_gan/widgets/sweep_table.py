"""The sweep's trials as a table: state, step, learning rates, FD/floor with its trend, the member copied."""

from __future__ import annotations

from textual.widgets import DataTable

from engine.sweep.rows import TrialRow, sparkline
from engine.runs import format_lr

_COLUMNS = ("", "trial", "state", "step", "lr_g", "lr_d", "D", "FD/floor", "trend", "copied")


class SweepTable(DataTable[str]):
    """One row per trial, keyed by the trial's folder name; marked trials show a `*`."""

    DEFAULT_CSS = """
    SweepTable { height: 1fr; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.marked: set[str] = set()
        self._shown: list[str] = []

    def on_mount(self) -> None:
        for label in _COLUMNS:
            self.add_column(label, key=label or "mark")

    def show(self, rows: list[TrialRow]) -> None:
        """Redraw with these rows in this order, keeping the cursor on the same trial."""
        current = self.current_trial
        names = [r.name for r in rows]
        if names != self._shown:
            self.clear()
            for row in rows:
                self.add_row(*_cells(row, row.name in self.marked), key=row.name)
            self._shown = names
            if current in names:
                self.move_cursor(row=names.index(current))
            return
        for row in rows:  # same trials in the same order: update cells in place (no flicker, cursor kept)
            for label, value in zip(_COLUMNS, _cells(row, row.name in self.marked)):
                self.update_cell(row.name, label or "mark", value)

    @property
    def current_trial(self) -> str | None:
        """The trial under the cursor."""
        if not self._shown or not 0 <= self.cursor_row < len(self._shown):
            return None
        return self._shown[self.cursor_row]

    def toggle_mark(self) -> None:
        """Mark or unmark the trial under the cursor (for compare)."""
        name = self.current_trial
        if name is None:
            return
        self.marked ^= {name}
        self.update_cell(name, "mark", "*" if name in self.marked else " ")


def _cells(row: TrialRow, marked: bool) -> tuple[str, ...]:
    ratio = f"{row.fd_ratio:.2f}x" if row.fd_ratio is not None else "-"
    return (
        "*" if marked else " ",
        row.name,
        row.state,
        f"{row.step:,}",
        format_lr(row.lr_g),  # as `gan-tui ls` writes them
        format_lr(row.lr_d),
        str(row.d_steps or "-"),
        ratio,
        sparkline(row.history, 12),
        row.copied_from or "-",
    )
