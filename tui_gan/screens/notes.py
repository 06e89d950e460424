"""Every note and warning of this session in one scrollable screen (the panel shows the newest)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, RichLog

NOTE_STYLES = {"warning": "yellow", "error": "bold red"}


class NotesScreen(ModalScreen[None]):
    """The notes log, oldest first, wrapped, scrolled to the newest; escape or m closes it."""

    BINDINGS = [Binding("escape,q,m", "close", "close", show=False)]

    def __init__(self, notes: list[tuple[str, str]], dropped: int = 0) -> None:
        super().__init__()
        self.notes = notes
        self.dropped = dropped

    def compose(self) -> ComposeResult:
        with Vertical(id="notes-box"):
            count = f"{len(self.notes):,} notes" + (f" (the {self.dropped:,} oldest dropped)" if self.dropped else "")
            yield Label(f"[b]notes and warnings[/] [dim]{count} · ↑↓ pgup pgdn scroll · escape closes[/]",
                        id="notes-title")
            yield RichLog(id="notes-log", wrap=True, markup=False, auto_scroll=True, min_width=1)

    def on_mount(self) -> None:
        log = self.query_one("#notes-log", RichLog)
        for severity, text in self.notes:
            log.write(Text(text, style=NOTE_STYLES.get(severity, "")))
        log.focus()

    def action_close(self) -> None:
        self.dismiss(None)
