"""The export menu: one key per export, with the scale and count they take.

The grid export writes the whole grid on screen (every digit of it, also those the panel had no room
for at this terminal's size): the PNG has room for all of them, and which grid it is (fixed noise,
fresh noise, an older step) is what the user chose by looking. The words say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

EXPORT_KINDS = {
    "grid": "all digits of the grid on screen as a PNG (scale x scale)",
    "gif": "every sample grid of the run as an animated GIF",
    "csv": "the metrics log (losses, quality, alarms) as a CSV table",
    "samples": "count single PNGs drawn from the newest checkpoint",
}


@dataclass(frozen=True)
class ExportRequest:
    """What the user picked."""

    kind: str
    scale: int
    count: int


class ExportScreen(ModalScreen[ExportRequest | None]):
    """p grid PNG, g GIF, c CSV, n sample PNGs; tab into the fields to change scale or count."""

    AUTO_FOCUS = None  # the letter keys pick an export until the user tabs into a field
    BINDINGS = [
        Binding("p", "pick('grid')", "grid PNG"),
        Binding("g", "pick('gif')", "GIF"),
        Binding("c", "pick('csv')", "CSV"),
        Binding("n", "pick('samples')", "sample PNGs"),
        Binding("escape", "cancel", "close"),
        Binding("enter", "cancel", "leave field", show=False),
    ]

    def compose(self) -> ComposeResult:
        keys = {"grid": "p", "gif": "g", "csv": "c", "samples": "n"}
        lines = "\n".join(f"[b]{keys[kind]}[/]  {kind:8} {what}" for kind, what in EXPORT_KINDS.items())
        with Vertical(id="export-box"):
            yield Static("[b]Export[/] (files go to the run's exports/ folder)")
            yield Static(lines)
            with Horizontal(classes="export-row"):
                yield Label("scale", classes="export-name")
                yield Input("4", id="export-scale", type="integer", classes="export-input")
                yield Label("count", classes="export-name")
                yield Input("64", id="export-count", type="integer", classes="export-input")
            yield Static("", id="export-error")
            yield Static("[dim]tab edits scale/count (escape leaves the field) · escape closes[/]")

    def action_pick(self, kind: str) -> None:
        """Validate the fields and return the request."""
        scale = _whole(self.query_one("#export-scale", Input).value)
        count = _whole(self.query_one("#export-count", Input).value)
        error = self.query_one("#export-error", Static)
        if scale is None or not 1 <= scale <= 32:
            error.update("[red]scale must be a whole number from 1 to 32[/]")
        elif count is None or not 1 <= count <= 10_000:
            error.update("[red]count must be a whole number from 1 to 10000[/]")
        else:
            self.dismiss(ExportRequest(kind, scale, count))

    def action_cancel(self) -> None:
        """Escape leaves a field first (so the letter keys work again), then closes the menu."""
        if isinstance(self.focused, Input):
            self.set_focus(None)
        else:
            self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a field has focus, the letters are typing (integers only), and escape leaves the field.
        if action == "pick" and isinstance(self.focused, Input):
            return False
        return True


def export_now(run_dir: str, request: ExportRequest, step: int, images: Any) -> str:
    """Write the export (blocking: call it from a worker); the path and a detail. ExportError if impossible."""
    from engine import export
    from engine.runs import RunDir

    run = RunDir(Path(run_dir))
    if request.kind == "grid":
        return str(export.export_grid(run, scale=request.scale, step=step, images=images))
    if request.kind == "gif":
        path, frames = export.export_gif(run, scale=max(1, request.scale // 2))
        return f"{path} ({frames} frames)"
    if request.kind == "csv":
        path, rows = export.export_csv(run)
        return f"{path} ({rows} rows)"
    paths = export.export_checkpoint_samples(run, count=request.count)
    return f"{paths[0].parent} ({len(paths)} PNGs)"


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
