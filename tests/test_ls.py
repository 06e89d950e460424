"""`gan-tui ls`: 100 columns, humane ages, the columns a person compares runs by, and damaged files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine.config import TrainConfig
from engine.runs import RunDir, new_run_name
from tui_gan.formatting import format_age
from tui_gan.cli.ls import format_table, list_runs

ROOT = Path(__file__).resolve().parents[1]


def make_run(runs: Path, name: str, state: str = "stopped", step: int = 1200, age_s: float = 0.0, **config) -> RunDir:
    run = RunDir.create(runs, name, TrainConfig(**config))
    run.append_log({"type": "metrics", "step": step, "d_loss": 1.25, "g_loss": 0.5, "lr_g": 2e-4, "lr_d": 1e-3})
    (run.path / "state.json").write_text(json.dumps({"state": state, "step": step, "pid": 1}))
    past = time.time() - age_s
    for path in run.path.iterdir():
        os.utime(path, (past, past))
    return run


def test_ls_fits_100_columns_with_humane_ages_dataset_preset_and_lr(tmp_path):
    make_run(tmp_path, "20261122-221000-fashion-mnist-mlp-dropout", age_s=3 * 86400 + 5, dataset="fashion-mnist",
             preset="mlp-dropout")
    make_run(tmp_path, "20261123-101500-mnist-dcgan-small", age_s=2 * 3600 + 9, step=123_456)
    make_run(tmp_path, "short", age_s=5 * 60 + 1, dataset="synthetic", preset="mlp")
    table = format_table(list_runs(tmp_path), width=100)
    lines = table.splitlines()
    assert max(map(len, lines)) <= 100, table
    header, newest, middle, oldest = lines
    for column in ("NAME", "STATE", "STEP", "DATASET", "PRESET", "LR", "AGE"):
        assert column in header
    assert newest.split()[0] == "short" and newest.endswith("5m") and "synthetic" in newest and " mlp " in newest
    assert "20261123-101500-mnist-dcgan-small" in middle and middle.endswith("2h") and "123,456" in middle
    assert "2e-4/1e-3" in middle  # the learning rates in force, from the last metrics record
    assert "fashion-mnist" in oldest and "mlp-dropout" in oldest and oldest.endswith("3d")


def test_humane_ages():
    assert [format_age(s) for s in (0.2, 45, 300, 7200, 3 * 86400)] == ["now", "45s", "5m", "2h", "3d"]


def test_damaged_files_never_stop_the_listing(tmp_path):
    good = make_run(tmp_path, "good")
    bad = make_run(tmp_path, "bad")
    (bad.path / "state.json").write_text('{"state": ')  # cut mid-write
    with bad.metrics_path.open("a") as f:
        f.write('[1, 2]\n7\n{"type": "metrics", "step": "x"}\n\xff\xfe garbage\n{"type": "metr')
    odd = make_run(tmp_path, "odd")
    (odd.path / "state.json").write_text('["running"]')
    (odd.path / "config.json").write_text("not json")
    rows = {r["name"]: r for r in list_runs(tmp_path)}
    assert set(rows) == {"good", "bad", "odd"} and rows["good"]["step"] == 1200
    # A damaged state.json or config.json makes the run `damaged` (ls --json says why); its figures still show.
    assert rows["bad"]["state"] == "damaged" and rows["bad"]["step"] == 1200
    assert rows["odd"]["state"] == "damaged" and rows["odd"]["preset"] == "-"
    out = subprocess.run([sys.executable, "-m", "tui_gan.cli", "ls", "--runs-dir", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "" and "good" in out.stdout, out.stderr
    assert good.path.name in out.stdout


def test_ls_of_a_folder_that_is_not_there_says_so_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tui_gan.cli", "ls", "--runs-dir", str(tmp_path / "typo")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no runs folder" in out.stderr, out.stderr
    empty = subprocess.run([sys.executable, "-m", "tui_gan.cli", "ls", "--runs-dir", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 0 and "no runs in" in empty.stdout


def test_ls_into_a_closed_pipe_prints_no_traceback(tmp_path):
    for i in range(300):
        folder = tmp_path / f"run-{i:03d}"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    done = subprocess.run(f"{sys.executable} -m tui_gan.cli ls --runs-dir {tmp_path} | head -1", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("NAME") and done.stderr == "", done.stderr


def test_the_synthetic_fallback_is_named_and_listed_as_synthetic(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # no MNIST files on this "machine"
    name = new_run_name(TrainConfig(dataset="mnist"))
    assert name.endswith("-synthetic-cond-mlp"), name
    assert "-mnist-" in new_run_name(TrainConfig(dataset="mnist", data_root=str(tmp_path)))  # a named folder: no guess
    run = make_run(tmp_path / "runs", name, dataset="mnist")
    run.append_log({"type": "warning", "step": 0, "kind": "dataset",
                    "message": "Using the embedded font digits: mnist is not in ... and could not be downloaded"})
    (row,) = list_runs(tmp_path / "runs")
    assert row["dataset"] == "synthetic"


def test_ls_finds_a_quality_figure_far_back_in_a_long_log(tmp_path):
    # Measurements are paced to a share of the machine, so hundreds of metrics records can follow one.
    run = make_run(tmp_path, "sparse")
    run.append_log({"type": "quality", "step": 300, "fd": 84.0, "fd_floor": 8.4, "classes_covered": 5,
                    "class_hist": [0.1] * 10})
    for step in range(320, 320 + 20 * 600, 20):
        run.append_log({"type": "metrics", "step": step, "d_loss": 1.25, "g_loss": 0.5, "lr_g": 2e-4, "lr_d": 2e-4})
    assert run.metrics_path.stat().st_size > 2 * 16384  # past the first window of the log's tail
    (row,) = list_runs(tmp_path)
    assert row["quality"].startswith("10.0x")
