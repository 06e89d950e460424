"""`gan-tui sweep` without Ray running: flags, the missing-Ray message, grid points, the headless table."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine import commands as cmd

from engine.sweep.driver import grid_points
from engine.sweep.rows import best_trial, describe_best, format_table, read_trials, sparkline
from engine.sweep.spec import Range, SweepError, SweepSpec, SweepStatus
from tests.conftest import tiny_config
from tui_gan import cli
from tui_gan.cli import sweep as sweep_cmd


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
    (tmp_path / "data").mkdir()  # a --data-root that does not exist is refused before anything starts
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
    # Stopped, the trial measured its final checkpoint after its last report to Ray: that figure counts.
    runner.run.append_log({"type": "quality", "step": 52, "fd": 20.0, "fd_floor": 10.0})
    rows = read_trials(sweep_dir, status)
    assert rows[0].best == {"trial": "trial-000", "fd_ratio": 2.0, "step": 52,
                            "config": {"lr_g": 5e-4, "lr_d": rows[0].lr_d, "d_steps": rows[0].d_steps,
                                       "batch_size": rows[0].batch_size}}
    assert describe_best(status, rows).startswith("best: trial-000 FD/floor 2.00x at step 52 (lr_g 5e-4")
    assert best_trial(status, rows)["fd_ratio"] == 2.0 and best_trial(status)["fd_ratio"] == 3.0


def test_watch_headless_prints_the_table_and_the_best_when_the_sweep_is_over(tmp_path):
    SweepStatus(state="stopped", best={"trial": "trial-002", "fd_ratio": 2.5, "config": {"lr_g": 1e-4}}).save(tmp_path)
    out = io.StringIO()
    assert sweep_cmd.watch_headless(tmp_path, out) == 0
    text = out.getvalue()
    assert "TRIAL" in text and "sweep stopped" in text and "best: trial-002 FD/floor 2.50x" in text


def test_restoring_a_members_checkpoint_logs_exploit_and_explore_and_keeps_a_hand_change(make_runner, tmp_path):
    """The PBT exploit without Ray: the member's weights become the trial's newest checkpoint; a learning
    rate the member's owner changed by hand is perturbed by PBT's factor, not replaced. A trainer live on
    the trial's folder refuses the exploit, which then touches nothing."""
    import json
    import shutil

    from engine.checkpoint import load_checkpoint
    from engine.lock import RunLocked
    from engine.restore import Exploit
    from engine.sweep.trial import CKPT_FILE, META_FILE

    member, _ = make_runner(run_name="trial-001", lr_g=1e-3, lr_d=1e-3)
    member.submit(cmd.SetHyperparams({"lr_g": 4e-4}))  # by hand, through its dashboard
    while member.trainer.step < 20:
        member.tick()
    member.submit(cmd.SaveCheckpoint())
    member.tick()
    member.settle()
    own, _ = make_runner(run_name="trial-000", lr_g=2e-4, lr_d=2e-4)
    for _ in range(30):
        own.tick()
    own.submit(cmd.SaveCheckpoint())
    own.tick()
    own.settle()  # checkpoints reach the disk on the journal's writer thread
    sweep_dir = Path(member.run.path).parent
    tune_ckpt = tmp_path / "tune-ckpt"
    tune_ckpt.mkdir()
    shutil.copy2(member.run.checkpoint_path(20), tune_ckpt / CKPT_FILE)
    meta = {"trial": "trial-001", "step": 20, "tune_config": {"lr_g": 1e-3, "lr_d": 1e-3}}
    (tune_ckpt / META_FILE).write_text(json.dumps(meta))
    exploit = Exploit(tune_ckpt / CKPT_FILE, meta, origin="X")
    before = sorted(p.name for p in (sweep_dir / "trial-000").rglob("*"))
    with pytest.raises(RunLocked):  # `own` still trains trial-000 (a hand resume, say)
        make_runner(run_name="trial-000", exploit=exploit)
    assert sorted(p.name for p in (sweep_dir / "trial-000").rglob("*")) == before
    own.submit(cmd.Stop(save=False))
    while own.tick():
        pass
    # PBT perturbed Ray's view of the member (lr_g 1e-3, lr_d 1e-3) by 1.2 and 0.8.
    trial, _ = make_runner(run_name="trial-000", exploit=exploit, lr_g=1.2e-3, lr_d=0.8e-3)
    trial.settle()  # the restored state reaches the disk on the journal's writer thread
    cfg = trial.cfg
    assert cfg.lr_g == pytest.approx(4e-4 * 1.2) and cfg.lr_d == pytest.approx(0.8e-3)
    records = [json.loads(line) for line in (sweep_dir / "trial-000" / "metrics.jsonl").read_text().splitlines()]
    pbt = [r for r in records if r.get("source") == "pbt"]
    assert [r["action"] for r in pbt] == ["exploit", "explore"]
    assert pbt[0]["member"] == "trial-001" and pbt[0]["step"] == 20 and pbt[0]["checkpoint"] == "X"
    assert pbt[0]["old"]["lr_g"] == 2e-4 and pbt[0]["new"]["lr_g"] == 4e-4 and pbt[1]["new"]["lr_g"] == cfg.lr_g
    restored = load_checkpoint(sweep_dir / "trial-000" / "checkpoints" / "step_00000020.pt")
    copied = load_checkpoint(member.run.checkpoint_path(20))
    for key, value in copied["trainer"]["generator"].items():
        assert (restored["trainer"]["generator"][key] == value).all()
    assert restored["config"]["lr_g"] == cfg.lr_g
    assert not (sweep_dir / "trial-000" / "checkpoints" / "step_00000030.pt").exists()  # set aside, not lost
    assert (sweep_dir / "trial-000" / "checkpoints" / "abandoned" / "step_00000030.pt").exists()
    trial.abandon()


def test_export_and_compare_given_a_sweep_folder_say_its_trials_are_the_runs(tmp_path, capsys):
    from engine.runs import RunError, resolve_run
    from tui_gan.cli import main

    sweep = tmp_path / "sw"
    sweep.mkdir()
    SweepSpec(name="sw", sweep_dir=str(sweep), config=tiny_config().to_dict(), trials=2).save()
    with pytest.raises(RunError, match=r"is a sweep, not a run: its trials are the runs \(gan-tui ls --runs-dir "):
        resolve_run(tmp_path, "sw")
    assert main(["export", str(sweep), "grid"]) == 2
    assert "is a sweep, not a run" in capsys.readouterr().err
    with pytest.raises(RunError, match=r"no runs in .*empty, so no latest one"):
        resolve_run(tmp_path / "empty", "latest")
