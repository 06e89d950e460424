"""The dashboard at 80x24 driven by real key presses against a scripted engine: help, footer, form
refusals, the notes log, the quit question, judge progress, the palette, exports' feedback."""

from __future__ import annotations

import pytest

from engine import commands as cmd
from engine import events as ev
from tests.fakes import FakeEngine
from tests.test_app import options, until
from tui_gan.app import GanApp
from tui_gan.keys import KEYS
from tui_gan.messages import EngineEvent
from tui_gan.widgets.key_footer import fit_keys, footer_text

SMALL = (80, 24)


class OwnedEngine(FakeEngine):
    """A trainer this dashboard launched: it can be stopped (answers with RunFinished) or left running."""

    owns_run = True

    def __init__(self, run_dir: str) -> None:
        super().__init__(run_dir)
        self.detached = False
        self._emit = None

    def start(self, emit, progress) -> None:
        self._emit = emit
        super().start(emit, progress)

    def send(self, command: cmd.Command) -> None:
        super().send(command)
        if isinstance(command, cmd.Stop) and self._emit is not None:
            self._emit(ev.StateChanged(ev.RunState.STOPPED, self.steps, "stopped by the user"))
            self._emit(ev.RunFinished(self.steps, ev.RunState.STOPPED, self.run_dir))

    def detach(self) -> None:
        self.detached = True


class AttachedEngine(OwnedEngine):
    """A viewer opened with `gan-tui attach`: the run is someone else's."""

    owns_run = False
    attached = True


def screen_text(app, widget=None) -> list[str]:
    """The characters on screen (or inside `widget`), line by line."""
    lines = ["".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips()]
    if widget is None:
        return lines
    region = widget.region
    return [line[region.x : region.right] for line in lines[region.y : region.bottom]]


async def started(pilot, app, fake) -> None:
    await until(pilot, lambda: app.state.step == fake.steps and app.state.shown_grid() is not None)
    await pilot.pause(0.1)


async def test_help_scrolls_to_its_last_key_at_80x24(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        scroll = app.screen.query_one("#help-box")
        keys_shown = [row.key.shown for row in app.screen.query(".help-row").results()]
        assert sorted(keys_shown) == sorted(k.shown for k in KEYS)  # every key of the table, once
        last = app.screen.query(".help-row").last()
        assert not scroll.region.contains_region(last.region), "the last key fits without scrolling: test nothing"
        for _ in range(10):
            await pilot.press("pagedown")
        await pilot.pause(0.2)
        assert scroll.region.contains_region(last.region)
        assert any("keep the dashboard" in line for line in screen_text(app))  # X, the table's last key
        await pilot.press("escape")
        assert type(app.screen).__name__ == "DashboardScreen"


@pytest.mark.parametrize("width", [80, 120, 200])
def test_the_footer_keeps_the_help_key_and_never_cuts_a_key(width):
    text = footer_text(width - 2).plain  # the footer's padding
    assert "h/? Help" in text and len(text) <= width - 2
    for key in fit_keys(width - 2):
        assert f"{key.shown} {key.label}" in text  # whole: key and word together
    assert "q Quit" in footer_text(78).plain and "space Pause" in footer_text(78).plain
    paused = footer_text(width - 2, paused=True).plain
    assert "space Resume" in paused and "space Pause" not in paused and "h/? Help" in paused
    assert len(paused) <= width - 2
    attached = footer_text(width - 2, attached=True).plain  # `gan-tui attach`: q leaves the run training
    assert "q Detach" in attached and "q Quit" not in attached and len(attached) <= width - 2
    over = footer_text(width - 2, over=True).plain  # the run has ended: no key for its trainer
    assert "q Quit" in over and "h/? Help" in over and "e Export" in over
    assert not any(word in over for word in ("Pause", "Resume", "Step", "Save", "Undo")), over


async def test_the_footer_on_screen_shows_the_help_key_at_80x24(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        bottom = screen_text(app)[-1]
        assert "h/? Help" in bottom and "q Quit" in bottom
        assert bottom.split()[-1] in {k.label.split()[-1] for k in KEYS}  # ends on a whole word


async def test_a_refused_form_value_is_shown_whole_at_80x24_and_the_plot_keeps_its_rows(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        plot = app.screen.query_one("#loss")
        rows = plot.region.height
        await pilot.press("tab", "tab", "minus", "1")
        assert app.focused.id == "hp-lr_d"
        await pilot.pause(0.2)
        note = app.screen.query_one("#hp-note-lr_d")
        assert [line.strip() for line in screen_text(app, note)] == ["above 0, up to 1"] and plot.region.height == rows
        await pilot.press("backspace", "backspace", *"abc")
        await pilot.pause(0.2)
        assert [line.strip() for line in screen_text(app, note)] == ["not a number"]
        await pilot.press("enter")
        assert not any(isinstance(c, cmd.SetHyperparams) for c in fake.commands)


async def test_the_notes_log_opens_scrolls_and_closes(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        for i in range(60):
            app.post_message(EngineEvent(ev.WarningRaised(400, f"warning number {i}: " + "long words " * 8)))
        await until(pilot, lambda: app.state.notes_total >= 60)
        await pilot.press("m")
        assert type(app.screen).__name__ == "NotesScreen"
        await pilot.pause(0.2)
        log = app.screen.query_one("#notes-log")
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y  # opens on the newest
        assert any("warning number 59" in line for line in screen_text(app))
        await pilot.press("home")
        await pilot.pause(0.1)
        assert log.scroll_y == 0 and any("started: synthetic" in line for line in screen_text(app))
        await pilot.press("escape")
        assert type(app.screen).__name__ == "DashboardScreen"
        panel = screen_text(app, app.screen.query_one("#notes"))
        assert any("long words" in line for line in panel[1:]) and not any(line.rstrip().endswith("long wo") for line in panel)


async def test_quit_question_enter_stops_with_a_checkpoint_and_exits(tmp_path):
    fake = OwnedEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("q")
        assert type(app.screen).__name__ == "QuitScreen"
        assert any("leave it training" in line for line in screen_text(app))
        await pilot.press("enter")
        await until(pilot, lambda: not app.is_running)
    assert cmd.Stop(save=True) in fake.commands and not fake.detached
    assert app.run_dir == str(tmp_path) and not app.left_running


async def test_quit_question_d_leaves_the_run_training(tmp_path):
    fake = OwnedEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("ctrl+q")
        assert type(app.screen).__name__ == "QuitScreen"
        await pilot.press("d")
        await until(pilot, lambda: not app.is_running)
    assert fake.detached and not any(isinstance(c, cmd.Stop) for c in fake.commands)
    assert app.left_running and app.run_dir == str(tmp_path)


async def test_quit_question_escape_cancels_and_ctrl_c_asks_too(tmp_path):
    fake = OwnedEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("q", "escape")
        assert type(app.screen).__name__ == "DashboardScreen" and app.is_running
        await pilot.press("tab", "ctrl+c")  # also while typing in the form
        assert type(app.screen).__name__ == "QuitScreen"
        await pilot.press("escape")
        assert app.is_running and not fake.commands and not fake.detached
        palette_quit = [c for c in app.get_system_commands(app.screen) if c.title == "Quit"]
        assert len(palette_quit) == 1
        palette_quit[0].callback()
        await pilot.pause(0.1)
        assert type(app.screen).__name__ == "QuitScreen"
        await pilot.press("escape")


async def test_an_attached_viewer_detaches_on_q_and_asks_before_x_stops_the_run(tmp_path):
    fake = AttachedEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        assert "q Detach" in screen_text(app)[-1]
        await pilot.press("X")
        assert type(app.screen).__name__ == "ConfirmScreen"
        assert "enter yes" in "".join(screen_text(app)) and "escape no" in "".join(screen_text(app))
        await pilot.press("n")
        assert not fake.commands
        await pilot.press("X", "escape")
        assert not fake.commands
        await pilot.press("X", "enter")  # the keys of the quit question
        assert fake.commands[-1] == cmd.Stop(save=True)
    fake = AttachedEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
    assert fake.detached and not fake.commands and app.left_running


async def test_once_the_run_is_over_its_trainers_keys_leave_the_footer_and_say_how_to_go_on(tmp_path):
    fake = AttachedEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await started(pilot, app, fake)
        assert "space Pause" in screen_text(app)[-1]
        app.post_message(EngineEvent(ev.StateChanged(ev.RunState.FINISHED, fake.steps, "")))
        app.post_message(EngineEvent(ev.RunFinished(fake.steps, ev.RunState.FINISHED, str(tmp_path))))
        await until(pilot, lambda: "Pause" not in screen_text(app)[-1])
        assert "Step" not in screen_text(app)[-1] and "Save" not in screen_text(app)[-1]
        await pilot.press("space")
        await until(pilot, lambda: any("the run is finished, nothing to pause" in line for line in screen_text(app)))
        assert not fake.commands


async def test_the_notes_are_wrapped_again_at_the_new_width_after_a_resize(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    path = "/tmp/runs/20261205-093000-mnist-cond-mlp/exports/grid_step_00000983_x4.png"
    note = f"exported the grid to {path}"
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        app.post_message(EngineEvent(ev.WarningRaised(fake.steps, note, "test")))
        notes = app.screen.query_one("#notes")
        await until(pilot, lambda: "grid_step" in "".join(screen_text(app, notes)))
        assert not any(path in line for line in screen_text(app, notes))  # 80 columns: cut in two
        await pilot.resize_terminal(160, 40)
        await until(pilot, lambda: any(path in line for line in screen_text(app, notes)))


async def test_judge_training_progress_is_on_screen(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        app.post_message(EngineEvent(ev.JudgeProgress(2, 6)))
        await pilot.pause(0.3)
        assert "training the quality judge: epoch 2 of 6" in "\n".join(screen_text(app, app.screen.query_one("#status")))
        await pilot.press("v")
        await pilot.pause(0.3)
        figures = str(app.screen.query_one("#quality-figures").render())
        assert "epoch 2 of 6" in figures
        app.post_message(EngineEvent(ev.JudgeReady(0.99, 2000, "trained", 90.0, 1000, 8.6)))
        await pilot.pause(0.3)
        assert "quality judge" not in "\n".join(screen_text(app, app.screen.query_one("#status")))


async def test_palette_finds_help_and_the_paused_status_shows_no_stale_rate(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("ctrl+p", *"help")
        await pilot.pause(0.3)
        assert any("Help: every key" in line for line in screen_text(app))
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.press("escape")
        app.post_message(EngineEvent(ev.StateChanged(ev.RunState.PAUSED, 400, "paused by the user")))
        await pilot.pause(0.3)
        status = "\n".join(screen_text(app, app.screen.query_one("#status")))
        assert "PAUSED" in status and "img/s" not in status
        assert "space Resume" in screen_text(app)[-1]  # the footer says what space does now


async def test_an_export_says_so_at_once_then_gives_the_result(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("e", "p")
        await until(pilot, lambda: bool(app.state.last_export))
        texts = [text for _, text in app.state.notes]
        started_at = next(i for i, t in enumerate(texts) if t == "exporting grid...")
        assert any(t.startswith("exported grid:") for t in texts[started_at + 1 :])


async def test_v_swaps_the_large_panel_on_a_tall_terminal(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app, fake)
        loss, quality = app.screen.query_one("#loss"), app.screen.query_one("#quality")
        assert loss.display and quality.display and loss.size.height > quality.size.height
        await pilot.press("v")
        await pilot.pause(0.1)
        assert loss.display and quality.display and quality.size.height > loss.size.height


async def test_c_opens_compare_over_the_runs_folder_and_q_comes_back(tmp_path):
    from tests.conftest import tiny_config
    from engine.runner import QueueSink, Runner

    runs = tmp_path / "runs"
    for name, lr in (("slow", 1e-4), ("fast", 1e-3)):
        runner = Runner(tiny_config(steps=20, lr_g=lr), QueueSink(), runs_dir=runs, run_name=name)
        runner.setup()
        while runner.tick():
            pass
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "CompareScreen")
        await pilot.pause(0.3)
        shown = "\n".join(screen_text(app))
        assert "slow" in shown and "fast" in shown
        await pilot.press("q")
        await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen")


async def test_g_then_a_digit_asks_a_conditional_run_for_that_class(tmp_path):
    """At 80x24 a conditional run's grid (one row per class) shows different classes, not four 0s; a
    one-digit grid shows its first samples."""
    import dataclasses

    from tui_gan.widgets.sample_grid import SampleGrid

    fake = FakeEngine(str(tmp_path))
    fake.config = dataclasses.replace(fake.config, preset="cond-mlp", num_classes=10, num_samples=100)
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        from tests.fakes import known_digits

        app.post_message(EngineEvent(ev.SamplesGenerated(fake.steps, known_digits(100), fixed=True)))
        grid = app.screen.query_one(SampleGrid)
        # Drawn at the dashboard's next redraw: until then the indices are the first grid's (64 digits).
        await until(pilot, lambda: len(grid.shown_indices) >= 2 and grid.shown_indices[1] == 10)
        classes = [i // 10 for i in grid.shown_indices]
        assert classes == list(range(len(classes))), classes
        await pilot.press("g")
        assert type(app.screen).__name__ == "DigitScreen"
        await pilot.press("3")
        await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen")
        asked = [c for c in fake.commands if isinstance(c, cmd.SampleFresh)]
        assert asked and asked[-1].digit == 3 and asked[-1].count == 100
        app.post_message(EngineEvent(ev.SamplesGenerated(fake.steps, known_digits(100), fixed=False, digit=3)))
        await until(pilot, lambda: any("digit 3" in line for line in screen_text(app)))
        await until(pilot, lambda: grid.shown_indices[:2] == [0, 1])
        await pilot.press("g", "a")  # back to the fixed grid
        await until(pilot, lambda: app.state.fresh is None)


async def test_g_on_an_unconditional_run_says_why_nothing_happens(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("g")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "DashboardScreen"
        assert not any(isinstance(c, cmd.SampleFresh) for c in fake.commands)
