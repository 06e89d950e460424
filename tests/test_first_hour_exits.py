"""The first hour as processes (issue 25): every mistake of the user's exits 2 in one line (`--device
cuda` without a GPU before torch is imported; attach of a stopped run; a trainer whose run fails on a
user error, and the --detach that started it); a fallback run says why on its start line; a run that
ends before its judge says so in its last lines and `ls` shows why it has no FD; `ls` lists sweeps
and writes learning rates one way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import events as ev
from tests.test_cli import ROOT, _fake_run, gan_tui
from tests.test_ls import make_run
from tui_gan.cli.ls import format_table, list_runs
from tui_gan.exits import run_exit_status
from tui_gan.gpu_probe import cuda_refusal
from tui_gan.process.headless import ProgressLine


# ------------------------------------------------------------- --device cuda
def machine(tmp_path: Path, *, gpus: int = 0, nodes: int | None = None, ctl: bool = False, other: str = "") -> Path:
    """A stand-in for / : `gpus` entries under /proc/driver/nvidia/gpus, `nodes` /dev/nvidiaN files."""
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    for i in range(gpus):
        (root / "proc" / "driver" / "nvidia" / "gpus" / f"0000:0{i}:00.0").mkdir(parents=True)
    for i in range(gpus if nodes is None else nodes):
        (root / "dev" / f"nvidia{i}").write_text("")
    for name in (["nvidiactl"] if ctl or gpus else []) + ([other] if other else []):
        (root / "dev" / name).write_text("")
    return root


def test_cuda_is_refused_without_an_nvidia_gpu_and_allowed_where_one_may_be(tmp_path):
    bare = machine(tmp_path / "a")
    assert "no NVIDIA GPU" in cuda_refusal("cuda", bare, env={})
    assert cuda_refusal("cpu", bare, env={}) is None and cuda_refusal("auto", bare, env={}) is None
    two = machine(tmp_path / "b", gpus=2)
    assert cuda_refusal("cuda", two, env={}) is None and cuda_refusal("cuda:1", two, env={}) is None
    assert "has 2 NVIDIA GPUs (cuda:0, cuda:1)" in cuda_refusal("cuda:3", two, env={})
    # CUDA_VISIBLE_DEVICES: empty hides all; an index list is what CUDA enumerates; UUIDs the probe leaves to torch.
    assert "hides every GPU" in cuda_refusal("cuda", two, env={"CUDA_VISIBLE_DEVICES": ""})
    assert "leaves 1 NVIDIA GPU (cuda:0)" in cuda_refusal("cuda:1", two, env={"CUDA_VISIBLE_DEVICES": "1"})
    assert cuda_refusal("cuda:1", two, env={"CUDA_VISIBLE_DEVICES": "GPU-8a5e1c2f,GPU-12345678"}) is None
    # A container with the GPUs' device nodes but no /proc entries; a host whose nodes come at first use.
    assert cuda_refusal("cuda:1", machine(tmp_path / "c", nodes=2), env={}) is None
    # Stacks the probe cannot count: ROCm, WSL2, a Jetson. And a driver without nodes or nvidia-smi.
    for other in ("kfd", "dxg", "nvhost-ctrl"):
        assert cuda_refusal("cuda:5", machine(tmp_path / other, other=other), env={}) is None
    assert cuda_refusal("cuda", machine(tmp_path / "d", ctl=True), env={}, smi=False) is None


@pytest.mark.skipif(cuda_refusal("cuda") is None, reason="this machine may have a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_device_cuda_without_a_gpu_exits_2_in_one_line_before_torch_loads(tmp_path, device):
    code = ("import sys\nfrom tui_gan.cli import main\n"
            f"status = main(['--device', '{device}', '--headless', '--runs-dir', sys.argv[1]])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "sys.exit(status)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"gan-tui: device: '{device}' is not allowed;") and "--device cpu" in line
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------- attach, the trainer
def test_attach_of_a_stopped_run_exits_2_in_one_line(tmp_path):
    run = _fake_run(tmp_path, "done", "stopped", 300)
    result = gan_tui("attach", str(run), timeout=60)
    assert result.returncode == 2
    line, = result.stderr.strip().splitlines()
    assert "is stopped, not running; it saved no checkpoint, so nothing of it can be resumed" in line, line
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step_00000300.pt").write_bytes(b"")
    result = gan_tui("attach", str(run), timeout=60)
    line, = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "is stopped, not running; resume it with:" in line and "--resume" in line
    finished = _fake_run(tmp_path, "over", "finished", 500)
    (finished / "checkpoints").mkdir()
    (finished / "checkpoints" / "step_00000500.pt").write_bytes(b"")
    result = gan_tui("attach", str(finished), timeout=60)
    assert result.returncode == 2 and "train it further with:" in result.stderr and "--steps 1000" in result.stderr


def test_resuming_a_run_that_never_saved_a_checkpoint_exits_2_in_one_line_before_anything_starts(tmp_path):
    """A trainer killed before its first save leaves nothing to resume: the start says so itself,
    instead of a dashboard that opens on a trainer failing at start-up."""
    run = _fake_run(tmp_path, "early", "running", 500, pid=2**22 + 7)  # a pid that is no process
    for mode in ("--headless", "--detach"):
        result = gan_tui(mode, "--resume", str(run), timeout=60)
        assert result.returncode == 2, result.stderr
        line, = result.stderr.strip().splitlines()
        assert f"run {run} has no checkpoint to resume from" in line and "start a new run" in line
        assert not (run / "train.log").exists()


def test_a_run_failing_on_a_user_error_is_marked_so_and_its_process_exits_2(tmp_path, make_runner):
    from engine.ending import fail

    runner, sink = make_runner()
    fail(runner, RuntimeError("boom"), save=False)
    crash = next(e for e in sink.drain() if isinstance(e, ev.ErrorRaised))
    assert not crash.user_error and crash.message == "RuntimeError: boom"
    assert run_exit_status(ev.RunFinished(0, ev.RunState.FAILED, ""), crash) == 1
    empty = tmp_path / "no-images"
    empty.mkdir()
    result = gan_tui("--headless", "--dataset", str(empty), "--runs-dir", str(tmp_path / "runs"), timeout=300)
    assert result.returncode == 2, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("cannot train: ")]
    assert len(said) == 1 and str(empty) in said[0] and "Traceback" not in result.stderr


def test_detach_of_a_trainer_that_fails_on_a_user_error_exits_2_in_one_line(tmp_path):
    empty = tmp_path / "no-images"
    empty.mkdir()
    result = gan_tui("--detach", "--dataset", str(empty), "--runs-dir", str(tmp_path / "runs"), "--run-name", "bad")
    assert result.returncode == 2, result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith("gan-tui: cannot train: ") and str(empty) in line


# --------------------------------------------------------- fallback, the judge
def test_the_headless_start_line_names_the_fallbacks_reason_and_fix(tmp_path):
    """No dataset on disk and no network (the download goes to a closed local port): the start line says why."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "https_proxy": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = gan_tui("--headless", "--dataset", "kmnist", "--steps", "5", "--quality-every", "0", "--no-tensorboard",
                     "--runs-dir", str(tmp_path / "runs"), env=env)
    assert result.returncode == 0, result.stderr
    start = next(line for line in result.stderr.splitlines() if line.startswith("started: "))
    assert start.startswith("started: synthetic") and "because kmnist is not in" in start
    assert "could not be downloaded" in start and "--data-root" in start
    assert sum("kmnist is not in" in line for line in result.stderr.splitlines()) == 1  # said once


def test_the_closing_lines_say_the_judge_was_unfinished():
    out = __import__("io").StringIO()
    line = ProgressLine(out)
    for event in (ev.RunStarted("runs/x", {}, "cpu", "CPU", "mnist", "", 0, 10_000, False),
                  ev.JudgeProgress(3, 6),
                  ev.WarningRaised(900, "the run ended before its quality judge was ready, ...", "judge"),
                  ev.RunFinished(900, ev.RunState.STOPPED, "runs/x")):
        line.show(event)
    line.summary(ev.RunFinished(900, ev.RunState.STOPPED, "runs/x"))
    text = out.getvalue()
    assert ("quality: none yet, the judge was still training (2 of 6 epochs done); the next run of this dataset "
            "continues its training") in text
    assert "epoch 3 of 6" not in text.split("run folder:")[0].replace("(epoch 3 of 6)", "")  # no line per epoch
    from tui_gan.describe import judge_unfinished_summary

    assert judge_unfinished_summary(ev.JudgeProgress(1, 6)) == (
        "quality: none yet, the judge was still in its first training epoch (of 6); the next run of this dataset "
        "trains it from the start")  # nothing of it to keep


def test_a_run_stopped_while_its_judge_trains_says_so_last_and_ls_shows_why_it_has_no_fd(tmp_path):
    """A real trainer process on the synthetic digits (its judge trains for minutes on 2 cores), stopped
    with SIGTERM once it has trained a little: the last lines and `ls` say the judge was unfinished."""
    runs = tmp_path / "runs"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "tui_gan.cli", "--headless", "--dataset", "synthetic",
                             "--steps", "1000000", "--quality-every", "50", "--no-tensorboard", "--runs-dir", str(runs),
                             "--run-name", "early"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    log = runs / "early" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        records = [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []
        if any(r.get("type") == "metrics" and r["step"] >= 40 for r in records):
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    tail = err.strip().splitlines()[-7:]
    assert any(line.strip().startswith("quality: none yet, the judge was still ") for line in tail), tail
    # One line as the judge's training starts, none per epoch.
    assert err.count("training the quality judge (6 epochs; once per dataset, then cached)") == 1, err
    row = next(r for r in list_runs(runs) if r["name"] == "early")
    assert row["quality"].startswith("judge ") and row["quality"].endswith("/6"), row
    from tui_gan.process.launch import leave_message  # what a dashboard prints on leaving such a run

    left = leave_message(runs / "early", runs)
    assert any(line.strip().startswith("quality: none yet, the judge was still ") for line in left), left


def test_ls_reads_judge_k_of_n_only_while_there_is_no_quality_record(tmp_path):
    runs = tmp_path / "runs"
    run = make_run(runs, "early", dataset="synthetic")
    run.append_log({"type": "judge_unfinished", "step": 1200, "epochs_done": 2, "epochs": 6})
    assert list_runs(runs)[0]["quality"] == "judge 2/6"
    run.append_log({"type": "quality", "step": 2000, "fd": 30.0, "fd_floor": 10.0, "classes_covered": 10,
                    "class_hist": [0.1] * 10})
    assert list_runs(runs)[0]["quality"] == "3.0x 10/10"


def test_a_run_killed_while_its_judge_trained_reads_how_far_it_got(tmp_path):
    """kill -9 writes no judge_unfinished record: the last epoch the judge began says as much."""
    from engine.runs.summary import run_summary

    runs = tmp_path / "runs"
    run = make_run(runs, "killed", dataset="synthetic")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run.path / "state.json").write_text(json.dumps({"state": "running", "step": 1200, "pid": gone.pid}))
    for epoch in (1, 2, 3):
        run.append_log({"type": "judge_training", "step": 400 * epoch, "epoch": epoch, "epochs": 6, "resumed": 0})
    entry = run_summary(run.path)
    assert entry["state"] == "interrupted" and entry["fd_status"] == "judge_unfinished"
    assert entry["judge"] == {"epochs_done": 2, "epochs": 6}
    assert list_runs(runs)[0]["quality"] == "judge 2/6"
    run.append_log({"type": "judge", "step": 0, "accuracy": 0.99})  # ready: nothing to say until a figure comes
    assert run_summary(run.path)["fd_status"] == "pending" and list_runs(runs)[0]["quality"] == "-"


# ------------------------------------------------------------------ ls, sweeps
def make_sweep(runs: Path) -> Path:
    """A finished sweep of three trials with random learning rates (as Ray Tune draws them)."""
    from engine.sweep.spec import SweepStatus

    sweep = runs / "lr-sweep"
    sweep.mkdir(parents=True)
    best = {"lr_g": 0.000674072, "lr_d": 0.000224389}
    (sweep / "sweep_spec.json").write_text(json.dumps({"name": "lr-sweep", "trials": 3, "search": "random",
                                                       "config": {"dataset": "mnist", "preset": "cond-mlp"}}))
    SweepStatus(state="finished", trials={f"trial-00{i}": {"status": "TERMINATED"} for i in range(3)},
                best={"trial": "trial-001", "fd_ratio": 3.14, "config": best}).save(sweep)
    for i in range(3):
        trial = make_run(sweep, f"trial-00{i}", state="finished", dataset="synthetic")
        trial.append_log({"type": "metrics", "step": 1300, "d_loss": 1.0, "g_loss": 1.0, **best})
    return sweep


def test_plain_ls_lists_a_sweep_as_one_row_and_inside_it_the_trials_with_short_learning_rates(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "plain", dataset="synthetic")
    sweep = make_sweep(runs)
    rows = {r["name"]: r for r in list_runs(runs)}
    assert set(rows) == {"plain", "lr-sweep"}
    row = rows["lr-sweep"]
    assert (row["state"], row["trials"], row["quality"], row["dataset"]) == ("sweep finished", 3, "3.1x", "mnist")
    table = format_table(list(rows.values()))
    assert "sweep finished" in table and "2e-4/1e-3" in table  # plain's, unchanged
    inside = gan_tui("ls", "--runs-dir", str(sweep), timeout=60)
    assert inside.returncode == 0 and inside.stdout.count("6.74e-4/2.24e-4") == 3, inside.stdout
    assert "0.000674072" not in inside.stdout
