"""The live hyperparameter form: validated as typed, applied as one command.

Validation is the engine's own (TrainConfig's rules), so the form can never accept a value the
engine would refuse. An empty field means "leave as is".
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label

from engine.config import LIVE_HYPERPARAMS, ConfigError, TrainConfig

LABELS = {
    "lr_g": "G learning rate",
    "lr_d": "D learning rate",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2",
    "d_steps": "D steps per G",
    "label_smoothing": "label smoothing",
}


def parse_hparam(name: str, text: str) -> tuple[float | int | None, str]:
    """(value, "") for valid input, (None, "") for empty input, (None, reason) otherwise."""
    text = text.strip()
    if not text:
        return None, ""
    try:
        value: float | int = int(text) if name == "d_steps" else float(text)
    except ValueError:
        return None, "not a whole number" if name == "d_steps" else "not a number"
    try:
        TrainConfig().with_hyperparams(**{name: value})
    except ConfigError as exc:
        return None, exc.short  # a few words: the field's note has ~20 columns at 80x24
    return value, ""


class HyperparamsForm(Vertical):
    """Six fields, an Apply button, the reasons shown beside refused values."""

    @dataclass
    class Applied(Message):
        """The user applied valid changes (only the fields that differ from the current values)."""

        values: dict[str, float | int]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.current: dict[str, float | int] = {}

    def compose(self) -> ComposeResult:
        for name in LIVE_HYPERPARAMS:
            with Horizontal(classes="hp-row"):
                yield Label(LABELS[name], classes="hp-name")
                yield Input(id=f"hp-{name}", classes="hp-input", compact=True, select_on_focus=True)
                yield Label("", id=f"hp-note-{name}", classes="hp-note")
        with Horizontal(classes="hp-row"):
            yield Button("Apply", id="hp-apply", compact=True)
            yield Label("", id="hp-status", classes="hp-note")

    def show_current(self, values: dict[str, float | int]) -> None:
        """Show the engine's current values (after start-up or an applied change)."""
        self.current = dict(values)
        for name in LIVE_HYPERPARAMS:
            if name in values:
                self.query_one(f"#hp-{name}", Input).placeholder = f"{values[name]:g}"
                self._note(name, "")

    def collect(self) -> tuple[dict[str, float | int], dict[str, str]]:
        """(changed values, reasons) from the fields as typed."""
        values: dict[str, float | int] = {}
        errors: dict[str, str] = {}
        for name in LIVE_HYPERPARAMS:
            value, error = parse_hparam(name, self.query_one(f"#hp-{name}", Input).value)
            if error:
                errors[name] = error
            elif value is not None and value != self.current.get(name):
                values[name] = value
        return values, errors

    def apply(self) -> None:
        """Send the changes if every field is valid; otherwise change nothing and say why."""
        values, errors = self.collect()
        for name in LIVE_HYPERPARAMS:
            self._note(name, errors.get(name, ""))
        status = self.query_one("#hp-status", Label)
        if errors:
            status.update("[b red]not applied: fix the marked fields[/]")
            return
        if not values:
            status.update("nothing to change")
            return
        for name in values:
            self.query_one(f"#hp-{name}", Input).value = ""
        status.update("applying...")
        self.post_message(self.Applied(values))

    # ---------------------------------------------------------------- events
    def on_input_changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("hp-")
        if name in LIVE_HYPERPARAMS:
            self._note(name, parse_hparam(name, event.value)[1])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "hp-apply":
            event.stop()
            self.apply()

    def _note(self, name: str, error: str) -> None:
        label = self.query_one(f"#hp-note-{name}", Label)
        label.update(f"[red]{error}[/]" if error else "")
        label.set_class(bool(error), "error")
        self.query_one(f"#hp-{name}", Input).set_class(bool(error), "invalid")
