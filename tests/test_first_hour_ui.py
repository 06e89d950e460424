"""The first hour on the dashboard (issue 25), driven by real key presses: the judge's progress in the
quit dialog, the status bar and the quality panel (for a freshly attached viewer too); a fallback run
says why on its first screen; a terminal too small says so and keeps q; the paused footer keeps
`n Step`; the export menu says what it writes and no toast covers it; notes write step counts as the
status bar does; compare's legend names what differs."""

from __future__ import annotations

import pytest

from engine import events as ev
from tests.fakes import FakeEngine
from tests.test_app import options, until
from tests.test_dashboard import SMALL, OwnedEngine, screen_text, started
from tui_gan.app import GanApp
from tui_gan.describe import notes
from tui_gan.screens.dashboard import MIN_COLUMNS, MIN_ROWS
from tui_gan.state import DashboardState, QualityHistory
from tui_gan.widgets.quality_panel import figures_text


class JudgeTrainingEngine(OwnedEngine):
    """A launched run whose quality judge is still training (epoch 3 of 6, continuing an earlier run's)."""

    def __init__(self, run_dir: str, resumed: int = 0) -> None:
        super().__init__(run_dir)
        self.resumed = resumed

    def start(self, emit, progress) -> None:
        self._emit = emit
        progress("importing torch...")
        emit(ev.RunStarted(self.run_dir, self.config.to_dict(), "cpu", "CPU", "mnist (t10k, 10,000 images)", "",
                           0, 10_000, False))
        emit(ev.StateChanged(ev.RunState.RUNNING, 0))
        emit(ev.JudgeProgress(3, 6, self.resumed))
        for step in range(20, self.steps + 1, 20):
            emit(ev.MetricsLogged(step, step / 150, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 2e-4, 8e-4, 2000.0, step / 30))


def fallback_note(tmp_path, monkeypatch) -> str:
    """engine/data.py's own note for a named dataset that is neither on disk nor downloadable."""
    import engine.data as data_mod

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))

    def offline(*_args):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(data_mod, "_download", offline)
    data = data_mod.load_dataset("mnist")
    assert data.info.name == "synthetic" and data.info.note
    return data.info.note


class FallbackEngine(OwnedEngine):
    """A launched run that fell back to the synthetic digits (the note is the engine's own)."""

    def __init__(self, run_dir: str, note: str) -> None:
        super().__init__(run_dir)
        self.note = note

    def start(self, emit, progress) -> None:
        self._emit = emit
        emit(ev.RunStarted(self.run_dir, self.config.to_dict(), "cpu", "CPU",
                           "synthetic (generated, 10,000 images) from embedded font digits", self.note, 0, 10_000, False))
        emit(ev.StateChanged(ev.RunState.RUNNING, 0))
        for step in range(20, self.steps + 1, 20):
            emit(ev.MetricsLogged(step, step / 150, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 2e-4, 8e-4, 2000.0, step / 30))


# ------------------------------------------------------------------ the judge
async def test_the_quit_dialog_says_stopping_now_leaves_the_judge_unfinished(tmp_path):
    fake = JudgeTrainingEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: app.state.step == fake.steps)
        assert "training the quality judge: epoch 3 of 6" in screen_text(app)[1]  # the status bar
        await pilot.press("q")
        await until(pilot, lambda: type(app.screen).__name__ == "QuitScreen")
        await pilot.pause(0.2)
        text = " ".join(" ".join(screen_text(app)).split())
        assert "still training (epoch 3 of 6)" in text and "without quality figures" in text
        assert "next run of this dataset continues it" in text
        await pilot.press("escape")
        assert type(app.screen).__name__ == "DashboardScreen"


async def test_the_quit_and_stop_questions_follow_the_step_while_the_run_trains_on(tmp_path):
    fake = JudgeTrainingEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: app.state.step == fake.steps)
        for key, screen, asked in (("q", "QuitScreen", "Quit at step"), ("X", "ConfirmScreen", "Stop the run at step")):
            await pilot.press(key)
            await until(pilot, lambda: type(app.screen).__name__ == screen)
            step = app.state.step
            assert f"{asked} {step:,}?" in " ".join(screen_text(app))
            fake._emit(ev.MetricsLogged(step + 1000, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 2e-4, 8e-4, 2000.0, 9.0))
            await until(pilot, lambda: f"{asked} {step + 1000:,}?" in " ".join(screen_text(app)), timeout=10)
            await pilot.press("escape")
            await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen")


async def test_the_quit_dialog_of_a_run_whose_judge_is_ready_says_nothing_of_it(tmp_path):
    fake = OwnedEngine(str(tmp_path))  # its history ends with JudgeReady and quality figures
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        await pilot.press("q")
        await until(pilot, lambda: type(app.screen).__name__ == "QuitScreen")
        assert not app.screen.query("#quit-judge") and "judge" not in " ".join(screen_text(app)[:12])


async def test_a_judge_continuing_an_earlier_runs_training_says_so(tmp_path):
    fake = JudgeTrainingEngine(str(tmp_path), resumed=2)
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(120, 40)) as pilot:  # both panels show from 40 rows
        await until(pilot, lambda: app.state.step == fake.steps)
        await pilot.pause(0.3)
        text = "\n".join(screen_text(app))
        assert "training the quality judge: epoch 3 of 6, continuing from epoch 3" in text  # the status bar
        assert "continuing from epoch 3" in " ".join(app.screen.query_one("#quality-figures").render().plain.split())
        assert any("continuing from epoch 3" in line for _, line in app.state.notes)
    assert "continuing" not in figures_text(QualityHistory(judge_progress=ev.JudgeProgress(3, 6, 0))).plain


def test_after_the_end_the_status_says_the_judge_never_got_ready():
    state = DashboardState()
    for event in (ev.StateChanged(ev.RunState.RUNNING, 0), ev.JudgeProgress(2, 6),
                  ev.RunFinished(500, ev.RunState.STOPPED, "runs/x")):
        state.apply(event)
    assert state.judge_status == "no quality figures: the judge was still training (epoch 2 of 6)"
    assert state.judge_unfinished is None  # nothing left to stop: the quit dialog has no judge line


def test_a_freshly_attached_viewer_gets_the_judges_progress_and_then_its_readiness(tmp_path):
    """The control server's snapshot holds the judge: a new viewer shows what the launching one shows."""
    from engine.server import SOCKET_NAME, ControlServer
    from tests.test_server import Viewer

    server = ControlServer(tmp_path / SOCKET_NAME, lambda command: None)
    server.start()
    try:
        server.publish(ev.RunStarted("runs/x", {}, "cpu", "CPU", "mnist", "", 0, 100, False))
        server.publish(ev.JudgeProgress(2, 6, 1))
        early = Viewer(tmp_path / SOCKET_NAME)
        snapshot = [early.next()["event"] for _ in range(2)]
        assert snapshot == ["RunStarted", "JudgeProgress"]
        server.publish(ev.JudgeReady(0.99, 2000, "trained", 60.0, 1000, 9.0))
        late = Viewer(tmp_path / SOCKET_NAME)
        seen = [late.next() for _ in range(2)]
        assert [m["event"] for m in seen] == ["RunStarted", "JudgeReady"]  # the ready judge replaced the progress
    finally:
        server.close()


# ------------------------------------------------------------- the fallback data
async def test_a_fallback_run_says_why_and_the_fix_on_its_first_screen_at_80x24(tmp_path, monkeypatch):
    note = fallback_note(tmp_path, monkeypatch)
    fake = FallbackEngine(str(tmp_path), note)
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: app.state.step == fake.steps)
        await pilot.pause(0.3)
        lines = screen_text(app)
        third = lines[2]  # the status bar's third line, above the panels
        assert "synthetic digits" in third and "mnist not found, download failed" in third, lines
        assert "--data-root DIR" in third
        assert len(third.rstrip()) <= 80
        assert "too small" not in "\n".join(lines)  # 80x24 still draws every panel with the extra line
        first = app.state.notes[0][1]
        assert first.startswith("started: synthetic") and "because mnist is not in" in first and "--data-root" in first
        assert sum("Using the embedded font digits" in text for _, text in app.state.notes) == 0  # said once


# ------------------------------------------------------------------ small things
@pytest.mark.parametrize("size", [(40, 12), (MIN_COLUMNS - 1, MIN_ROWS), (MIN_COLUMNS, MIN_ROWS - 1)])
async def test_below_the_smallest_size_one_message_and_q_still_quits(tmp_path, size):
    fake = OwnedEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=size) as pilot:
        await started(pilot, app, fake)
        lines = screen_text(app)
        text = "\n".join(lines)
        assert f"terminal too small: {size[0]}x{size[1]}" in text and f"{MIN_COLUMNS}x{MIN_ROWS}" in text
        assert "q Quit" in lines[-1] and "h/? Help" in lines[-1]
        await pilot.press("q")
        await until(pilot, lambda: type(app.screen).__name__ == "QuitScreen")
        await pilot.press("enter")
        await until(pilot, lambda: not app.is_running)


async def test_at_the_smallest_size_every_panel_draws(tmp_path):
    fake = OwnedEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=(MIN_COLUMNS, MIN_ROWS)) as pilot:
        await started(pilot, app, fake)
        text = "\n".join(screen_text(app))
        assert "too small" not in text and "samples @ step" in text and "label smoothing" in text
        assert "notes · m: all" in text and "q Quit" in screen_text(app)[-1]


async def test_the_paused_footer_at_80_columns_shows_n_step(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app, fake)
        assert "n Step" not in screen_text(app)[-1]
        app.post_message(__import__("tui_gan.messages", fromlist=["EngineEvent"]).EngineEvent(
            ev.StateChanged(ev.RunState.PAUSED, fake.steps, "paused by the user")))
        await until(pilot, lambda: "space Resume" in screen_text(app)[-1])
        bottom = screen_text(app)[-1]
        assert "n Step" in bottom and "q Quit" in bottom and "h/? Help" in bottom


async def test_the_export_menu_says_it_writes_the_whole_grid_and_no_toast_covers_it(tmp_path):
    fake = FakeEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await started(pilot, app, fake)
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "ExportScreen")
        assert "all digits of the grid on screen as a PNG" in "\n".join(screen_text(app))
        for i in range(3):  # what arrives while the menu is open: checkpoints, warnings
            app.notify(f"runs/x/checkpoints/step_0000{i}400.pt", title="checkpoint saved", timeout=30)
        await pilot.pause(0.5)
        box = app.screen.query_one("#export-box").region
        toasts = [t.region for t in app.screen.query("Toast")]
        assert toasts and all(t.height for t in toasts)
        assert not any(box.overlaps(t) for t in toasts), (box, toasts)
        await pilot.press("escape")


def test_notes_write_step_counts_as_the_status_bar_does():
    paused = ev.StateChanged(ev.RunState.PAUSED, 2103, "non-finite loss or gradient before step 2103")
    assert notes(paused)[0].text == "paused: non-finite loss or gradient before step 2,103"
    warning = ev.WarningRaised(2103, "resumed at step 2103: 1234 steps after the last checkpoint were lost", "resume")
    assert notes(warning)[0].text == "warning: resumed at step 2,103: 1,234 steps after the last checkpoint were lost"
    alarm = ev.AlarmRaised(12000, "grad_spike", "exploding gradients at step 12000: G 40x its median")
    assert "at step 12,000" in notes(alarm)[0].text
    saved = ev.CheckpointSaved(2103, "runs/x/checkpoints/step_00002103.pt", "requested")
    assert notes(saved)[0].text == "checkpoint saved at step 2,103 (requested): runs/x/checkpoints/step_00002103.pt"


async def test_compare_names_what_differs_on_its_first_screen(tmp_path, synthetic_data):
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config
    from tui_gan.compare_data import open_runs
    from tui_gan.screens.compare import CompareApp

    runs = tmp_path / "runs"
    for name, lr_g in (("cmpa", 1e-3), ("cmpb", 3e-4)):
        runner = Runner(tiny_config(steps=10, lr_g=lr_g), QueueSink(), runs_dir=runs, run_name=name,
                        data=synthetic_data)
        runner.setup()
        while runner.tick():
            pass
    app = CompareApp(open_runs(["cmpa", "cmpb"], runs))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.5)
        legend = screen_text(app)[1]
        assert "cmpa lr_g 1e-3" in legend and "cmpb lr_g 3e-4" in legend, legend
        assert "seed" not in legend  # only what differs


class UserErrorEngine(OwnedEngine):
    """A launched run that fails on a mistake of the user's (a data root without images, say)."""

    def start(self, emit, progress) -> None:
        self._emit = emit
        emit(ev.ErrorRaised(0, "data root /x holds no IDX files and no images", "Traceback ...", "", user_error=True))
        emit(ev.StateChanged(ev.RunState.FAILED, 0, "data root /x holds no IDX files and no images"))
        emit(ev.RunFinished(0, ev.RunState.FAILED, self.run_dir))


async def test_the_dashboard_of_a_run_that_failed_on_a_user_error_exits_2(tmp_path):
    fake = UserErrorEngine(str(tmp_path))
    app = GanApp(options(tmp_path), engine=fake)
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: app.state.phase == "failed")
        assert ("error", "cannot train: data root /x holds no IDX files and no images") in app.state.notes
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_code == 2


def test_a_launched_trainer_that_ends_at_start_up_with_status_2_is_a_user_error(tmp_path):
    """The dashboard's link to a trainer that never served (its setup refused the run): status 2 says whose."""
    import subprocess
    import sys

    from tui_gan.process.socket_link import SocketEngine

    log = tmp_path / "train.log"
    log.write_text("importing torch...\ncannot train: data root /x does not exist\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    proc.wait(30)
    seen: list[ev.Event] = []
    link = SocketEngine(tmp_path, proc, log)
    link._serve(seen.append, lambda text: None)  # the link's thread body, run here
    error = next(e for e in seen if isinstance(e, ev.ErrorRaised))
    assert error.user_error and "cannot train: data root /x does not exist" in error.message
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].state == ev.RunState.FAILED


def test_a_trainer_that_fails_after_its_closing_lines_is_reported_by_its_cannot_train_line(tmp_path):
    """The closing lines (run folder, export, list) follow a failure in the log: the dashboard shows why."""
    import subprocess
    import sys

    from tui_gan.process.socket_link import SocketEngine

    log = tmp_path / "train.log"
    log.write_text("importing torch...\nloading the dataset and building the models...\ncannot train: run x has a "
                   "damaged checkpoint\nfailed at step 0\nrun folder: x\n  export:  gan-tui export x gif\n"
                   "  list:    gan-tui ls\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    proc.wait(30)
    seen: list[ev.Event] = []
    SocketEngine(tmp_path, proc, log)._serve(seen.append, lambda text: None)
    error = next(e for e in seen if isinstance(e, ev.ErrorRaised))
    assert error.message.endswith("cannot train: run x has a damaged checkpoint"), error.message


def viewer_of_a_trainer_that(tmp_path, serve) -> list[ev.Event]:
    """The events an attached viewer's link delivers from a stand-in trainer socket that runs
    `serve(listening_socket, run_dir)` on a thread; the link must end within a minute."""
    import socket
    import threading

    from engine.server import socket_path
    from tui_gan.process.socket_link import SocketEngine

    run = tmp_path / "r"
    run.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(socket_path(run)))
    server.listen(2)
    threading.Thread(target=serve, args=(server, run), daemon=True).start()
    seen: list[ev.Event] = []
    link = SocketEngine(run)
    body = threading.Thread(target=link._serve, args=(seen.append, lambda text: None), daemon=True)
    body.start()  # the link's thread body
    body.join(60)
    link.detach()
    socket_path(run).unlink(missing_ok=True)
    assert not body.is_alive(), seen
    return seen


def test_an_attached_viewer_whose_trainer_dies_before_its_first_checkpoint_says_it_cannot_be_resumed(tmp_path):
    """No checkpoint, nothing to resume: the viewer says so and ends, instead of offering a resume that
    fails and waiting for it."""

    def serve_then_die(server, run) -> None:
        conn, _ = server.accept()
        conn.close()  # as a trainer killed with SIGKILL: the connection drops, no RunFinished
        server.close()

    seen = viewer_of_a_trainer_that(tmp_path, serve_then_die)
    warning = next(e for e in seen if isinstance(e, ev.WarningRaised))
    assert "saved no checkpoint, so nothing of it can be resumed" in warning.message and "--resume" not in warning.message
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].state == ev.RunState.INTERRUPTED


def test_a_viewer_the_live_trainer_let_go_of_connects_again_without_a_word(tmp_path):
    """The server drops a viewer that falls behind; the trainer lives on: no "went away", no resume hint."""
    from engine.protocol import encode_event

    def drop_then_serve(server, run) -> None:
        first, _ = server.accept()
        first.close()  # let go of the viewer, training on
        second, _ = server.accept()
        second.sendall(encode_event(ev.RunFinished(7, ev.RunState.FINISHED, str(run))))
        second.close()
        server.close()

    seen = viewer_of_a_trainer_that(tmp_path, drop_then_serve)
    assert not any(isinstance(e, ev.WarningRaised) for e in seen), seen
    assert seen[-1] == ev.RunFinished(7, ev.RunState.FINISHED, str(tmp_path / "r"))
