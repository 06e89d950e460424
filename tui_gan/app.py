"""The dashboard: shows engine events, sends commands. Nothing here trains or waits on training.

Events arrive as Textual messages posted from the training thread; each is folded into a
`DashboardState` at once (cheap) and the widgets are redrawn from it on a timer, so a burst of
events costs one redraw and the screen's byte rate stays bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, RichLog
from textual.worker import Worker, WorkerState

from engine import events as ev
from tui_gan.engine_link import EngineLink, LocalEngine
from tui_gan.screens.confirm import ConfirmScreen
from tui_gan.screens.export import ExportRequest, ExportScreen
from tui_gan.screens.help import HelpScreen
from tui_gan.state import SMOOTHING_LEVELS, DashboardState
from tui_gan.widgets.hyperparams import HyperparamsForm
from tui_gan.widgets.loss_plot import LossPlot
from tui_gan.widgets.probe import DProbe
from tui_gan.widgets.quality_panel import ALARM_TITLES, QualityPanel
from tui_gan.widgets.sample_grid import SampleGrid
from tui_gan.widgets.status import StatusBar

if TYPE_CHECKING:
    from tui_gan.cli import Options

_PLOT_MIN_INTERVAL_S = 1.0  # plots are the costliest redraw (bytes and CPU); once a second reads as live
_QUIT_TIMEOUT_S = 60.0
_TALL_ROWS = 40  # from this height the quality panel shows below the losses instead of in their place
# Actions on printable keys: while the form has focus those keys are typing, not commands.
_TYPING_ACTIONS = {"toggle_pause", "step_once", "save", "export", "fresh_samples", "browse", "toggle_log",
                   "smoothing", "toggle_window", "help", "quit_run", "stop_run", "toggle_quality", "roll_back"}


@dataclass
class EngineEvent(Message):
    """An engine event, posted from the training thread."""

    event: ev.Event


@dataclass
class LoadingProgress(Message):
    """Start-up progress before the engine has a run."""

    text: str


@dataclass
class HistoryLoaded(Message):
    """A resumed run's earlier metrics and sample grids, read off the UI thread."""

    records: list[dict[str, Any]]
    grids: list[tuple[int, str]]


class GanApp(App[int]):
    """gan-tui's dashboard."""

    CSS_PATH = "app.tcss"
    TITLE = "gan-tui"
    AUTO_FOCUS = None  # single-letter keys drive training until the user tabs into the form
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/Resume"),
        Binding("n", "step_once", "Step"),
        Binding("s", "save", "Save"),
        Binding("e", "export", "Export"),
        Binding("v", "toggle_quality", "Quality"),
        Binding("u", "roll_back('last-good')", "Roll back"),
        Binding("U", "roll_back('last-good', True)", "Roll back, lower lr", show=False),
        Binding("b", "roll_back('best')", "Back to best", show=False),
        Binding("r", "fresh_samples", "Fresh"),
        Binding("left_square_bracket", "browse(-1)", "Older", show=False, key_display="["),
        Binding("right_square_bracket", "browse(1)", "Newer", show=False, key_display="]"),
        Binding("l", "toggle_log", "Log scale"),
        Binding("plus,equals_sign", "smoothing(1)", "Smooth+", show=False, key_display="+"),
        Binding("minus", "smoothing(-1)", "Smooth-", show=False, key_display="-"),
        Binding("w", "toggle_window", "Window", show=False),
        Binding("h,question_mark", "help", "Help", key_display="h/?"),
        Binding("q", "quit_run", "Quit"),
        Binding("X", "stop_run", "Stop run"),
        Binding("ctrl+c", "quit_anywhere", "Quit", show=False, priority=True),
        Binding("escape", "leave_form", "Leave form", show=False),
    ]

    def __init__(self, options: Options, engine: EngineLink | None = None) -> None:
        super().__init__()
        self.options = options
        self.engine: EngineLink = engine or LocalEngine(options.config, options.runs_dir, options.run_name, options.resume)
        self.state = DashboardState()
        self.exit_status = 0
        self._quitting = False
        self._last_plot = 0.0
        self._notes_written = 0

    # ---------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield LossPlot(id="loss")
                yield DProbe(id="probe")
                yield QualityPanel(id="quality")
                with Horizontal(id="lower"):
                    yield HyperparamsForm(id="hparams")
                yield RichLog(id="notes", max_lines=200, markup=True, wrap=False)
            with Vertical(id="right"):
                yield Label("samples: waiting for the first grid", id="grid-title")
                yield SampleGrid(id="grid", ascii=self.options.ascii or self._few_colours())
        yield Footer()

    def on_mount(self) -> None:
        self._main.query_one("#notes", RichLog).can_focus = False
        self.on_resize()
        self.set_interval(1.0 / self.options.refresh_hz, self.redraw)
        self._redraw_status()
        self._start_engine()

    def _few_colours(self) -> bool:
        # Half-blocks need at least 256 colours to show grey levels; fewer gets the ASCII ramp.
        system = self.console.color_system
        return system in (None, "standard", "windows")

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

    @work(thread=True, group="io", exit_on_error=False)
    def _run_export(self, request: ExportRequest, step: int, images: Any) -> None:
        from engine import export
        from engine.runs import RunDir

        run = RunDir(Path(self.state.run_dir))
        try:
            if request.kind == "grid":
                text = str(export.export_grid(run, scale=request.scale, step=step, images=images))
            elif request.kind == "gif":
                path, frames = export.export_gif(run, scale=max(1, request.scale // 2))
                text = f"{path} ({frames} frames)"
            elif request.kind == "csv":
                path, rows = export.export_csv(run)
                text = f"{path} ({rows} rows)"
            else:
                paths = export.export_checkpoint_samples(run, count=request.count)
                text = f"{paths[0].parent} ({len(paths)} PNGs)"
        except export.ExportError as exc:
            self.call_from_thread(self.notify, str(exc), title="export failed", severity="error", timeout=10)
            return
        self.call_from_thread(self._exported, request.kind, text)

    @work(thread=True, group="io", exit_on_error=False)
    def _ask_roll_back(self, target: str, lr_scale: float) -> None:
        from engine.runs import RunDir, RunError

        run = RunDir(Path(self.state.run_dir))
        try:
            path = run.find_checkpoint(target, up_to_step=self.state.step)
        except RunError as exc:
            self.call_from_thread(self.notify, f"not rolled back: {exc}", severity="warning")
            return
        step = int(path.stem.split("_")[1])
        quality = run.checkpoint_quality().get(step)
        figure = f" (Frechet distance {quality['fd']:.1f})" if quality and quality.get("fd") is not None else ""
        lr = f"\nLearning rates are multiplied by {lr_scale:g}." if lr_scale != 1 else ""
        question = (f"Roll back to the checkpoint of step {step:,}{figure}?\n"
                    f"The {self.state.step - step:,} steps since are set aside: their log lines move to\n"
                    f"metrics.abandoned.jsonl, newer checkpoints to checkpoints/abandoned/.{lr}")
        self.call_from_thread(self.push_screen, ConfirmScreen(question), lambda yes: self._send_roll_back(yes, str(step), lr_scale))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.state.note("error", f"{event.worker.name} failed: {type(error).__name__}: {error}")
            self.state.phase = "failed" if event.worker.group == "engine" else self.state.phase
            self.state.changed.add("status")
            self.notify(str(error), title="error", severity="error", timeout=10)

    # ------------------------------------------------------------- messages
    def on_resize(self) -> None:
        # From _TALL_ROWS rows the quality panel shows below the losses; below, `v` swaps them.
        self._main.query_one("#left").set_class(self.size.height >= _TALL_ROWS, "-tall")

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        self.state.apply(event)
        if isinstance(event, ev.AlarmRaised):
            hint = ("\nu: roll back to the last good checkpoint · U: the same with lower learning rates"
                    if event.kind == "nonfinite" else "")
            self.notify(f"{event.message}{hint}", title=f"alarm: {ALARM_TITLES.get(event.kind, event.kind)}",
                        severity="error", timeout=20)
        elif isinstance(event, ev.RolledBack):
            self.notify(f"back at step {event.step:,} from {event.from_step:,}", title="rolled back")
        if isinstance(event, ev.RunStarted):
            self.sub_title = event.run_dir
            if event.resumed or self.attached:
                self._load_history(event.run_dir)
        elif isinstance(event, ev.CheckpointSaved) and event.reason != "periodic":
            self.notify(event.path, title="checkpoint saved")
        elif isinstance(event, ev.WarningRaised):
            self.notify(event.message, title="warning", severity="warning", timeout=10)
        elif isinstance(event, ev.ErrorRaised):
            where = f"\ntraceback: {event.traceback_path}" if event.traceback_path else ""
            self.notify(f"{event.message}{where}", title="training failed", severity="error", timeout=30)
        elif isinstance(event, ev.RunFinished):
            self.exit_status = 1 if event.state == ev.RunState.FAILED else 0
            if self._quitting:
                self.exit(self.exit_status)

    def on_loading_progress(self, message: LoadingProgress) -> None:
        self.state.loading(message.text)

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        self.state.load_history(message.records, message.grids)

    def on_hyperparams_form_applied(self, message: HyperparamsForm.Applied) -> None:
        self.engine.send(ev.SetHyperparams(message.values))

    # ---------------------------------------------------------------- redraw
    def redraw(self) -> None:
        """Push what changed since the last tick to the widgets (runs on a timer)."""
        changes = self.state.take_changes()
        if "plot" in changes:
            now = time.monotonic()
            if now - self._last_plot >= _PLOT_MIN_INTERVAL_S:
                self._last_plot = now
                self._main.query_one(LossPlot).show(self.state.history, self.state.markers)
                self._main.query_one(DProbe).show(self.state.history)
            else:
                self.state.changed.add("plot")  # drawn on a later tick
        if "status" in changes:
            self._redraw_status()
        if "grid" in changes:
            self._redraw_grid()
        if "hparams" in changes:
            form = self._main.query_one(HyperparamsForm)
            form.show_current(self.state.hparams)
            form.query_one("#hp-status", Label).update("")
        if "notes" in changes:
            self._redraw_notes()
        if "quality" in changes:
            self._main.query_one(QualityPanel).show(self.state.quality, self.state.alarms)

    def _redraw_status(self) -> None:
        self._main.query_one(StatusBar).show(self.state, self.engine.gpu_memory())

    def _redraw_grid(self) -> None:
        grid = self.state.shown_grid()
        if grid is None:
            return
        if grid.images is None and grid.path:
            from engine.runs import read_grid_png

            try:
                grid.images = read_grid_png(Path(grid.path), int(self.state.config.get("num_samples", 64)))
            except (OSError, ValueError) as exc:  # deleted or damaged since it was listed
                self.state.note("warning", f"grid of step {grid.step} could not be read: {exc}")
                return
        widget = self._main.query_one(SampleGrid)
        widget.set_images(grid.images)
        if grid.fixed:
            position = "newest" if self.state.view_index is None else f"{self.state.view_index + 1}/{len(self.state.grids)}"
            title = f"samples @ step {grid.step:,} (fixed noise, {position})"
        else:
            title = f"samples @ step {grid.step:,} (fresh noise; [ or ] returns)"
        self._main.query_one("#grid-title", Label).update(title)

    def _redraw_notes(self) -> None:
        log = self._main.query_one("#notes", RichLog)
        new = min(self.state.notes_total - self._notes_written, len(self.state.notes))
        colour = {"warning": "yellow", "error": "bold red"}
        for severity, text in self.state.notes[len(self.state.notes) - new :]:
            style = colour.get(severity)
            log.write(f"[{style}]{_escape(text)}[/]" if style else _escape(text))
        self._notes_written = self.state.notes_total

    # --------------------------------------------------------------- actions
    def action_toggle_pause(self) -> None:
        """Pause or resume training."""
        if self.state.phase == "running":
            self.engine.send(ev.Pause())
        elif self.state.phase == "paused":
            self.engine.send(ev.Resume())

    def action_step_once(self) -> None:
        """One training step while paused."""
        if self.state.phase == "paused":
            self.engine.send(ev.Step(1))
        else:
            self.notify("pause first (space); n steps once while paused", timeout=3)

    def action_save(self) -> None:
        """Save a checkpoint now."""
        if self.state.phase in ("running", "paused"):
            self.engine.send(ev.SaveCheckpoint())
            self.notify("saving a checkpoint...", timeout=2)
        else:
            last = self.state.last_checkpoint or "none"
            self.notify(f"the run is {self.state.phase}; its last checkpoint: {last}", timeout=6)

    def action_export(self) -> None:
        """Open the export menu: grid PNG at a scale, GIF over time, metrics CSV, sample PNGs."""
        if not self.state.run_dir:
            self.notify("nothing to export before the run has started", severity="warning")
            return

        def picked(request: ExportRequest | None) -> None:
            if request is None:
                return
            grid = self.state.shown_grid()
            if request.kind == "grid":
                if grid is None:
                    self.notify("no samples to export yet", severity="warning")
                    return
                if grid.images is None:
                    self._redraw_grid()
            self._run_export(request, grid.step if grid else 0, grid.images if grid else None)

        self.push_screen(ExportScreen(), picked)

    def _exported(self, kind: str, text: str) -> None:
        self.state.last_export = text
        self.state.note("info", f"exported {kind}: {text}")
        self.notify(text, title=f"exported {kind}")

    def action_toggle_quality(self) -> None:
        """Show the quality panel in place of the losses (both show on tall terminals)."""
        self._main.query_one("#left").toggle_class("-quality")

    def action_roll_back(self, target: str, lower_lr: bool = False) -> None:
        """Restore a checkpoint: at once after a NaN alarm, else after a question."""
        if self.state.phase not in ("running", "paused"):
            self.notify(f"the run is {self.state.phase}; resume it with --resume to roll back", severity="warning")
            return
        scale = float(self.state.config.get("rollback_lr_scale", 0.5)) if lower_lr else 1.0
        if target == "last-good" and "nonfinite" in self.state.alarms:
            self._send_roll_back(True, target, scale)  # one key: the weights in hand are not usable anyway
            return
        self._ask_roll_back(target, scale)

    def _send_roll_back(self, yes: bool | None, target: str, lr_scale: float) -> None:
        if yes:
            self.engine.send(ev.RollBack(target, lr_scale))
            lower = f" with learning rates x{lr_scale:g}" if lr_scale != 1 else ""
            self.notify(f"rolling back to {target}{lower}...", timeout=3)

    def action_fresh_samples(self) -> None:
        """Show a grid from new random noise."""
        self.engine.send(ev.SampleFresh())

    def action_browse(self, delta: int) -> None:
        """Step through this run's earlier grids."""
        self.state.browse(delta)
        self._redraw_grid()  # at once: an old grid may need decoding from its PNG first

    def action_toggle_log(self) -> None:
        """Log scale on the loss plot."""
        plot = self._main.query_one(LossPlot)
        plot.log_scale = not plot.log_scale
        plot.replot()

    def action_toggle_window(self) -> None:
        """Whole run or recent records on the loss plot."""
        plot = self._main.query_one(LossPlot)
        plot.whole_run = not plot.whole_run
        plot.replot()

    def action_smoothing(self, delta: int) -> None:
        """More (+1) or less (-1) EMA smoothing of the loss curves."""
        plot = self._main.query_one(LossPlot)
        levels = SMOOTHING_LEVELS
        index = min(range(len(levels)), key=lambda i: abs(levels[i] - plot.smoothing))
        plot.smoothing = levels[max(0, min(len(levels) - 1, index + delta))]
        plot.replot()

    def action_help(self) -> None:
        """Show every key."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_leave_form(self) -> None:
        """Move focus out of the form so single-letter keys control training again."""
        self.set_focus(None)

    def action_stop_run(self) -> None:
        """Attached: stop the training process (asks first; a checkpoint is saved)."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.engine.send(ev.Stop(save=True))
                self.notify("stopping the run (a checkpoint is saved first)", timeout=5)

        self.push_screen(ConfirmScreen(f"Stop the run at step {self.state.step:,}?\n"
                                       "A checkpoint is saved first; the training process then ends."), answered)

    def action_quit_run(self) -> None:
        """Save a checkpoint, stop the run, exit; attached, just detach. A second press exits at once."""
        if self.attached:
            self.engine.detach()  # type: ignore[attr-defined]
            self.exit(0)
            return
        if self._quitting or self.state.phase in ("loading", "finished", "stopped", "failed", "interrupted"):
            self.exit(self.exit_status)
            return
        self._quitting = True
        self.engine.send(ev.Stop(save=True))
        self.notify("saving a checkpoint, then quitting (press q again to quit now)", timeout=10)
        self.set_timer(_QUIT_TIMEOUT_S, lambda: self.exit(self.exit_status))

    def action_quit_anywhere(self) -> None:
        """Ctrl-C: the same as q, but also while typing in the form."""
        self.action_quit_run()

    # -------------------------------------------------------- command palette
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in (
            ("Pause / resume", "Pause or resume training (space)", self.action_toggle_pause),
            ("Step once", "One training step while paused (n)", self.action_step_once),
            ("Save checkpoint", "Write a checkpoint now (s)", self.action_save),
            ("Export", "Grid PNG, GIF, metrics CSV or sample PNGs (e)", self.action_export),
            ("Quality view", "Frechet distance, classes, alarms (v)", self.action_toggle_quality),
            ("Roll back", "To the last good checkpoint (u; U with lower learning rates)",
             lambda: self.action_roll_back("last-good")),
            ("Roll back to best", "To the checkpoint with the lowest Frechet distance (b)",
             lambda: self.action_roll_back("best")),
            ("Fresh samples", "Sample new noise (r)", self.action_fresh_samples),
            ("Log scale", "Toggle log10 losses (l)", self.action_toggle_log),
            ("Loss window", "Whole run or recent records (w)", self.action_toggle_window),
            ("Quit", "Save a checkpoint and quit (q)", self.action_quit_run),
        ):
            yield SystemCommand(title, help_text, action)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Letter keys belong to the form's inputs while one has focus.
        if isinstance(self.focused, Input) and action in _TYPING_ACTIONS:
            return False
        if action == "stop_run":
            return self.attached and self.state.phase in ("running", "paused")
        return True

    @property
    def _main(self) -> Screen[Any]:
        """The dashboard's screen, also while a modal (help, export, a question) is on top of it."""
        return self.screen_stack[0]

    @property
    def attached(self) -> bool:
        """True when viewing a detached run: q detaches and the run goes on."""
        return bool(getattr(self.engine, "attached", False))


def _escape(text: str) -> str:
    return text.replace("[", r"\[")
