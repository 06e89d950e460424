"""`gan-tui ls --json` and the table's issue-25 items, on real run folders made by tiny runs and read by
real `gan-tui ls` processes: a finished, a live (its runner holds the folder's lock) and damaged runs;
a sweep folder with a dead driver; why a run has no FD; one learning-rate formatter."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import commands as cmd
from engine import events as ev
from engine.runs import RUN_KEYS, format_lr, format_lr_pair
from engine.runs.details import run_details
from engine.runs.summary import run_summary
from engine.sweep.spec import SweepSpec, SweepStatus
from tests.conftest import tiny_config
from tui_gan.cli.ls import SWEEP_KEYS

ROOT = Path(__file__).resolve().parents[1]


def gan_tui(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real command in a process of its own."""
    return subprocess.run([sys.executable, "-m", "tui_gan.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def ls_json(runs: Path) -> dict[str, dict]:
    done = gan_tui("ls", "--runs-dir", runs, "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return {entry["name"]: entry for entry in json.loads(done.stdout)}


def finished_run(make_runner, name: str, lr_change: bool = True, **changes):
    """A tiny run trained to its end, its learning rate changed once on the way (as a dashboard would)."""
    runner, _ = make_runner(run_name=name, steps=40, **changes)
    for _ in range(12):
        runner.tick()
    if lr_change:
        runner.submit(cmd.SetHyperparams({"lr_g": 1e-4}))
    while runner.tick():
        pass
    runner.settle()
    return runner


def live_run(make_runner, name: str = "live"):
    """A run set up and trained a few steps, not finished: its runner holds the folder's lock."""
    runner, _ = make_runner(run_name=name, steps=10**6)
    for _ in range(12):
        runner.tick()
    runner.settle()
    return runner


def damage(run_dir: Path, config: str | None = None, state: str | None = None) -> None:
    for name, text in (("config.json", config), ("state.json", state)):
        if text is not None:
            (run_dir / name).write_text(text)


@pytest.fixture
def three_runs(make_runner, tmp_path):
    """runs/done (finished), runs/live (live), runs/broken (finished, then its config.json damaged)."""
    done = finished_run(make_runner, "done")
    broken = finished_run(make_runner, "broken", lr_change=False)
    damage(broken.run.path, config='{"dataset": "synth')
    live = live_run(make_runner)
    yield tmp_path / "runs"
    live.abandon()


def test_ls_json_lists_a_finished_a_live_and_a_damaged_run_with_stable_keys(three_runs):
    entries = ls_json(three_runs)
    assert set(entries) == {"done", "live", "broken"}
    for entry in entries.values():
        assert tuple(entry) == RUN_KEYS and entry["kind"] == "run"
        assert entry["path"] == str((three_runs / entry["name"]).resolve())
        assert isinstance(entry["updated"], float) and abs(entry["updated"] - time.time()) < 600
    done, live, broken = entries["done"], entries["live"], entries["broken"]
    assert (done["state"], done["pid"], done["reason"], done["step"], done["steps"]) == ("finished", None, None, 40, 40)
    assert (done["dataset"], done["preset"], done["loss"]) == ("synthetic", "mlp-small", "hinge")
    assert done["lr_g"] == 1e-4 and done["lr_d"] == 8e-4  # the rates in force at the end, as numbers
    assert isinstance(done["d_loss"], float) and isinstance(done["epoch"], float)
    assert (done["fd"], done["fd_floor"], done["classes"], done["fd_status"]) == (None, None, None, "off")
    assert live["state"] == "running" and live["pid"] == os.getpid() and live["reason"] is None
    assert 0 < live["step"] < 40 and live["steps"] == 10**6
    assert broken["state"] == "damaged" and broken["reason"] == "config.json is not JSON"
    assert broken["step"] == 40 and broken["dataset"] is None and broken["preset"] is None  # what can be read


def test_every_kind_of_damage_is_a_row_with_a_reason_never_a_traceback(make_runner, tmp_path):
    runs = tmp_path / "runs"
    base = finished_run(make_runner, "base", lr_change=False).run.path
    cases = {"list-config": dict(config="[1, 2]"), "empty-config": dict(config=""),
             "garbage-state": dict(state="\xff garbage"), "list-state": dict(state='["running"]')}
    for name, files in cases.items():
        shutil.copytree(base, runs / name, ignore=shutil.ignore_patterns(".lock"))
        damage(runs / name, **files)
    shutil.copytree(base, runs / "config-folder", ignore=shutil.ignore_patterns(".lock"))
    (runs / "config-folder" / "config.json").unlink()
    (runs / "config-folder" / "config.json").mkdir()
    shutil.copytree(base, runs / "no-config", ignore=shutil.ignore_patterns(".lock"))
    (runs / "no-config" / "config.json").unlink()
    entries = ls_json(runs)
    reasons = {name: entries[name]["reason"] for name in entries if entries[name]["state"] == "damaged"}
    assert reasons == {
        "list-config": "config.json is not a JSON object (a list)", "empty-config": "config.json is empty",
        "garbage-state": "state.json is not JSON", "list-state": "state.json is not a JSON object (a list)",
        "config-folder": "config.json cannot be read (Is a directory)", "no-config": "config.json is missing",
    }
    assert entries["base"]["state"] == "finished"
    table = gan_tui("ls", "--runs-dir", runs)
    assert table.returncode == 0 and table.stderr == "", table.stderr
    lines = table.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines[1:8] if line.split()[1] == "damaged") == sorted(reasons)
    footer = lines[8:]  # says why, for the first five; `ls --json` for the rest
    assert len(footer) == 6 and footer[-1].startswith("and 1 more damaged")
    assert all(f"{name} is damaged: {reasons[name]}" in footer for name in (line.split()[0] for line in footer[:5]))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its mode")
def test_a_folder_that_cannot_be_read_is_listed_as_damaged(make_runner, tmp_path):
    folder = finished_run(make_runner, "locked-out", lr_change=False).run.path
    folder.chmod(0)
    try:
        entry = ls_json(tmp_path / "runs")["locked-out"]
    finally:
        folder.chmod(0o755)
    assert entry["state"] == "damaged" and entry["reason"].startswith("the folder cannot be read")


def test_the_fd_column_says_off_or_how_far_the_judge_got(make_runner, tmp_path):
    """quality_every 0 reads `off`; a run whose judge trains reads `judge k/n` (k of its n epochs done),
    live (its log's judge_training record) and after it ended before its judge was ready (judge_unfinished),
    with the same in --json and show."""
    finished_run(make_runner, "no-quality", lr_change=False)
    runner, sink = make_runner(run_name="judge-wait", steps=10**6, quality_every=10, judge_cache=tmp_path / "judges")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(isinstance(e, ev.JudgeProgress) for e in sink.drain()):
        runner.tick()
    live = run_summary(runner.run.path)
    while time.monotonic() < deadline and live["judge"] is None:  # the record is on its way through the journal
        runner.tick()
        live = run_summary(runner.run.path)
    assert live["state"] == "running" and live["fd_status"] == "pending"
    assert live["judge"]["epochs"] == 6 and 0 <= live["judge"]["epochs_done"] < 6, live["judge"]
    assert "none yet: the judge is training (" in run_details(runner.run.path)["quality"]["why_none"]
    runner.submit(cmd.Stop(save=False))
    while runner.tick():
        pass
    runner.settle()
    unfinished = [r for r in runner.run.read_log() if r.get("type") == "judge_unfinished"]
    assert unfinished, "the judge was ready before the run ended"
    done, epochs = unfinished[-1]["epochs_done"], unfinished[-1]["epochs"]
    entries = ls_json(tmp_path / "runs")
    assert entries["no-quality"]["fd_status"] == "off" and entries["no-quality"]["judge"] is None
    assert entries["judge-wait"]["fd_status"] == "judge_unfinished" and entries["judge-wait"]["fd"] is None
    assert entries["judge-wait"]["judge"] == {"epochs_done": done, "epochs": epochs}
    lines = {line.split()[0]: line for line in gan_tui("ls", "--runs-dir", tmp_path / "runs").stdout.splitlines()}
    assert " off " in lines["no-quality"] and f" judge {done}/{epochs} " in lines["judge-wait"]


def test_a_sweep_folder_is_one_row_whose_dead_driver_reads_interrupted(make_runner, tmp_path):
    runs = tmp_path / "runs"
    finished_run(make_runner, "plain", lr_change=False)
    sweep = runs / "lr-pbt"
    sweep.mkdir()
    SweepSpec(name="lr-pbt", sweep_dir=str(sweep), config=tiny_config(quality_every=20).to_dict(), trials=4,
              search="pbt").save()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    SweepStatus(state="running", pid=gone.pid, host=socket.gethostname(),
                best={"trial": "trial-001", "fd_ratio": 3.02, "step": 40, "config": {"lr_g": 6.74e-4}}).save(sweep)
    for trial, lr_g, lr_d in (("trial-000", 0.000674072, 0.000224389), ("trial-001", 0.000412345, 0.000187654)):
        run = finished_run(make_runner, trial, lr_change=False, lr_g=lr_g, lr_d=lr_d).run  # log-uniform draws
        shutil.move(run.path, sweep / trial)
    entries = ls_json(runs)
    assert set(entries) == {"plain", "lr-pbt"}  # the trials are inside the sweep, not beside it
    row = entries["lr-pbt"]
    assert tuple(row) == SWEEP_KEYS and row["kind"] == "sweep" and row["state"] == "interrupted"
    assert (row["pid"], row["search"], row["trials"], row["trials_started"]) == (None, "pbt", 4, 2)
    assert (row["best_trial"], row["fd_ratio"], row["best_step"]) == ("trial-001", 3.02, 40)
    table = gan_tui("ls", "--runs-dir", runs).stdout
    line = next(line for line in table.splitlines() if line.startswith("lr-pbt"))
    assert "sweep interrupted" in line and "4 trials" in line and "3.0x" in line
    assert table.splitlines()[-1].endswith(f"ls --runs-dir {sweep}")  # how to list its trials
    trials = gan_tui("ls", "--runs-dir", sweep)
    assert trials.returncode == 0 and "6.74e-4/2.24e-4" in trials.stdout and "4.12e-4/1.88e-4" in trials.stdout
    assert "0.000674072" not in trials.stdout
    assert set(ls_json(sweep)) == {"trial-000", "trial-001"}


def test_one_learning_rate_formatter_for_ls_show_and_the_sweep_table():
    assert [format_lr(v) for v in (2e-4, 8e-4, 1e-3, 1.5e-4, 0.000674072, 0.0002000000001, 0.5, 1.0, 0.0123)] == \
        ["2e-4", "8e-4", "1e-3", "1.5e-4", "6.74e-4", "2e-4", "0.5", "1", "0.0123"]
    assert [format_lr(v) for v in (None, True, "2e-4")] == ["-", "-", "-"]
    assert format_lr_pair(2e-4, 2e-4) == "2e-4" and format_lr_pair(0.000674072, 0.000224389) == "6.74e-4/2.24e-4"
    from engine.sweep.rows import TrialRow, format_table

    row = TrialRow("trial-000", Path("t"), "running", 10, 0.000674072, 0.000224389, 1, 64, None, (), "")
    assert "6.74e-4" in format_table([row], SweepStatus()) and "2.24e-4" in format_table([row], SweepStatus())


def test_an_empty_or_missing_runs_folder(tmp_path):
    assert gan_tui("ls", "--runs-dir", tmp_path, "--json").stdout.strip() == "[]"
    missing = gan_tui("ls", "--runs-dir", tmp_path / "typo", "--json")
    assert missing.returncode == 2 and missing.stdout == "" and missing.stderr.count("\n") == 1


def test_a_live_run_with_a_damaged_state_file_keeps_its_live_state_and_says_what_is_damaged(make_runner, tmp_path):
    runner = live_run(make_runner)
    try:
        damage(runner.run.path, state="{")
        entry = ls_json(tmp_path / "runs")["live"]
    finally:
        runner.abandon()
    # The folder's lock names the live trainer; without its state.json, liveness.py reads it as starting.
    assert (entry["state"], entry["pid"], entry["reason"]) == ("starting", os.getpid(), "state.json is not JSON")
