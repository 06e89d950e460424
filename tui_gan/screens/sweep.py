"""The sweep view: every trial of a sweep, live, read from the sweep folder (no Ray needed here).

`gan-tui sweep` opens it after starting the detached driver; `gan-tui attach SWEEP_DIR` opens it on
a running or finished sweep. Enter opens the trial's own dashboard (`gan-tui attach TRIAL`) with
this app suspended; quitting that dashboard comes back here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Sequence

from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from engine.sweep.rows import SORT_KEYS, describe_best, read_trials, sort_rows
from engine.sweep.spec import SweepSpec, SweepStatus, request_stop
from tui_gan.screens.confirm import ConfirmScreen
from tui_gan.widgets.sweep_table import SweepTable

_REFRESH_S = 1.0
#: A sweep in these states has ended: nothing to stop, and leaving the view leaves nothing running.
OVER = ("finished", "stopped", "failed", "interrupted")


def run_command(argv: Sequence[str]) -> int:
    """Run a gan-tui command in the foreground (the terminal is handed over); its exit status."""
    return subprocess.run([sys.executable, "-m", "tui_gan.cli", *argv], check=False).returncode


class SweepScreen(Screen[None]):
    """The trials table with the sweep's state and best trial above it."""

    BINDINGS = [
        Binding("enter", "open_trial", "Open trial", priority=True),  # before the table takes it
        Binding("o", "cycle_sort", "Sort"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
        Binding("X", "stop_sweep", "Stop sweep"),
        # One key, two labels: the footer must not promise that an ended sweep goes on.
        Binding("q", "leave('live')", "Quit (sweep goes on)"),
        Binding("q", "leave('over')", "Quit"),
    ]

    def __init__(self, sweep_dir: Path) -> None:
        super().__init__()
        self.sweep_dir = sweep_dir
        self.sort_key = "fd"
        self.over = False  # the sweep ended (or its driver is gone): nothing left to stop
        try:
            self.spec: SweepSpec | None = SweepSpec.load(sweep_dir)
        except ValueError:
            self.spec = None

    def compose(self) -> ComposeResult:
        yield Static(id="sweep-head")
        yield SweepTable(id="sweep-table")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_rows()
        self.query_one(SweepTable).focus()
        self.set_interval(_REFRESH_S, self.refresh_rows)

    def refresh_rows(self) -> None:
        """Read the sweep folder again and redraw."""
        status = SweepStatus.load(self.sweep_dir)
        rows = sort_rows(read_trials(self.sweep_dir, status), self.sort_key)
        self.query_one(SweepTable).show(rows)
        search = f"{self.spec.search} search, {self.spec.trials} trials" if self.spec else "sweep"
        head = self.query_one("#sweep-head", Static)
        state = status.effective_state()  # "interrupted" when the driver is gone
        note = status.message if state == status.state else f"its driver (pid {status.pid}) is gone"
        head.update(
            f"[b]{self.sweep_dir.name}[/]  {search}  [b]{state}[/]"
            + (f"  {note}" if note else "")
            + f"  sorted by {self.sort_key}\n{describe_best(status, rows)}"
        )
        head.set_class(state in ("failed", "interrupted"), "-failed")
        if (state in OVER) != self.over:
            self.over = state in OVER
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_sweep":
            return not self.over
        if action == "leave":
            return parameters == (("over",) if self.over else ("live",))
        return True

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table takes enter itself (select the row); that selection opens the trial.
        event.stop()
        self.action_open_trial()

    # ------------------------------------------------------------- actions
    def action_leave(self, _when: str) -> None:
        self.app.exit()

    def action_cycle_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.refresh_rows()

    def action_mark(self) -> None:
        self.query_one(SweepTable).toggle_mark()

    def action_open_trial(self) -> None:
        name = self.query_one(SweepTable).current_trial
        if name is None:
            return
        trial = self.sweep_dir / name
        if not (trial / "config.json").is_file():
            self.notify(f"{name} has not started yet", severity="warning")
            return
        if self._run_outside(["attach", str(trial)]) != 0:
            self.notify(f"{name} is not training now; its folder is {trial} (gan-tui export, --resume)",
                        severity="warning")
        self.refresh_rows()

    def action_compare(self) -> None:
        table = self.query_one(SweepTable)
        names = sorted(table.marked) or ([table.current_trial] if table.current_trial else [])
        if not names:
            return
        status = self._run_outside(["compare", *(str(self.sweep_dir / n) for n in names)])
        if status != 0:
            self.notify(f"compare could not open {', '.join(names)} (exit status {status})", severity="warning")

    def action_stop_sweep(self) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                request_stop(self.sweep_dir)
                self.notify("stopping: every trial saves a checkpoint, then ends")
                self.refresh_rows()

        self.app.push_screen(ConfirmScreen("Stop the whole sweep? Every trial saves a checkpoint and ends."), answer)

    def _run_outside(self, argv: list[str]) -> int:
        try:
            with self.app.suspend():
                return run_command(argv)
        except SuspendNotSupported:  # a headless test driver: run it without handing the terminal over
            return run_command(argv)


class SweepApp(App[None]):
    """`gan-tui attach SWEEP_DIR` and `gan-tui sweep`: the sweep view on its own."""

    TITLE = "gan-tui sweep"
    CSS = """
    #sweep-head { height: 2; background: $panel; }
    #sweep-head.-failed { background: $error 30%; }
    ConfirmScreen { align: center middle; }
    #confirm-box { width: 60; height: auto; border: round $warning; background: $surface; padding: 1 2; }
    """

    def __init__(self, sweep_dir: Path) -> None:
        super().__init__()
        self.sweep_dir = sweep_dir

    def on_mount(self) -> None:
        self.push_screen(SweepScreen(self.sweep_dir))
