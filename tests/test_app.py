"""The dashboard driven by real key presses: a real engine on tiny data, or a scripted fake."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import commands as cmd
from engine import events as ev
from engine.checkpoint import load_checkpoint
from engine.config import TrainConfig
from engine.runs import write_grid_png
from tests.conftest import tiny_config
from tests.fakes import FakeEngine
from tui_gan.app import GanApp
from tui_gan.messages import EngineEvent
from tui_gan.cli import Options


def options(tmp_path: Path, **changes) -> Options:
    cfg = tiny_config(steps=10**7, checkpoint_every=0, **changes)
    return Options(cfg, tmp_path / "runs", "app", None, headless=False, ascii=False, refresh_hz=20.0)


async def until(pilot, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


def runner_of(app):
    return app.engine._runner


async def test_space_pauses_the_step_counter_and_resumes_it(tmp_path):
    app = GanApp(options(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.phase == "running" and app.state.step >= 10)
        await pilot.press("space")
        await until(pilot, lambda: app.state.phase == "paused")
        paused_at = runner_of(app).trainer.step
        await pilot.pause(0.5)
        assert runner_of(app).trainer.step == paused_at and app.state.step == paused_at
        await pilot.press("n")
        await until(pilot, lambda: app.state.step == paused_at + 1)
        await pilot.press("space")
        await until(pilot, lambda: app.state.phase == "running" and app.state.step > paused_at + 5)
        await pilot.press("q", "enter")
        await until(pilot, lambda: not app.is_running)


async def test_applying_a_learning_rate_changes_the_optimizer(tmp_path):
    app = GanApp(options(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.phase == "running")
        await pilot.press("tab")
        assert app.focused.id == "hp-lr_g"
        await pilot.press(*"1e-4", "enter")
        runner = runner_of(app)
        await until(pilot, lambda: runner.trainer.opt_g.param_groups[0]["lr"] == 1e-4)
        await until(pilot, lambda: app.state.hparams.get("lr_g") == 1e-4)
        assert app.state.markers and runner.trainer.opt_d.param_groups[0]["lr"] == TrainConfig().lr_d
        # The record reaches the disk on the run's writer thread: wait for it, do not race it.
        await until(pilot, lambda: any(r["type"] == "hparams" and r["new"]["lr_g"] == 1e-4 for r in runner.run.read_log()))
        await pilot.press("escape", "q", "enter")
        await until(pilot, lambda: not app.is_running)


@pytest.mark.parametrize("text", ["-1", "0", "nan", "inf", "fast", "2"])
async def test_each_invalid_form_value_is_refused_with_a_reason_and_changes_nothing(tmp_path, text):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step == fake.steps)
        await pilot.press("tab", "tab")  # the D learning rate
        assert app.focused.id == "hp-lr_d"
        await pilot.press(*text, "enter")
        await pilot.pause(0.1)
        note = str(app.query_one("#hp-note-lr_d").render())
        assert note.strip(), "no reason shown"
        assert "not a number" in note or "above 0" in note or "at most 1" in note
        assert not any(isinstance(c, cmd.SetHyperparams) for c in fake.commands)
        assert app.state.hparams["lr_d"] == fake.config.lr_d


async def test_e_then_p_writes_the_grid_shown_as_a_png_at_the_chosen_scale(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.shown_grid() is not None)
        await pilot.press("e")
        assert type(app.screen).__name__ == "ExportScreen"
        await pilot.press("tab", "backspace", "2", "escape")  # into the scale field, 4 -> 2, out again
        await pilot.press("p")
        await until(pilot, lambda: bool(app.state.last_export))
        path = Path(app.state.last_export)
        assert path.name.endswith("_x2.png") and str(tmp_path) in str(path)
        pixels = np.asarray(Image.open(path).convert("L"))
        one = tmp_path / "one.png"
        write_grid_png(one, app.state.shown_grid().images)
        assert np.array_equal(pixels[::2, ::2], np.asarray(Image.open(one).convert("L")))


async def test_quality_events_fill_the_panel_and_a_nan_alarm_offers_one_key_rollback(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.state.step == fake.steps)
        assert not app.query_one("#quality").display
        await pilot.press("v")
        assert app.query_one("#quality").display and not app.query_one("#loss").display
        app.post_message(EngineEvent(ev.AlarmRaised(400, "nonfinite", "loss became NaN")))
        app.post_message(EngineEvent(ev.StateChanged(ev.RunState.PAUSED, 400, "non-finite loss")))
        await until(pilot, lambda: "nonfinite" in app.state.alarms)
        await pilot.pause(0.2)
        figures = str(app.query_one("#quality-figures").render())
        assert "10/10" in figures and "FD 21.1 = 2.5x floor" in figures
        assert "NaN/inf" in str(app.query_one("#quality-alarms").render())
        assert "nonfinite" in str(app.query_one("#status").render())
        await pilot.press("U")
        assert fake.commands[-1] == cmd.RollBack("last-good", 0.5)  # at once, no question
        app.post_message(EngineEvent(ev.AlarmCleared(200, "nonfinite")))
        app.post_message(EngineEvent(ev.RolledBack(400, 200, "ckpt", 1e-3, 1e-3)))
        await until(pilot, lambda: not app.state.alarms and app.state.history.step[-1] == 200)
        assert app.state.quality.step == [100, 200]
        await pilot.press("b")  # no checkpoint in this folder: says so, sends nothing
        await pilot.pause(0.3)
        assert fake.commands[-1] == cmd.RollBack("last-good", 0.5)


async def test_s_writes_a_checkpoint_that_loads_and_q_saves_and_exits(tmp_path):
    app = GanApp(options(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step >= 10)
        await pilot.press("s")
        await until(pilot, lambda: bool(app.state.last_checkpoint))
        payload = load_checkpoint(Path(app.state.last_checkpoint))
        assert payload["trainer"]["step"] > 0
        await pilot.press("q")
        assert type(app.screen).__name__ == "QuitScreen"
        await pilot.press("enter")
        await until(pilot, lambda: not app.is_running)
    run = runner_of(app).run
    last_step, last_path = run.checkpoints()[-1]
    assert last_step == runner_of(app).trainer.step and runner_of(app).state == ev.RunState.STOPPED


async def test_keys_browse_grids_fresh_noise_help_and_plot_options(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step == fake.steps)
        await pilot.press("r")
        assert isinstance(fake.commands[-1], cmd.SampleFresh)
        await pilot.press("l", "plus", "w")
        plot = app.query_one("LossPlot")
        assert plot.log_scale and plot.smoothing == 0.95 and not plot.whole_run
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        assert type(app.screen).__name__ == "DashboardScreen"
        await pilot.press("space", "s")
        assert isinstance(fake.commands[-2], cmd.Pause) and isinstance(fake.commands[-1], cmd.SaveCheckpoint)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert {"Pause / resume", "Save checkpoint", "Export", "Roll back", "Quality view", "Quit"} <= set(titles)
        assert titles.count("Quit") == 1 and "Keys" not in titles  # one Quit (ours: it asks), our help not Textual's


async def test_engine_error_is_shown_and_the_app_stays_usable(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step == fake.steps)
        app.post_message(EngineEvent(ev.ErrorRaised(400, "RuntimeError: boom", "Traceback...", str(tmp_path / "error.log"))))
        app.post_message(EngineEvent(ev.RunFinished(400, ev.RunState.FAILED, str(tmp_path))))
        await until(pilot, lambda: app.state.phase == "failed")
        await pilot.pause(0.2)
        status = str(app.query_one("#status").render())
        assert "FAILED" in status and "boom" in status
        await pilot.press("e", "p")
        await until(pilot, lambda: bool(app.state.last_export))
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
    assert app.exit_status == 1


async def test_resume_latest_reopens_the_run_with_its_history(tmp_path):
    first = GanApp(options(tmp_path, sample_every=5))
    async with first.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: first.state.step >= 20)
        await pilot.press("tab", *"5e-4", "enter", "escape")
        await until(pilot, lambda: first.state.hparams.get("lr_g") == 5e-4)
        await until(pilot, lambda: first.state.step >= first.state.markers[0] + 10)
        await pilot.press("q", "enter")
        await until(pilot, lambda: not first.is_running)
    stopped_at = runner_of(first).trainer.step
    opts = options(tmp_path, sample_every=5)
    saved = TrainConfig.load(runner_of(first).run.config_path)  # what `--resume` starts from, as the CLI does
    resumed = GanApp(Options(saved, opts.runs_dir, None, "latest", False, False, 20.0))
    async with resumed.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(resumed.state.history) > 0 and resumed.state.history.step[0] < stopped_at)
        assert resumed.state.markers == first.state.markers  # the hyperparameter change is drawn again
        assert resumed.state.grids[0].step == 0 and len(resumed.state.grids) > stopped_at // 5
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: resumed.state.view_index is not None)
        await until(pilot, lambda: resumed.state.shown_grid().images is not None)  # decoded from the run's PNG
        assert resumed.state.shown_grid().images.shape == (16, 28, 28)
        await pilot.press("q", "enter")
        await until(pilot, lambda: not resumed.is_running)


async def test_no_dataset_reachable_trains_on_the_fallback_and_says_why(tmp_path, monkeypatch):
    import engine.data as data_mod

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data_mod, "_download", lambda *a: (_ for _ in ()).throw(OSError("no network")))
    opts = options(tmp_path)
    cfg = TrainConfig.from_dict({**opts.config.to_dict(), "dataset": "mnist"})
    app = GanApp(Options(cfg, opts.runs_dir, "fallback", None, False, False, 20.0))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.phase == "running" and app.state.step > 5)
        assert "synthetic" in app.state.dataset
        assert any("could not be downloaded" in text for _, text in app.state.notes)
        await pilot.press("q", "enter")
        await until(pilot, lambda: not app.is_running)


async def test_b_asks_before_rolling_back_to_the_best_checkpoint(tmp_path):
    from engine.runs import RunDir

    run = RunDir.create(tmp_path, "judged", TrainConfig())
    for step in (200, 400):
        run.checkpoint_path(step).write_bytes(b"")  # the dashboard only names it; the engine loads it
    run.record_checkpoint_quality(200, {"fd": 12.5})
    run.record_checkpoint_quality(400, {"fd": 30.0})
    fake = FakeEngine(str(run.path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.step == fake.steps)
        await pilot.press("b")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        question = str(app.screen.query_one("Static").render())
        assert "step 200" in question and "12.5" in question and "hyperparameters in force" in question
        await pilot.press("y")
        await until(pilot, lambda: bool(fake.commands))
        assert fake.commands[-1] == cmd.RollBack("200", 1.0)
