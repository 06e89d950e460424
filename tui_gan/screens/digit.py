"""Pick a digit: a conditional run draws samples of one class on request (`g`, then 0-9)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

ALL = -1  # the answer for "every class": back to the fixed grid, one row per class


class DigitScreen(ModalScreen[int | None]):
    """Answers a class 0-9, ALL for the fixed grid, or None (escape)."""

    BINDINGS = [
        *(Binding(str(d), f"pick({d})", str(d), show=False) for d in range(10)),
        Binding("a", f"pick({ALL})", "all", show=False),
        Binding("escape", "pick(None)", "cancel", show=False),
    ]

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def compose(self) -> ComposeResult:
        last = min(self.num_classes, 10) - 1
        with Vertical(id="digit-box"):
            yield Static(f"Samples of which class? [b]0[/]-[b]{last}[/] draws that digit from fresh noise")
            yield Static("[b]a[/] all classes (the fixed grid)    [b]escape[/] cancel")

    def action_pick(self, digit: int | None) -> None:
        if digit is not None and digit != ALL and digit >= self.num_classes:
            self.notify(f"this run has classes 0-{self.num_classes - 1}", severity="warning")
            return
        self.dismiss(digit)
