"""`gan-tui show RUN [--json]` on real run folders (tiny runs through make_runner) read by real `gan-tui`
processes: a finished run with quality figures, checkpoints and a hyperparameter history (dashboard,
rollback, resume, PBT), a live run, damaged runs, and the one-line refusals."""

from __future__ import annotations

import json
import os

from engine import commands as cmd
from engine.runs import RUN_KEYS, RunDir
from engine.runs.details import SECTIONS
from tests.test_ls_json import damage, gan_tui, three_runs  # noqa: F401 - three_runs is a fixture

QUALITY = {"type": "quality", "fd": 60.0, "fd_floor": 12.0, "n": 1000, "classes_covered": 8, "class_hist": [0.1] * 10,
           "kl_uniform": 0.1, "confidence": 0.9, "diversity": 0.8}


def show(*args) -> tuple[int, str, str]:
    done = gan_tui("show", *args)
    return done.returncode, done.stdout, done.stderr


def show_json(*args) -> dict:
    code, out, err = show(*args, "--json")
    assert code == 0 and err == "", err
    return json.loads(out)


def history_run(make_runner) -> RunDir:
    """A run whose lr_g a dashboard changed, that rolled back with its rates halved, stopped, was resumed with
    flags (lr_g 2e-4, lr_d 3e-4), and copied a PBT member; quality measured twice (the first the better)."""
    runner, _ = make_runner(run_name="history", steps=10**6)
    while runner.trainer.step < 10:
        runner.tick()
    runner.submit(cmd.SetHyperparams({"lr_g": 1e-4}))
    while runner.trainer.step < 25:  # a checkpoint at step 20
        runner.tick()
    runner.submit(cmd.RollBack("20", 0.5))
    for _ in range(3):
        runner.tick()
    runner.submit(cmd.Stop(save=True))
    while runner.tick():
        pass
    runner.settle()
    run = runner.run
    again, _ = make_runner(resume=str(run.path), steps=10**6, lr_d=3e-4)
    for _ in range(3):
        again.tick()
    again.submit(cmd.Stop(save=True))
    while again.tick():
        pass
    again.settle()
    last = max(step for step, _ in run.checkpoints())
    run.append_log({**QUALITY, "step": 20, "fd": 36.0})
    run.append_log({**QUALITY, "step": last})
    run.record_checkpoint_quality(20, {**QUALITY, "fd": 36.0})
    run.append_log({"type": "hparams", "step": last, "old": {"lr_g": 1e-4}, "new": {"lr_g": 5e-4}, "source": "pbt",
                    "action": "exploit", "member": "trial-001"})
    return run


def test_show_of_a_finished_run_tells_its_quality_checkpoints_and_who_changed_what(make_runner):
    run = history_run(make_runner)
    code, text, err = show(run.path)
    assert code == 0 and err == "", err
    lines = {line.split()[0]: line for line in text.splitlines() if line and not line.startswith(" ")}
    assert lines["state"].split()[1] == "stopped" and "history" in lines["run"]
    assert max(map(len, text.splitlines())) <= 100, text
    text = " ".join(text.split())  # as read, whatever the wrapping
    assert "lr 2e-4/3e-4" in text and "1 resume, 1 rollback" in text
    assert "last: step" in text and "= 5.0x, classes 8/10" in text and "best: step 20:" in text and "3.0x" in text
    assert "step 20 (best, 3.0x, " in text and " KB)" in text  # quality.json names it the best; its size
    assert "lr_g 2e-4 -> 1e-4 (dashboard)" in text
    assert "step 20: lr_g 1e-4 -> 5e-5, lr_d 8e-4 -> 4e-4 (rollback)" in text  # its rates halved
    assert "step 23: lr_g 5e-5 -> 2e-4, lr_d 4e-4 -> 3e-4 (resume)" in text  # the flags of the resume
    assert "lr_g 1e-4 -> 5e-4 (pbt exploit from trial-001)" in text
    assert "dataset synthetic" in lines["config"] and "at their defaults" in text
    data = show_json(run.path)
    assert set(RUN_KEYS) | set(SECTIONS) <= set(data) and data["state"] == "stopped"
    assert data["config"]["dataset"] == "synthetic" and data["config_changed"]["steps"] == 10**6
    assert [c["by"] for c in data["hyperparams"]] == ["dashboard", "rollback", "resume", "pbt"]
    assert data["hyperparams"][0]["changes"] == {"lr_g": {"old": 2e-4, "new": 1e-4}}
    quality = data["quality"]
    assert quality["status"] == "measured" and quality["measurements"] == 2 and quality["why_none"] is None
    assert quality["best"]["step"] == 20 and quality["best"]["fd_ratio"] == 3.0 and quality["last"]["fd_ratio"] == 5.0
    assert quality["last"]["classes"] == {"covered": 8, "total": 10}
    best = [c for c in data["checkpoints"] if c["best"]]
    assert [c["step"] for c in best] == [20] and all(c["bytes"] > 0 for c in data["checkpoints"])
    assert data["progress"]["resumes"] == 1 and data["progress"]["rollbacks"] == 1
    assert data["metrics"]["lr_d"] == 3e-4 and data["damage"] == []


def test_show_of_a_finished_a_live_and_a_damaged_run(three_runs):  # noqa: F811
    code, text, err = show("done", "--runs-dir", three_runs)
    assert code == 0 and err == "" and "finished" in text and "step 40 of 40 (100%)" in text
    assert "quality is off (quality_every 0)" in text and "lr_g 2e-4 -> 1e-4 (dashboard)" in text
    code, text, err = show("live", "--runs-dir", three_runs)
    assert code == 0 and f"running (pid {os.getpid()})" in text and "of 1,000,000" in text
    live = show_json(three_runs / "live")
    assert live["state"] == "running" and live["pid"] == os.getpid() and 0 < live["step"] < 40
    code, text, err = show(three_runs / "broken")
    assert code == 0 and err == "", err  # the command worked: it says what is damaged
    assert "damaged" in text and "config.json is not JSON" in text and "step 40" in text
    assert "config       nothing readable" in text
    broken = show_json(three_runs / "broken")
    assert broken["state"] == "damaged" and broken["reason"] == "config.json is not JSON"
    assert broken["config"] == {} and broken["metrics"]["step"] == 40 and broken["checkpoints"]
    assert broken["quality"]["why_none"].startswith("no quality figure")


def test_show_names_each_damaged_file_and_skipped_lines(three_runs):  # noqa: F811
    done = three_runs / "done"
    damage(done, state="not json")
    with (done / "metrics.jsonl").open("ab") as f:
        f.write(b'\xff\xfe junk\n{"type": "metr\n')
    (done / "checkpoints" / "quality.json").write_text("[1, 2]")
    data = show_json(done)
    assert data["state"] == "damaged" and data["damage"] == [
        "state.json is not JSON", "metrics.jsonl has 2 damaged lines (skipped)",
        "checkpoints/quality.json is not a JSON object (a list)"]
    assert data["config"]["steps"] == 40 and data["metrics"]["step"] == 40  # the rest still reads


def test_show_latest_and_the_one_line_refusals(three_runs, tmp_path):  # noqa: F811
    assert show_json("latest", "--runs-dir", three_runs)["name"] in ("done", "live", "broken")
    for args, needle in ((("nope", "--runs-dir", three_runs), "there is no run nope"),
                         (("latest", "--runs-dir", tmp_path / "empty"), "no runs in"),
                         ((tmp_path,), "is not a gan-tui run")):
        code, out, err = show(*args)
        assert code == 2 and out == "" and err.count("\n") == 1 and needle in err and "Traceback" not in err, err
    sweep = tmp_path / "a-sweep"
    sweep.mkdir()
    (sweep / "sweep_spec.json").write_text("{}")
    code, out, err = show(sweep)
    assert code == 2 and err.count("\n") == 1 and f"ls --runs-dir {sweep}" in err, err
