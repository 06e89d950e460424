"""The dashboard app: holds the engine link and the state, routes engine events, decides how to quit.

What is on screen and the keys live in `screens/dashboard.py`; the keys' table in `keys.py`.
Nothing here trains or waits on training: events arrive as messages from the engine's thread and
are folded into a `DashboardState` at once; the dashboard screen redraws from it on a timer.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from engine import commands as cmd
from engine import events as ev
from tui_gan.describe import toast
from tui_gan.exits import run_exit_status
from tui_gan.process.engine_link import EngineLink, LocalEngine
from tui_gan.keys import KEYS, palette_keys
from tui_gan.messages import EngineEvent, HistoryLoaded, LoadingProgress
from tui_gan.screens.dashboard import DashboardScreen
from tui_gan.screens.quit import QuitScreen
from tui_gan.state import DashboardState

if TYPE_CHECKING:
    from tui_gan.options import Options

__all__ = ["EngineEvent", "GanApp"]

_QUIT_TIMEOUT_S = 60.0
_LIVE = ("running", "paused")
_KEPT_SYSTEM_COMMANDS = ("Theme", "Screenshot")  # Textual's Quit and Keys would bypass the quit question / help


class GanApp(App[int]):
    """gan-tui's dashboard."""

    CSS_PATH = "app.tcss"
    TITLE = "gan-tui"
    AUTO_FOCUS = None  # the dashboard starts with nothing focused (its letter keys are commands)
    # ctrl+q and ctrl+c ask too (over any screen, also while typing): they replace Textual's quit.
    BINDINGS = [Binding(k.keys, k.action, k.label, show=False, priority=True) for k in KEYS if k.priority]

    def __init__(self, options: Options, engine: EngineLink | None = None) -> None:
        super().__init__()
        self.options = options
        self.engine: EngineLink = engine or LocalEngine(options.config, options.runs_dir, options.run_name, options.resume)
        self.state = DashboardState()
        self.exit_status = 0
        self._quitting = False
        self._detached = False

    def get_default_screen(self) -> DashboardScreen:
        """The dashboard is the bottom screen; help, questions and menus go on top of it."""
        return DashboardScreen(self.state, self.engine, self.options, ascii=self.options.ascii or self._few_colours(),
                               attached=self.attached, quit_run=self.action_quit_run)

    def on_mount(self) -> None:
        self._start_engine()

    def _few_colours(self) -> bool:
        # Half-blocks need at least 256 colours to show grey levels; fewer gets the ASCII ramp.
        return self.console.color_system in (None, "standard", "windows")

    # ------------------------------------------------------- for the CLI after exit
    @property
    def run_dir(self) -> str | None:
        """The run's folder, once the engine has named it."""
        return self.state.run_dir or None

    @property
    def left_running(self) -> bool:
        """True when the run goes on after this dashboard: it detached, or the trainer is still live."""
        out_of_process = self.owns_run or self.attached
        return self._detached or (out_of_process and self.state.phase in (*_LIVE, "loading", "starting"))

    @property
    def attached(self) -> bool:
        """True when viewing a run this dashboard did not start (`gan-tui attach`): q detaches."""
        return bool(getattr(self.engine, "attached", False)) and not self.owns_run

    @property
    def owns_run(self) -> bool:
        """True when this dashboard launched the trainer: quitting asks whether to stop it."""
        return bool(getattr(self.engine, "owns_run", False))

    # --------------------------------------------------------------- workers
    @work(thread=True, exclusive=True, group="engine", exit_on_error=False)
    def _start_engine(self) -> None:
        self.engine.start(
            emit=lambda event: self.post_message(EngineEvent(event)),
            progress=lambda text: self.post_message(LoadingProgress(text)),
        )

    @work(thread=True, group="io", exit_on_error=False)
    def _load_history(self, run_dir: str) -> None:
        from engine.runs import RunDir

        run = RunDir(Path(run_dir))
        self.post_message(HistoryLoaded(run.read_log(), [(s, str(p)) for s, p in run.sample_grids()]))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.state.note("error", f"{event.worker.name} failed: {type(error).__name__}: {error}")
            self.state.phase = "failed" if event.worker.group == "engine" else self.state.phase
            self.state.changed.add("status")
            self.notify(str(error), title="error", severity="error", timeout=10)

    # ------------------------------------------------------------- messages
    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        self.state.apply(event)
        popup = toast(event)  # the notes pane has it already (state.apply); some facts also pop up
        if popup is not None:
            self.notify(popup.message, title=popup.title, severity=popup.severity, timeout=popup.timeout)
        if isinstance(event, ev.RunStarted):
            self.sub_title = event.run_dir
            if event.resumed or self.attached or self.owns_run:
                self._load_history(event.run_dir)
        elif isinstance(event, ev.RunFinished):
            self.exit_status = run_exit_status(event, self.state.error)
            if self._quitting:
                self.leave()

    def on_loading_progress(self, message: LoadingProgress) -> None:
        self.state.loading(message.text)

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        self.state.load_history(message.records, message.grids)

    def on_hyperparams_form_applied(self, message: Any) -> None:
        self.engine.send(cmd.SetHyperparams(message.values))

    # ------------------------------------------------------------------ quit
    def action_quit_run(self) -> None:
        """q, ctrl+q, ctrl+c, the palette's Quit: ask what becomes of the run (attached: detach)."""
        if isinstance(self.screen, QuitScreen):
            self.screen.dismiss("stop")  # asked twice: the default answer
            return
        if self._quitting or self.state.phase not in _LIVE:
            self.leave()  # nothing to stop (or a second q while stopping: at once)
            return
        if self.attached:
            self._detach()
            return
        can_detach = self.owns_run and hasattr(self.engine, "detach")
        self.push_screen(QuitScreen(lambda: self.state.step, can_detach, self.state.judge_unfinished), self._quit_answered)

    def _quit_answered(self, answer: str | None) -> None:
        if answer == "detach":
            self._detach()
        elif answer == "stop":
            self._quitting = True
            self.engine.send(cmd.Stop(save=True))
            self.notify("saving a checkpoint, then quitting (q again quits at once)", timeout=10)
            self.set_timer(_QUIT_TIMEOUT_S, self.leave)

    def leave(self) -> None:
        """Exit with the run's exit status (tui_gan/exits.py) as the process's: Textual's `exit(result)`
        alone leaves `return_code` 0, which is what the viewer process ends with."""
        self.exit(self.exit_status, return_code=self.exit_status)

    def _detach(self) -> None:
        self._detached = True
        self.engine.detach()  # type: ignore[attr-defined]
        self.exit(0)

    # -------------------------------------------------------- command palette
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title in _KEPT_SYSTEM_COMMANDS:
                yield command
        dashboard = next((s for s in self.screen_stack if isinstance(s, DashboardScreen)), None)
        if dashboard is None:
            return
        for key in palette_keys():
            if key.action_name == "quit_run":
                callback = self.action_quit_run  # the app's: the palette sits above the dashboard
            else:
                callback = partial(dashboard.run_action, key.action)
            yield SystemCommand(key.palette, f"{key.help} ({key.shown})", callback)
