"""`gan-tui sweep` without Ray running: flags, the missing-Ray message, grid points, the headless table."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine.sweep.driver import grid_points
from engine.sweep.rows import describe_best, format_table, read_trials, sparkline
from engine.sweep.spec import Range, SweepError, SweepSpec, SweepStatus
from tests.conftest import tiny_config
from tui_gan import cli, sweep_cmd


def test_without_ray_the_command_says_how_to_install_it_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sweep_cmd, "ray_installed", lambda: False)
    status = cli.main(["sweep", "--trials", "3", "--runs-dir", str(tmp_path), "--dataset", "synthetic"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "pip install 'gan-tui[sweep]'" in err and "uv sync --extra sweep" in err
    assert not any(tmp_path.iterdir())  # nothing was started or written


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--trials", "3", "--lr-g", "abc"], "--lr-g 'abc'"),
        (["--trials", "3", "--lr-d", "1e-3:1e-4"], "LO must not be above HI"),
        (["--trials", "3", "--batch-size", "32,x"], "--batch-size"),
        (["--trials", "1", "--search", "pbt"], "at least 2 trials"),
        (["--trials", "3", "--quality-every", "0"], "--quality-every must be above 0"),
        (["--trials", "3", "--resume", "latest"], "--resume does not apply to a sweep"),
        (["--trials", "3", "--device", "cuda"], "--gpus-per-trial"),
    ],
)
def test_bad_sweep_flags_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert cli.main(["sweep", "--runs-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_flags_become_a_spec_with_absolute_paths_and_the_training_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec, headless = sweep_cmd.parse_sweep(
        ["--trials", "6", "--search", "grid", "--lr-g", "1e-4:1e-3", "--lr-d", "3e-4", "--batch-size", "32,64",
         "--steps", "500", "--quality-every", "100", "--dataset", "synthetic", "--data-root", "data",
         "--sweep-name", "s1", "--gpus-per-trial", "0.25", "--headless"])
    assert headless and spec.search == "grid" and spec.trials == 6 and spec.gpus_per_trial == 0.25
    assert spec.path == tmp_path / "runs" / "s1" and spec.config["steps"] == 500
    assert spec.config["data_root"] == str(tmp_path / "data")
    assert spec.lr_g == (1e-4, 1e-3) and spec.lr_d == (3e-4, 3e-4) and spec.batch_sizes == (32, 64)
    (tmp_path / "runs" / "s1").mkdir(parents=True)
    (tmp_path / "runs" / "s1" / "x").write_text("")
    with pytest.raises(SweepError, match="already exists"):
        sweep_cmd.parse_sweep(["--trials", "2", "--sweep-name", "s1"])


def test_a_grid_has_exactly_the_trials_asked_for_spread_over_ranges_and_batch_sizes(tmp_path):
    spec = SweepSpec(name="g", sweep_dir=str(tmp_path), config=tiny_config(quality_every=10).to_dict(), trials=6,
                     search="grid", lr_g=(1e-4, 1e-2), lr_d=(2e-4, 2e-4), batch_sizes=(16, 32))
    points = grid_points(spec)
    assert len(points) == 6 and len({tuple(sorted(p.items())) for p in points}) == 6
    assert {p["batch_size"] for p in points} == {16, 32} and {p["lr_d"] for p in points} == {2e-4}
    assert min(p["lr_g"] for p in points) == 1e-4 and max(p["lr_g"] for p in points) == 1e-2
    assert Range(1e-4, 1e-2).points(3) == [1e-4, 1e-3, 1e-2]


def test_the_headless_table_reads_trial_folders_and_names_the_best(make_runner, tmp_path):
    from engine import events as ev

    runner, _ = make_runner(run_name="trial-000")
    while runner.tick():
        pass
    sweep_dir = Path(runner.run.path).parent
    runner.run.append_log({"type": "quality", "step": 40, "fd": 30.0, "fd_floor": 10.0})
    runner.run.append_log({"type": "hparams", "step": 40, "old": {"lr_g": 1e-3}, "new": {"lr_g": 5e-4},
                           "source": "pbt", "action": "exploit", "member": "trial-001"})
    status = SweepStatus(state="finished", trials={"trial-001": {"status": "PENDING", "config": {"lr_g": 2e-4}}},
                         best={"trial": "trial-000", "fd_ratio": 3.0, "step": 40, "config": {"lr_g": 5e-4}})
    rows = read_trials(sweep_dir, status)
    assert [r.name for r in rows] == ["trial-000", "trial-001"]
    assert rows[0].state == ev.RunState.FINISHED.value and rows[0].fd_ratio == 3.0 and rows[0].lr_g == 5e-4
    assert rows[0].copied_from == "trial-001@40" and rows[1].state == "pending"
    table = format_table(rows, status)
    assert "trial-000" in table and "3.00x" in table and "sweep finished" in table
    assert describe_best(status).startswith("best: trial-000 FD/floor 3.00x at step 40")
    assert sparkline([3.0, 2.0, 1.0]) == "█▅▁"


def test_watch_headless_prints_the_table_and_the_best_when_the_sweep_is_over(tmp_path):
    SweepStatus(state="stopped", best={"trial": "trial-002", "fd_ratio": 2.5, "config": {"lr_g": 1e-4}}).save(tmp_path)
    out = io.StringIO()
    assert sweep_cmd.watch_headless(tmp_path, out) == 0
    text = out.getvalue()
    assert "TRIAL" in text and "sweep stopped" in text and "best: trial-002 FD/floor 2.50x" in text
