"""The help screen: every key and what it does, from the key table, scrollable at any size."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui_gan.keys import Key, help_lines

_KEY_WIDTH = 7


class HelpScreen(ModalScreen[None]):
    """Lists the keys by section; arrows, page keys and the mouse scroll; escape, q, h or ? close it."""

    BINDINGS = [
        Binding("escape,q,h,question_mark", "dismiss_help", "close", show=False),
    ]

    def compose(self) -> ComposeResult:
        # One scrolling box with its title in the border: a title row above a scroll capped at "the
        # rest" overflowed the screen by a row at 80x24, hiding the last key under the border.
        with VerticalScroll(id="help-box") as box:
            box.border_title = "[b]gan-tui keys[/] [dim]↑↓ pgup pgdn scroll · escape closes[/]"
            for title, keys in help_lines():
                yield Label(f"[b u]{title}[/]", classes="help-section")
                for key in keys:
                    yield HelpRow(key)

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()  # so the arrow and page keys scroll it at once

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class HelpRow(Static):
    """A key and what it does, as one two-column grid: a description that wraps keeps its indent, and
    the row's height is measured at its real width (a key label beside a 1fr text was measured a line
    short, so at 80 columns the last keys could not be scrolled to)."""

    def __init__(self, key: Key) -> None:
        super().__init__(classes="help-row")
        self.key = key

    def render(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=_KEY_WIDTH, no_wrap=True)
        grid.add_column(ratio=1)
        accent = self.app.theme_variables.get("accent", "")
        grid.add_row(Text(self.key.shown, style=f"bold {accent}".strip()), self.key.help)
        return grid
