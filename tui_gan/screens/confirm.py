"""A yes/no question before anything that cannot be undone."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


#: How often a question that names the run's step is written again: the run trains on while it is open.
REASK_S = 0.5


class ConfirmScreen(ModalScreen[bool]):
    """Answers True for enter or y, False for n or escape (the keys of the quit question). A question
    given as a function is asked again every REASK_S seconds (it names the step, which moves on)."""

    BINDINGS = [
        Binding("enter,y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str | Callable[[], str]) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self._text(), id="confirm-question")
            yield Static("\n[b]enter[/] yes    [b]escape[/] no")

    def on_mount(self) -> None:
        if callable(self.question):
            self.set_interval(REASK_S, lambda: self.query_one("#confirm-question", Static).update(self._text()))

    def _text(self) -> str:
        return self.question() if callable(self.question) else self.question

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def rollback_question(run_dir: str, target: str, current_step: int, lr_scale: float) -> tuple[int, Callable[[int], str]]:
    """(the checkpoint's step, the question to ask at a given current step) for rolling back to
    `target`; RunError if there is none.

    Reads the run folder (blocking: call it from a worker).
    """
    from engine.runs import RunDir

    run = RunDir(Path(run_dir))
    path = run.find_checkpoint(target, up_to_step=current_step)
    step = int(path.stem.split("_")[1])
    quality = run.checkpoint_quality().get(step)
    figure = f" (Frechet distance {quality['fd']:.1f})" if quality and quality.get("fd") is not None else ""
    then = f", then the learning rates are multiplied by {lr_scale:g}" if lr_scale != 1 else ""

    def ask(now: int) -> str:
        return (f"Roll back to the checkpoint of step {step:,}{figure}?\n"
                f"Its weights and the hyperparameters in force at that step are restored{then}.\n"
                f"The {max(0, now - step):,} steps since are set aside: their log lines move to "
                f"metrics.abandoned.jsonl, newer checkpoints and grids to abandoned/ folders.")

    return step, ask
