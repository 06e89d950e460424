"""A yes/no question before anything that cannot be undone."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmScreen(ModalScreen[bool]):
    """Answers True for enter or y, False for n or escape (the keys of the quit question)."""

    BINDINGS = [
        Binding("enter,y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question)
            yield Static("\n[b]enter[/] yes    [b]escape[/] no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def rollback_question(run_dir: str, target: str, current_step: int, lr_scale: float) -> tuple[int, str]:
    """(the checkpoint's step, the question to ask) for rolling back to `target`; RunError if there is none.

    Reads the run folder (blocking: call it from a worker).
    """
    from engine.runs import RunDir

    run = RunDir(Path(run_dir))
    path = run.find_checkpoint(target, up_to_step=current_step)
    step = int(path.stem.split("_")[1])
    quality = run.checkpoint_quality().get(step)
    figure = f" (Frechet distance {quality['fd']:.1f})" if quality and quality.get("fd") is not None else ""
    then = f", then the learning rates are multiplied by {lr_scale:g}" if lr_scale != 1 else ""
    return step, (f"Roll back to the checkpoint of step {step:,}{figure}?\n"
                  f"Its weights and the hyperparameters in force at that step are restored{then}.\n"
                  f"The {current_step - step:,} steps since are set aside: their log lines move to "
                  f"metrics.abandoned.jsonl, newer checkpoints and grids to abandoned/ folders.")
