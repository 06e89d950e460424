"""The help screen: every key and what it does, from the key table, scrollable at any size."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui_gan.keys import help_lines


class HelpScreen(ModalScreen[None]):
    """Lists the keys by section; arrows, page keys and the mouse scroll; escape, q, h or ? close it."""

    BINDINGS = [
        Binding("escape,q,h,question_mark", "dismiss_help", "close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label("[b]gan-tui keys[/]  [dim]↑↓ pgup pgdn scroll · escape closes[/]", id="help-title")
            with VerticalScroll(id="help-scroll"):
                for title, keys in help_lines():
                    yield Label(f"[b u]{title}[/]", classes="help-section")
                    for key in keys:
                        with Horizontal(classes="help-row"):
                            yield Label(key.shown, classes="help-key")
                            yield Static(key.help, classes="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()  # so the arrow and page keys scroll it at once

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
