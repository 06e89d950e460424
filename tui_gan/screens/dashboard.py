"""The dashboard screen: the layout, the keys of the key table, and the redraw from the app's state.

Events are folded into the app's `DashboardState` as they arrive; this screen pushes what changed
to its widgets on a timer, so a burst of events costs one redraw and the byte rate stays bounded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, Label, RichLog, Static

from engine import commands as cmd
from tui_gan.formatting import how_to_go_on
from tui_gan.keys import TYPING_ACTIONS, bindings
from tui_gan.paths import shown_path
from tui_gan.screens.confirm import ConfirmScreen, rollback_question
from tui_gan.screens.digit import ALL, DigitScreen
from tui_gan.screens.export import ExportRequest, ExportScreen, export_now
from tui_gan.screens.help import HelpScreen
from tui_gan.screens.notes import NOTE_STYLES, NotesScreen
from tui_gan.state import OVER, DashboardState
from tui_gan.widgets.hyperparams import HyperparamsForm
from tui_gan.widgets.key_footer import KeyFooter
from tui_gan.widgets.loss_plot import LossPlot
from tui_gan.widgets.probe import DProbe
from tui_gan.widgets.quality_panel import QualityPanel
from tui_gan.widgets.sample_grid import SampleGrid
from tui_gan.widgets.status import StatusBar

if TYPE_CHECKING:
    from tui_gan.options import Options
    from tui_gan.process.engine_link import EngineLink

_PLOT_MIN_INTERVAL_S = 1.0  # plots are the costliest redraw (bytes and CPU); once a second reads as live
TALL_ROWS = 40  # from this height the quality panel shows beside the losses instead of in their place
# The smallest screen every panel fits (app.tcss): #left's min-width 44 + #right's 31; rows: the status
# bar 2, the losses' min-height 6, the D probes 2, the form 8, the notes 3, the footer 1. Below, a
# message says so (and the footer keeps q); a fallback run's status bar takes a row more.
MIN_COLUMNS, MIN_ROWS = 75, 22
_LIVE = ("running", "paused")


class DashboardScreen(Screen[None]):
    """Status, losses (or quality), D probes, the form, notes, digits, and the key footer."""

    BINDINGS = [b for b in bindings() if not b.priority]  # the priority keys (ctrl+q, ctrl+c) are the app's
    AUTO_FOCUS = ""  # nothing: single-letter keys drive training until the user tabs into the form

    def __init__(self, state: DashboardState, engine: EngineLink, options: Options, *, ascii: bool,
                 attached: bool, quit_run: Callable[[], None]) -> None:
        """`state`: the app's (kept while modals come and go); `engine`: where commands go; `quit_run`:
        the app's quit, which decides what becomes of the run (this screen only asks for it)."""
        super().__init__(id="dashboard")
        self.state = state
        self.engine = engine
        self.options = options
        self.ascii = ascii
        self.attached = attached
        self._quit_run = quit_run
        self._last_plot = 0.0
        self._notes_written = 0
        self._notes_width = 0  # the width the notes were wrapped at

    # ---------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield LossPlot(id="loss")
                yield DProbe(id="probe")
                yield QualityPanel(id="quality")
                yield HyperparamsForm(id="hparams")
                notes = RichLog(id="notes", max_lines=200, markup=False, wrap=True, min_width=1)
                notes.border_title = "notes · m: all"
                notes.can_focus = False
                yield notes
            with Vertical(id="right"):
                yield Label("no samples yet", id="grid-title")
                yield SampleGrid(id="grid", ascii=self.ascii)
        yield Static(id="too-small")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one(KeyFooter).attached = self.attached
        self.on_resize()
        self.set_interval(1.0 / self.options.refresh_hz, self.redraw)
        self.redraw()

    def on_resize(self) -> None:
        # From TALL_ROWS rows the quality panel shows beside the losses; below, `v` swaps them.
        self.query_one("#left").set_class(self.size.height >= TALL_ROWS, "-tall")
        self.state.changed.add("grid")  # its title is fitted to the panel's new width
        self._fit_size()
        self.call_after_refresh(self._rewrap_notes)  # once the panels have their new widths

    def _rewrap_notes(self) -> None:
        """A RichLog wraps a line when it is written: at a new width, the notes are written again."""
        log = self.query_one("#notes", RichLog)
        width = log.scrollable_content_region.width
        if width == self._notes_width:
            return
        self._notes_width = width
        log.clear()
        self._notes_written = self.state.notes_total - len(self.state.notes)
        self._redraw_notes()

    def _fit_size(self) -> None:
        """Below the smallest size the panels fit, one message instead of a mangled screen."""
        width, height = self.size
        rows = MIN_ROWS + self.query_one(StatusBar).rows - 2
        small = width < MIN_COLUMNS or height < rows
        if small:
            self.query_one("#too-small", Static).update(
                f"terminal too small: {width}x{height}\nthe dashboard needs at least {MIN_COLUMNS}x{rows}\n\n"
                "training goes on;\nenlarge the window, or press q to quit")
        self.set_class(small, "-too-small")

    # ---------------------------------------------------------------- redraw
    def redraw(self) -> None:
        """Push what changed since the last tick to the widgets (runs on a timer)."""
        changes = self.state.take_changes()
        if "plot" in changes:
            now = time.monotonic()
            if now - self._last_plot >= _PLOT_MIN_INTERVAL_S:
                self._last_plot = now
                self.query_one(LossPlot).show(self.state.history, self.state.markers)
                self.query_one(DProbe).show(self.state.history)
            else:
                self.state.changed.add("plot")  # drawn on a later tick
        if "status" in changes:
            self.query_one(StatusBar).show(self.state, self.engine.gpu_memory())
            self._fit_size()  # a fallback run's status bar takes a row more
            footer = self.query_one(KeyFooter)
            footer.paused, footer.over = self.state.phase == "paused", self.state.phase in OVER
        if "grid" in changes:
            self.redraw_grid()
        if "hparams" in changes:
            form = self.query_one(HyperparamsForm)
            form.show_current(self.state.hparams)
            form.query_one("#hp-status", Label).update("")
        if "notes" in changes:
            self._redraw_notes()
        if "quality" in changes:
            self.query_one(QualityPanel).show(self.state.quality, self.state.alarms)

    def redraw_grid(self) -> None:
        """Show the grid the state points at (decoding an older one from its PNG first)."""
        grid = self.state.shown_grid()
        if grid is None:
            return
        if grid.images is None and grid.path:
            from engine.runs import read_grid_png

            try:
                grid.images = read_grid_png(Path(grid.path), int(self.state.config.get("num_samples", 64)))
            except (OSError, ValueError) as exc:  # deleted or damaged since it was listed
                self.state.note("warning", f"grid of step {grid.step:,} could not be read: {exc}")
                return
        # A class grid keeps its classes apart when it does not fit whole; a one-digit grid is no class grid.
        classes = int(self.state.config.get("num_classes") or 0) if grid.fixed or self.state.fresh_digit is None else 0
        self.query_one(SampleGrid).set_images(grid.images, classes)
        if grid.fixed:
            where = "newest" if self.state.view_index is None else f"{self.state.view_index + 1}/{len(self.state.grids)}"
            titles = (f"samples @ step {grid.step:,} (fixed noise, {where})", f"samples @ step {grid.step:,} ({where})",
                      f"samples @ step {grid.step:,}", f"step {grid.step:,}")
        else:
            if self.state.fresh_digit is not None:
                digit = self.state.fresh_digit
                titles = (f"digit {digit} @ step {grid.step:,} (fresh noise; [ or ] returns)",
                          f"digit {digit} @ step {grid.step:,}", f"digit {digit}")
            else:
                titles = (f"samples @ step {grid.step:,} (fresh noise; [ or ] returns)",
                          f"samples @ step {grid.step:,} (fresh noise)", f"fresh @ step {grid.step:,}", f"step {grid.step:,}")
        label = self.query_one("#grid-title", Label)
        width = self.query_one("#right").content_size.width or 30
        label.update(next((t for t in titles if len(t) <= width), titles[-1]).replace("[", r"\["))

    def _redraw_notes(self) -> None:
        log = self.query_one("#notes", RichLog)
        new = min(self.state.notes_total - self._notes_written, len(self.state.notes))
        for severity, text in self.state.notes[len(self.state.notes) - new :]:
            log.write(Text(text, style=NOTE_STYLES.get(severity, "")))
        self._notes_written = self.state.notes_total

    # ------------------------------------------------------ training actions
    def action_toggle_pause(self) -> None:
        """Pause or resume training."""
        if self.state.phase == "running":
            self.engine.send(cmd.Pause())
        elif self.state.phase == "paused":
            self.engine.send(cmd.Resume())
        elif self.state.phase in OVER:
            self._say_over("pause")

    def action_step_once(self) -> None:
        """One training step while paused."""
        if self.state.phase == "paused":
            self.engine.send(cmd.Step(1))
        elif self.state.phase in OVER:
            self._say_over("step")
        else:
            self.notify("pause first (space); n steps once while paused", timeout=3)

    @work(thread=True, group="io", exit_on_error=False)
    def _say_over(self, what: str) -> None:
        """A key for the trainer, pressed after the run ended: how to go on instead (reads the folder)."""
        finished = self.state.step if self.state.phase == "finished" else None
        again = how_to_go_on(self.state.run_dir, finished) if self.state.run_dir else "start a new run"
        self.app.call_from_thread(self.notify, f"the run is {self.state.phase}, nothing to {what}; {again}", timeout=8)

    def action_save(self) -> None:
        """Save a checkpoint now."""
        if self.state.phase in _LIVE:
            self.engine.send(cmd.SaveCheckpoint())
            self.notify("saving a checkpoint...", timeout=2)
        else:
            last = shown_path(self.state.last_checkpoint) if self.state.last_checkpoint else "none"
            self.notify(f"the run is {self.state.phase}; its last checkpoint:\n{last}", timeout=6)

    def action_export(self) -> None:
        """Open the export menu: grid PNG at a scale, GIF over time, metrics CSV, sample PNGs."""
        if not self.state.run_dir:
            self.notify("nothing to export before the run has started", severity="warning")
            return
        self.app.push_screen(ExportScreen(), self._export_picked)

    def _export_picked(self, request: ExportRequest | None) -> None:
        if request is None:
            return
        grid = self.state.shown_grid()
        if request.kind == "grid":
            if grid is None:
                self.notify("no samples to export yet", severity="warning")
                return
            if grid.images is None:
                self.redraw_grid()
        # At once: a GIF of a long run or the first torch import in an attached viewer takes seconds.
        self.state.note("info", f"exporting {request.kind}...")
        self.notify(f"exporting {request.kind}...", title="export", timeout=30)
        self._run_export(request, grid.step if grid else 0, grid.images if grid else None)

    @work(thread=True, group="io", exit_on_error=False)
    def _run_export(self, request: ExportRequest, step: int, images: Any) -> None:
        from engine.export import ExportError

        try:
            text = export_now(self.state.run_dir, request, step, images)
        except ExportError as exc:
            self.app.call_from_thread(self._export_failed, str(exc))
            return
        self.app.call_from_thread(self._exported, request.kind, text)

    def _export_failed(self, message: str) -> None:
        self.app.clear_notifications()
        self.state.note("error", f"export failed: {message}")
        self.notify(message, title="export failed", severity="error", timeout=10)

    def _exported(self, kind: str, text: str) -> None:
        self.app.clear_notifications()  # the "exporting..." toast
        self.state.last_export = text.split(" (")[0]
        self.state.note("info", f"exported {kind}: {text}")
        self.notify(shown_path(text), title=f"exported {kind}")

    def action_roll_back(self, target: str, lower_lr: bool = False) -> None:
        """Restore a checkpoint: at once after a NaN alarm, else after a question."""
        if self.state.phase not in _LIVE:
            self.notify(f"the run is {self.state.phase}; resume it with --resume to roll back", severity="warning")
            return
        scale = float(self.state.config.get("rollback_lr_scale", 0.5)) if lower_lr else 1.0
        if target == "last-good" and "nonfinite" in self.state.alarms:
            self._send_roll_back(True, target, scale)  # one key: the weights in hand are not usable anyway
            return
        self._ask_roll_back(target, scale)

    @work(thread=True, group="io", exit_on_error=False)
    def _ask_roll_back(self, target: str, lr_scale: float) -> None:
        from engine.runs import RunError

        try:
            step, question = rollback_question(self.state.run_dir, target, self.state.step, lr_scale)
        except RunError as exc:
            self.app.call_from_thread(self.notify, f"not rolled back: {exc}", severity="warning")
            return
        self.app.call_from_thread(self.app.push_screen, ConfirmScreen(lambda: question(self.state.step)),
                                  lambda yes: self._send_roll_back(yes, str(step), lr_scale))

    def _send_roll_back(self, yes: bool | None, target: str, lr_scale: float) -> None:
        if yes:
            self.engine.send(cmd.RollBack(target, lr_scale))
            lower = f" with learning rates x{lr_scale:g}" if lr_scale != 1 else ""
            self.notify(f"rolling back to {target}{lower}...", timeout=3)

    def action_fresh_samples(self) -> None:
        """Show a grid from new random noise."""
        self.engine.send(cmd.SampleFresh())

    def action_pick_digit(self) -> None:
        """Samples of one class (conditional runs): 0-9 draws that digit, a returns to the fixed grid."""
        num_classes = int(self.state.config.get("num_classes") or 0)
        if num_classes < 2:
            preset = self.state.config.get("preset", "?")
            self.notify(f"this run is unconditional (preset {preset}): it cannot be asked for a digit",
                        severity="warning")
            return

        def picked(digit: int | None) -> None:
            if digit is None:
                return
            if digit == ALL:
                self.state.fresh = None
                self.state.changed.add("grid")
                return
            count = int(self.state.config.get("num_samples") or 64)
            self.engine.send(cmd.SampleFresh(digit=digit, count=count))
            self.notify(f"drawing {count} samples of digit {digit}...")

        self.app.push_screen(DigitScreen(num_classes), picked)

    def action_stop_run(self) -> None:
        """Stop the training process, keep the dashboard (asks first; a checkpoint is saved)."""
        def answered(yes: bool | None) -> None:
            if yes:
                self.engine.send(cmd.Stop(save=True))
                self.notify("stopping the run (a checkpoint is saved first)", timeout=5)

        self.app.push_screen(ConfirmScreen(lambda: f"Stop the run at step {self.state.step:,}?\n"
                                           "A checkpoint is saved first; the training process then ends."), answered)

    def action_quit_run(self) -> None:
        """Quit: the app asks what becomes of the run."""
        self._quit_run()

    def action_command_palette(self) -> None:
        """The command palette."""
        self.app.action_command_palette()

    # ---------------------------------------------------------- view actions
    def action_browse(self, delta: int) -> None:
        """Step through this run's earlier grids."""
        self.state.browse(delta)
        self.redraw_grid()  # at once: an old grid may need decoding from its PNG first

    def action_toggle_quality(self) -> None:
        """Quality in the losses' place; on tall terminals, which of the two is large."""
        self.query_one("#left").toggle_class("-quality")

    def action_toggle_log(self) -> None:
        """Log10 scale on the loss plot."""
        plot = self.query_one(LossPlot)
        plot.log_scale = not plot.log_scale

    def action_toggle_window(self) -> None:
        """Whole run or recent records on the loss plot."""
        plot = self.query_one(LossPlot)
        plot.whole_run = not plot.whole_run

    def action_smoothing(self, delta: int) -> None:
        """More (+1) or less (-1) EMA smoothing of the loss curves."""
        self.query_one(LossPlot).smoother(delta)

    def action_notes_log(self) -> None:
        """Every note and warning of this session, scrollable."""
        self.app.push_screen(NotesScreen(list(self.state.notes), self.state.notes_dropped))

    def action_compare(self) -> None:
        """The newest runs of this runs folder overlaid (the same view as `gan-tui compare`)."""
        from tui_gan.screens.compare import CompareScreen  # its widgets load only when asked for

        self.app.push_screen(CompareScreen.over_runs_dir(self.options.runs_dir, ascii=self.options.ascii))

    def action_help(self) -> None:
        """Show every key."""
        self.app.push_screen(HelpScreen())

    def action_focus_form(self) -> None:
        """Into the hyperparameter form (tab)."""
        if isinstance(self.focused, Input):
            self.focus_next()
        else:
            self.query_one(HyperparamsForm).query_one(Input).focus()

    def action_leave_form(self) -> None:
        """Move focus out of the form so single-letter keys control training again."""
        self.set_focus(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Letter keys belong to the form's inputs while one has focus.
        if isinstance(self.focused, Input) and action in TYPING_ACTIONS:
            return False
        if action == "stop_run":
            return self.state.phase in _LIVE
        return True
