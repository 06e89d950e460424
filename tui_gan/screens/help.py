"""The help screen: every key and what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("space", "pause / resume training"),
    ("n", "one training step (while paused)"),
    ("s", "save a checkpoint now"),
    ("e", "export: grid PNG at a scale, GIF over time, metrics CSV, sample PNGs"),
    ("v", "quality view: Frechet distance, class histogram, alarms"),
    ("u", "roll back to the last good checkpoint (at once after a NaN alarm)"),
    ("U", "roll back to the last good checkpoint with lower learning rates"),
    ("b", "roll back to the best checkpoint (lowest Frechet distance)"),
    ("r", "sample fresh noise (the fixed grid stays)"),
    ("[ / ]", "step back / forth through this run's grids"),
    ("l", "log scale on the loss plot"),
    ("+ / -", "more / less loss smoothing"),
    ("w", "loss plot: whole run / recent records"),
    ("tab", "move into the hyperparameter form; enter applies"),
    ("escape", "leave the form"),
    ("h or ?", "this help"),
    ("ctrl+p", "command palette (every action)"),
    ("q or ctrl+c", "save a checkpoint and quit (attached to a detached run: detach, training goes on)"),
    ("X", "attached: stop the detached run (asks first; saves a checkpoint)"),
)


class HelpScreen(ModalScreen[None]):
    """Lists the keys; any of escape, q, h or ? closes it."""

    BINDINGS = [
        Binding("escape,q,h,question_mark", "dismiss_help", "close", show=False),
    ]

    def compose(self) -> ComposeResult:
        lines = "\n".join(f"[b]{key:>12}[/]  {what}" for key, what in KEYS)
        with Vertical(id="help-box"):
            yield Static("[b]gan-tui keys[/]\n", id="help-title")
            yield Static(lines, id="help-keys")
            yield Static("\n[dim]escape closes this screen[/]")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
