"""The quit question of a dashboard that started its run: stop it, or leave it training."""

from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from engine import events as ev
from tui_gan.describe import judge_left_unfinished
from tui_gan.screens.confirm import REASK_S


class QuitScreen(ModalScreen[str | None]):
    """Answers "stop" (enter, the default), "detach" (d, when the run can outlive the dashboard) or None (escape)."""

    BINDINGS = [
        Binding("enter,y,q", "answer('stop')", "stop and quit"),  # q q quits, as people expect
        Binding("d", "answer('detach')", "leave it training"),
        Binding("escape,n", "answer(None)", "cancel"),
    ]

    def __init__(self, step: Callable[[], int], can_detach: bool, judge: ev.JudgeProgress | None = None) -> None:
        """`step`: the run's step now (the run trains on while the question is open, and it says so);
        `judge`: the quality judge's progress while it still trains (stopping now leaves the run
        without quality figures, and the dialog says so)."""
        super().__init__()
        self.step = step
        self.can_detach = can_detach
        self.judge = judge

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-box"):
            yield Static(self._title(), id="quit-title")
            if self.judge is not None:
                yield Static(f"[yellow]{judge_left_unfinished(self.judge)}[/]\n", id="quit-judge")
            yield Static("[b]enter[/]   stop the run (a checkpoint is saved first) and quit")
            if self.can_detach:
                yield Static("[b]d[/]       leave it training and quit ([b]gan-tui attach[/] returns to it)")
            yield Static("[b]escape[/]  cancel: keep watching")

    def on_mount(self) -> None:
        self.set_interval(REASK_S, lambda: self.query_one("#quit-title", Static).update(self._title()))

    def _title(self) -> str:
        return f"[b]Quit at step {self.step():,}?[/]\n"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.can_detach or parameters != ("detach",)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)
