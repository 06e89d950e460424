"""`gan-tui compare`: two real short runs (different lr_g) read from their folders, driven by keys."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from textual.app import App

from engine.runner import QueueSink, Runner
from tests.conftest import tiny_config
from tests.test_dashboard import screen_text
from tui_gan.screens.compare import CompareApp
from tui_gan.compare_data import CompareError, RunReader, config_diff, open_runs, short_names, sort_rows, summary
from tui_gan.screens.compare import CompareScreen
from tui_gan.widgets.compare_plot import ComparePlot
from tui_gan.widgets.compare_tables import DiffTable, SummaryTable


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, synthetic_data) -> Path:
    """runs/lr-fast and runs/lr-slow: 60 steps each, lr_g 1e-3 and 3e-4 (the second changes lr_d at 30)."""
    from engine import commands as cmd

    runs_dir = tmp_path_factory.mktemp("compare") / "runs"
    for name, lr_g in (("lr-fast", 1e-3), ("lr-slow", 3e-4)):
        runner = Runner(tiny_config(steps=60, lr_g=lr_g, tensorboard=False), QueueSink(), runs_dir=runs_dir,
                        run_name=name, data=synthetic_data)
        runner.setup()
        while runner.tick():
            if name == "lr-slow" and runner.trainer.step == 30:
                runner.submit(cmd.SetHyperparams({"lr_d": 5e-4}))
    return runs_dir


@pytest.fixture
def runs(two_runs, tmp_path) -> Path:
    """A private copy of the two runs (tests append to their logs)."""
    copy = tmp_path / "runs"
    shutil.copytree(two_runs, copy)
    return copy


async def until(pilot, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


def append(run: Path, record: dict) -> None:
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")


def metrics_record(step: int, d_loss: float) -> dict:
    return {"type": "metrics", "step": step, "epoch": 1.0, "d_loss": d_loss, "g_loss": 1.0, "d_real": 0.6, "d_fake": 0.4,
            "grad_norm_g": 1.0, "grad_norm_d": 1.0, "lr_g": 1e-3, "lr_d": 1e-3, "images_per_s": 100.0, "elapsed_s": 9.0}


# ----------------------------------------------------------------- the app
async def test_both_runs_named_with_curves_and_the_lr_g_diff_row(runs):
    app = CompareApp(open_runs(["lr-fast", "lr-slow"], runs))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        await until(pilot, lambda: len(app.screen.query_one(ComparePlot).lines) == 2)
        plot = screen.query_one(ComparePlot)
        assert [(name, n) for name, n in plot.lines] == [("lr-fast", 12), ("lr-slow", 12)]  # every 5th of 60 steps
        def x_axis() -> str:
            return next((line for line in screen_text(app) if line.strip().startswith(("5 ", "10 "))), "")

        await until(pilot, lambda: len(x_axis().split()) >= 2)
        assert "." not in x_axis(), x_axis()  # whole steps, not plotext's 27.5
        table = screen.query_one(SummaryTable)
        assert {str(k.value) for k in table.rows} == {"lr-fast", "lr-slow"}
        legend = str(screen.query_one("#cmp-legend").render())
        assert "fast" in legend and "slow" in legend
        await pilot.press("d")
        diff = screen.query_one(DiffTable)
        assert {str(k.value) for k in diff.rows} == {"lr_g", "lr_d"}  # lr_d: changed live in the slow run
        assert [str(c) for c in diff.get_row("lr_g")] == ["lr_g", "0.001", "0.0003"]
        assert screen.query_one(ComparePlot).markers == [("lr-slow", 30.0)]
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
    assert app.return_code == 0


async def test_keys_switch_the_metric_and_the_x_axis(runs):
    app = CompareApp(open_runs(["lr-fast", "lr-slow"], runs))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        plot = screen.query_one(ComparePlot)
        await until(pilot, lambda: len(plot.lines) == 2)
        assert (screen.metric, screen.x_axis) == ("d_loss", "step")
        await pilot.press("m")
        assert screen.metric == "g_loss" and "G loss" in str(screen.query_one("#cmp-header").render())
        await pilot.press("m")
        assert screen.metric == "d_probs" and len(plot.lines) == 4  # D(x) and D(G(z)) of each run
        steps_x = plot.x_range
        await pilot.press("x")
        assert screen.x_axis == "images" and "images seen" in str(screen.query_one("#cmp-header").render())
        assert plot.x_range[1] == pytest.approx(60 * 16)  # 60 steps of 16 images
        await pilot.press("x")
        assert screen.x_axis == "time" and plot.x_range != steps_x
        await pilot.press("minus")
        assert screen.smoothing == 0.8
        await pilot.press("s")
        assert screen.sort_key == "to_3x_s"


async def test_a_running_run_updates_live_and_a_silent_one_is_marked(runs):
    app = CompareApp(open_runs(["lr-fast", "lr-slow"], runs))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        plot, table = screen.query_one(ComparePlot), screen.query_one(SummaryTable)
        await until(pilot, lambda: len(plot.lines) == 2)
        assert str(table.get_row("lr-slow")[5]) == "60"
        for step in (65, 70, 75):
            append(runs / "lr-slow", metrics_record(step, 0.5))
        await until(pilot, lambda: dict(plot.lines)["lr-slow"] == 15)  # read within about a second
        assert str(table.get_row("lr-slow")[5]) == "75"
        assert dict(plot.lines)["lr-fast"] == 12
        # A run whose state says running (a live pid) but whose log stopped long ago reads as silent.
        (runs / "lr-fast" / "state.json").write_text(json.dumps({"state": "running", "step": 60, "pid": os.getpid()}))
        old = time.time() - 120
        os.utime(runs / "lr-fast" / "metrics.jsonl", (old, old))
        await until(pilot, lambda: str(table.get_row("lr-fast")[6]).startswith("silent"))


async def test_the_dashboard_entry_point_opens_over_a_runs_folder_and_q_comes_back(runs):
    class Host(App):
        BINDINGS = [("space", "pause_training", "")]
        paused = False

        def action_pause_training(self) -> None:
            self.paused = True

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(CompareScreen.over_runs_dir(runs))
        screen = app.screen
        assert isinstance(screen, CompareScreen) and [r.name for r in screen.readers] == ["lr-fast", "lr-slow"]
        await pilot.press("space", "g")
        assert not app.paused  # the dashboard's keys do not reach through to the run
        assert "lr-fast" not in str(screen.query_one("#grid-title-0").render())  # short names: fast / slow
        assert "@ 60" in str(screen.query_one("#grid-title-0").render())
        await pilot.press("q")
        assert not isinstance(app.screen, CompareScreen) and app.is_running


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "nope"], "run nope does not exist"),
        (["compare", "notarun"], "is not a gan-tui run"),
        (["compare", *[f"r{i}" for i in range(7)]], "at most 6 runs"),
        (["compare", "lr-fast", "lr-fast"], "named twice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs, capsys, argv, message):
    from tui_gan.cli import main

    (runs / "notarun").mkdir()
    assert main([*argv, "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ------------------------------------------------------- pure functions
def test_reader_reads_only_what_was_appended_and_starts_over_when_the_log_is_replaced(runs):
    reader = RunReader(open_runs(["lr-fast"], runs)[0].run)
    assert reader.poll() and len(reader.series.step) == 12
    assert not reader.poll()  # nothing new: nothing changed
    log = runs / "lr-fast" / "metrics.jsonl"
    with log.open("a") as f:
        f.write(json.dumps(metrics_record(65, 0.5))[:20])  # half a line: the writer is mid-write
    reader.poll()
    assert reader.series.step[-1] == 60
    with log.open("a") as f:
        f.write(json.dumps(metrics_record(65, 0.5))[20:] + "\n")
    assert reader.poll() and reader.series.step[-1] == 65
    kept = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= 30]
    tmp = log.with_suffix(".tmp")
    tmp.write_text("\n".join(kept) + "\n")
    os.replace(tmp, log)  # what a rollback does
    assert reader.poll() and reader.series.step[-1] == 30


async def test_a_line_that_is_not_utf8_is_skipped_not_a_crash(runs):
    with (runs / "lr-fast" / "metrics.jsonl").open("ab") as f:
        f.write(b'{"type": "metrics", "step": 61, "note": "caf\xe9"}\n\xff garbage\n')
    append(runs / "lr-fast", metrics_record(65, 0.5))
    app = CompareApp(open_runs(["lr-fast", "lr-slow"], runs))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: len(app.screen.query_one(ComparePlot).lines) == 2)
        assert dict(app.screen.query_one(ComparePlot).lines)["lr-fast"] == 13
        assert app.screen.query_one(SummaryTable).row_count == 2


def test_summary_best_fd_time_to_3x_confidence_and_alarms(runs):
    run = runs / "lr-fast"
    for step, fd, conf in ((20, 40.0, 0.5), (40, 20.0, 0.7), (60, 24.0, 0.8)):
        append(run, {"type": "quality", "step": step, "fd": fd, "fd_floor": 8.0, "confidence": conf})
    append(run, {"type": "alarm", "step": 50, "kind": "d_wins", "message": "D wins"})
    reader = open_runs([str(run)], runs)[0]
    reader.poll()
    row = summary(reader)
    assert (row["best"], row["best_step"], row["confidence"], row["alarms"], row["active"]) == (2.5, 40, 0.8, 1, ["d_wins"])
    elapsed_at_40 = next(r["elapsed_s"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["step"] == 40)
    assert row["to_3x_s"] == pytest.approx(elapsed_at_40)  # the first measurement at or under 3x floor
    assert row["state"] == "finished"
    rows = [row, {**row, "name": "b", "best": None}, {**row, "name": "c", "best": 1.5}]
    assert [r["name"] for r in sort_rows(rows, "best")] == ["c", "lr-fast", "b"]


def test_config_diff_and_short_names():
    a = {"lr_g": 0.001, "lr_d": 0.001, "preset": "mlp"}
    b = {"lr_g": 0.0003, "lr_d": 0.001, "preset": "mlp"}
    assert config_diff([a, b]) == [("lr_g", ["0.001", "0.0003"])]
    assert config_diff([a, a]) == []
    assert short_names(["20261122-221000-mnist-dcgan", "20261122-231500-mnist-dcgan"]) == ["221000", "231500"]
    assert short_names(["a", "b"]) == ["a", "b"]


def test_open_runs_refuses_nothing_to_compare(tmp_path):
    with pytest.raises(CompareError):
        open_runs([], tmp_path)
