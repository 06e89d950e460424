"""`gan-tui sweep` on a real local Ray (2 CPUs): trials are real gan-tui runs on the embedded digits.

One Ray serves the module; the command-line test's detached driver joins it through --address.
The judge is an untrained classifier cached for the embedded digits: its features still give a
Frechet distance to rank trials by, without a minute of judge training per test session.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs import RunDir

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

from engine.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from engine.sweep.spec import SweepSpec, SweepStatus, stop_requested  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep_cache(tmp_path_factory):
    """A cache folder of this module's own, holding an untrained judge for the embedded digits."""
    import torch

    from engine.data import load_dataset
    from engine.judge import JUDGE_VERSION, default_cache_dir, new_classifier

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("sweep-cache"))
    data = load_dataset("synthetic")
    model = new_classifier(data.info.num_classes, torch.device("cpu"), torch.Generator().manual_seed(0))
    cache = default_cache_dir()
    save_checkpoint(cache / f"{data.info.checksum}-v{JUDGE_VERSION}.pt",
                    {"judge_version": JUDGE_VERSION, "checksum": data.info.checksum, "num_classes": data.info.num_classes,
                     "accuracy": 0.1, "train_s": 0.0, "model": model.state_dict()})
    yield cache
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="module")
def ray_address(sweep_cache):
    """A local Ray with the box's 2 CPUs (started after the cache is set, so its workers see it)."""
    import ray._private.ray_constants as constants

    # pytest under `uv run` would make Ray ship the checkout to each worker and start it with uv.
    constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
    # Ray nices its workers to 15; on a busy shared test machine that starves the trials.
    os.environ["RAY_worker_niceness"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "30", "OMP_NUM_THREADS": "1"}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    os.environ.pop("RAY_worker_niceness", None)


@pytest.fixture(scope="module")
def pbt_sweep(ray_address, sweep_cache, tmp_path_factory):
    """A finished PBT sweep of 4 short trials (8 quality reports each, a perturbation possible at every one)."""
    from engine.sweep.driver import run_sweep

    sweep_dir = tmp_path_factory.mktemp("runs") / "pbt"
    sweep_dir.mkdir()
    cfg = tiny_config(steps=80, quality_every=10, quality_samples=100, checkpoint_every=0, keep_checkpoints=100)
    spec = SweepSpec(name="pbt", sweep_dir=str(sweep_dir), config=cfg.to_dict(), trials=4, search="pbt",
                     lr_g=(1e-4, 2e-3), lr_d=(1e-4, 2e-3), parallel=4, judge_cache=str(sweep_cache))
    spec.validate()
    spec.save()
    status = run_sweep(spec)
    assert status.state == "finished", status.message
    return sweep_dir


def test_random_search_from_the_command_line_lists_its_trials_and_a_stop_saves_every_one(tmp_path, ray_address, capsys):
    """`gan-tui sweep --headless` runs 3 trials detached on the given Ray; Ctrl-C stops them all, saved."""
    config = tmp_path / "tiny.json"
    tiny_config(steps=100_000, quality_every=10, quality_samples=100, checkpoint_every=0).save(config)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "tui_gan.cli", "sweep", "--config", str(config), "--runs-dir", str(runs),
           "--trials", "3", "--search", "random", "--lr-g", "1e-4:1e-3", "--lr-d", "2e-4", "--batch-size", "16,32",
           "--parallel", "3", "--sweep-name", "rs", "--address", ray_address, "--headless"]
    watcher = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sweep_dir = runs / "rs"
    trials = [sweep_dir / f"trial-{i:03d}" for i in range(3)]
    try:
        deadline = time.monotonic() + 240
        while not all(_quality_records(t) for t in trials):  # every trial trains and has reported
            assert watcher.poll() is None, watcher.communicate()
            assert time.monotonic() < deadline, "the trials did not all report in time"
            time.sleep(0.5)
        watcher.send_signal(signal.SIGINT)  # the watcher asks for a stop: every trial saves
        out, err = watcher.communicate(timeout=180)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    assert "TRIAL" in out and "best: trial-" in out, out
    assert stop_requested(sweep_dir) and SweepStatus.load(sweep_dir).state == "stopped"

    from tui_gan.cli import run_subcommand

    capsys.readouterr()
    assert run_subcommand("ls", ["--runs-dir", str(sweep_dir)]) == 0
    listed = capsys.readouterr().out
    for trial in trials:
        assert trial.name in listed
        state = json.loads((trial / "state.json").read_text())
        assert state["state"] == "stopped"
        checkpoints = sorted((trial / "checkpoints").glob("step_*.pt"))
        assert checkpoints, f"{trial.name} has no checkpoint"
        payload = load_checkpoint(checkpoints[-1])
        assert payload["trainer"]["step"] == state["step"]  # saved at the step it stopped on
        config = json.loads((trial / "config.json").read_text())
        assert 1e-4 <= config["lr_g"] <= 1e-3 and config["lr_d"] == 2e-4 and config["batch_size"] in (16, 32)


def test_pbt_records_exploits_and_explores_and_restores_the_copied_members_weights(pbt_sweep):
    exploits, explores = [], []
    for trial in sorted(pbt_sweep.glob("trial-*")):
        for record in _records(trial):
            if record.get("type") == "hparams" and record.get("source") == "pbt":
                (exploits if record["action"] == "exploit" else explores).append((trial, record))
    assert exploits and explores
    for trial, record in explores:
        assert record["old"] != record["new"]
    last = {(trial, record["step"]): record for trial, record in exploits}  # a later exploit at a step replaces it
    compared = 0
    for (trial, step), record in last.items():
        assert record["member"] != trial.name and record["old"] != record["new"]
        copied = load_checkpoint(Path(record["checkpoint"]) / "gan.pt")  # the member's checkpoint Ray handed over
        assert copied["trainer"]["step"] == step
        restored_path = trial / "checkpoints" / f"step_{step:08d}.pt"
        if not restored_path.is_file():
            continue  # set aside by an exploit at an earlier step later on
        restored = load_checkpoint(restored_path)
        for part in ("generator", "discriminator"):
            for key, value in copied["trainer"][part].items():
                assert (restored["trainer"][part][key] == value).all(), f"{trial.name} {part}.{key}"
        compared += 1
    assert compared >= 1
    # The restored trial went on from there: its log says it resumed at the copied step.
    trial, record = exploits[0]
    steps_resumed = [r["step"] for r in _records(trial) if r.get("type") == "resumed"]
    assert steps_resumed


async def test_the_sweep_view_lists_the_trials_sorts_opens_one_and_stops_the_sweep(pbt_sweep, monkeypatch):
    from tui_gan.screens import sweep as sweep_screen
    from tui_gan.screens.sweep import SweepApp
    from tui_gan.widgets.sweep_table import SweepTable

    calls: list[list[str]] = []
    monkeypatch.setattr(sweep_screen, "run_command", lambda argv: calls.append(list(argv)) or 0)
    ended = SweepStatus.load(pbt_sweep)
    live = dataclasses.replace(ended, state="running", pid=os.getpid(), host=socket.gethostname())
    live.save(pbt_sweep)  # as while it trains: X (stop) is offered only then
    app = SweepApp(pbt_sweep)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(SweepTable)
        assert table.row_count == 4
        first_by_fd = table.current_trial
        await pilot.press("o")  # FD -> step
        await pilot.pause()
        assert app.screen.sort_key == "step"
        await pilot.press("o", "o", "o", "o", "o")  # round to sorting by FD again
        assert app.screen.sort_key == "fd" and table.current_trial == first_by_fd
        await pilot.press("down", "enter")
        await pilot.pause()
        assert calls and calls[-1][0] == "attach" and Path(calls[-1][1]).parent == pbt_sweep
        assert Path(calls[-1][1]).name == table.current_trial
        await pilot.press("space", "c")
        await pilot.pause()
        assert calls[-1] == ["compare", str(pbt_sweep / table.current_trial)]
        await pilot.press("X", "y")
        await pilot.pause()
        assert stop_requested(pbt_sweep)
    ended.save(pbt_sweep)


def _quality_records(trial: Path) -> list[dict]:
    return [r for r in _records(trial) if r.get("type") == "quality"]


def _records(trial: Path) -> list[dict]:
    return RunDir(trial).read_log()  # the one reader: damaged and half-written lines skipped
