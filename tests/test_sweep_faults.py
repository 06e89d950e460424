"""A sweep survives what a hostile user does to it, on a real local Ray (real processes, real signals).

- SIGTERM to the driver: every trial saves at its step and ends `stopped`, and so does the sweep;
  a stop while the judge is readied ends the sweep `stopped` before Ray starts; a driver that is
  gone is told from a running one (`interrupted`).
- A local sweep's Ray listens on 127.0.0.1 / ::1 only and joins no other cluster the machine knows
  of (RAY_ADDRESS, ray_current_cluster), read from /proc while its trials train.
- Settings that cannot be satisfied are one line and exit 2 before anything starts; of two sweeps
  started into one folder at the same moment exactly one runs.

Each sweep runs in its own Ray temp dir, HOME and judge cache, so nothing here touches another
Ray on the machine. Sweeps are slow on a small box: few of them, each as small as tests/test_sweep.py's.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from engine.runs import RunDir

pytest.importorskip("ray")
pytest.importorskip("ray.tune")

from engine.sweep.spec import SweepStatus, sweep_state  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# --------------------------------------------------------------- fixtures
@pytest.fixture
def sweep_env(tmp_path):
    """The environment of a `gan-tui sweep` of this test: its own HOME (Ray's token file), Ray temp dir
    and judge cache (an untrained judge for the embedded digits: its features still rank trials)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNE_"))}
    ray_tmp = Path(tempfile.mkdtemp(prefix="gt", dir="/tmp"))  # short: Ray's socket paths must fit AF_UNIX
    home = tmp_path / "home"
    home.mkdir()
    env.update(PYTHONPATH=str(ROOT), HOME=str(home), RAY_TMPDIR=str(ray_tmp), XDG_CACHE_HOME=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", RAY_worker_niceness="0")  # Ray nices workers to 15: starved on a busy box
    yield env
    shutil.rmtree(ray_tmp, ignore_errors=True)


def cache_untrained_judge(cache_home: Path) -> None:
    import torch

    from engine.checkpoint import save_checkpoint
    from engine.data import load_dataset
    from engine.judge import JUDGE_VERSION, new_classifier

    data = load_dataset("synthetic")
    model = new_classifier(data.info.num_classes, torch.device("cpu"), torch.Generator().manual_seed(0))
    save_checkpoint(cache_home / "gan-tui" / "judges" / f"{data.info.checksum}-v{JUDGE_VERSION}.pt",
                    {"judge_version": JUDGE_VERSION, "checksum": data.info.checksum,
                     "num_classes": data.info.num_classes, "accuracy": 0.1, "train_s": 0.0, "model": model.state_dict()})


@pytest.fixture
def drivers(tmp_path):
    """Whatever sweep driver a test leaves running (a failure half way) is ended with its Ray."""
    yield
    for status_file in tmp_path.rglob("sweep.json"):
        pid = SweepStatus.load(status_file.parent).pid
        if pid > 0:
            try:
                os.killpg(pid, signal.SIGKILL)  # the driver leads its own session; Ray's processes are in it
            except (ProcessLookupError, PermissionError):
                pass


def sweep_cmd(runs: Path, config: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "tui_gan.cli", "sweep", "--config", str(config), "--runs-dir", str(runs),
            "--lr-d", "2e-4", "--headless", *extra]


def wait_for(condition, what: str, limit_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{what}: the command ended early ({proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def records(trial: Path) -> list[dict]:
    return RunDir(trial).read_log()  # the one reader: damaged and half-written lines skipped


# ------------------------------------------------- listening sockets, from /proc
def process_tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def listening_addresses(pids: set[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket in LISTEN state that one of `pids` holds."""
    table: dict[int, tuple[str, int]] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc writes each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            table[int(fields[9])] = (str(ipaddress.ip_address(raw)), int(port, 16))
    found = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in table:
                found.append((name, *table[int(target[8:-1])]))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


# ------------------------------------------------------------------ tests
def test_a_local_sweep_keeps_ray_on_loopback_joins_no_other_cluster_and_sigterm_saves_every_trial(
        tmp_path, sweep_env, drivers):
    cache_untrained_judge(Path(sweep_env["XDG_CACHE_HOME"]))
    # Another cluster this machine "knows of", long gone: a local sweep must start its own Ray anyway.
    stale = Path(sweep_env["RAY_TMPDIR"]) / "ray"
    stale.mkdir(parents=True)
    (stale / "ray_current_cluster").write_text("127.0.0.1:9")
    env = {**sweep_env, "RAY_ADDRESS": "127.0.0.1:9"}
    config = tmp_path / "tiny.json"
    tiny_config(steps=100_000, quality_every=10, quality_samples=100, checkpoint_every=0).save(config)
    runs = tmp_path / "runs"
    watcher = subprocess.Popen(sweep_cmd(runs, config, "--trials", "2", "--parallel", "2", "--sweep-name", "loop"),
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sweep_dir = runs / "loop"
    trials = [sweep_dir / f"trial-{i:03d}" for i in range(2)]
    try:
        wait_for(lambda: all(any(r.get("type") == "quality" for r in records(t)) for t in trials),
                 "the trials did not train and report", 400, watcher)
        driver = SweepStatus.load(sweep_dir).pid
        listening = listening_addresses(process_tree(driver))
        assert {name for name, _, _ in listening} >= {"gcs_server", "raylet"}, listening
        assert all(is_loopback(address) for _, address, _ in listening), listening
        assert sweep_state(sweep_dir) == "running"
        os.kill(driver, signal.SIGTERM)  # Ray's own handler would take the driver down unsaved
        out, err = watcher.communicate(timeout=300)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    status = SweepStatus.load(sweep_dir)
    assert status.state == "stopped" and sweep_state(sweep_dir) == "stopped", status
    for trial in trials:
        state = json.loads((trial / "state.json").read_text())
        assert state["state"] == "stopped", trial
        from engine.checkpoint import load_checkpoint

        newest = sorted((trial / "checkpoints").glob("step_*.pt"))[-1]
        assert load_checkpoint(newest)["trainer"]["step"] == state["step"]  # saved at the step it stopped on


def test_of_two_sweeps_started_into_one_folder_one_runs_and_a_stop_while_its_judge_is_readied_ends_it_stopped(
        tmp_path, sweep_env, drivers):
    config = tmp_path / "tiny.json"
    tiny_config(steps=1000, quality_every=10, quality_samples=100).save(config)
    runs = tmp_path / "runs"  # no cached judge: the driver trains one first (a minute on 2 cores)
    cmd = sweep_cmd(runs, config, "--trials", "1", "--sweep-name", "twice")
    both = [subprocess.Popen(cmd, cwd=ROOT, env=sweep_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    sweep_dir = runs / "twice"
    try:
        wait_for(lambda: any(p.poll() is not None for p in both), "neither sweep was refused", 120)
        refused = next(p for p in both if p.poll() is not None)
        running = next(p for p in both if p is not refused)
        _, err = refused.communicate()
        assert refused.returncode == 2 and err.count("\n") == 1 and "--sweep-name" in err, err
        wait_for(lambda: "judge" in SweepStatus.load(sweep_dir).message, "the judge was not readied", 180, running)
        os.kill(SweepStatus.load(sweep_dir).pid, signal.SIGTERM)
        out, err = running.communicate(timeout=120)
    finally:
        for p in both:
            if p.poll() is None:
                p.kill()
    assert running.returncode == 0, err
    assert SweepStatus.load(sweep_dir).state == "stopped"
    assert [p.name for p in runs.iterdir()] == ["twice"]  # no stray folder
    assert not list(sweep_dir.glob("trial-*")) and not (sweep_dir / ".ray").exists()  # nothing of Ray started


@pytest.mark.parametrize("case", ["cpus", "gpus", "perturbation", "address"])
def test_a_sweep_that_cannot_run_as_asked_is_one_line_and_exit_2_before_anything_starts(
        tmp_path, sweep_env, drivers, case):
    from engine.sweep.cluster import local_resources

    cpus, gpus = local_resources()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    extra, needle = {
        "cpus": (["--cpus-per-trial", str(cpus + 1)], "CPUs"),
        "gpus": (["--gpus-per-trial", str((gpus or 0) + 1)], "GPU"),
        "perturbation": (["--search", "pbt", "--perturbation-interval", "0"], "--perturbation-interval"),
        "address": (["--address", f"127.0.0.1:{port}"], "nothing answers"),
    }[case]
    config = tmp_path / "tiny.json"
    tiny_config(steps=100, quality_every=10).save(config)
    runs = tmp_path / "runs"
    done = subprocess.run(sweep_cmd(runs, config, "--trials", "2", "--sweep-name", "no", *extra), cwd=ROOT,
                          env=sweep_env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not runs.exists() or not any(runs.iterdir())  # no sweep folder, no driver


def test_a_sweep_whose_driver_is_gone_is_interrupted_not_running(tmp_path):
    from engine.sweep.rows import format_table
    from tui_gan.cli.sweep import watch_headless

    gone = subprocess.Popen([PYTHON, "-c", "pass"])
    gone.wait()
    SweepStatus(state="running", pid=gone.pid, host=socket.gethostname()).save(tmp_path)
    assert sweep_state(tmp_path) == "interrupted"
    assert "sweep interrupted" in format_table([], SweepStatus.load(tmp_path))
    out = io.StringIO()
    assert watch_headless(tmp_path, out) == 1  # it ends at once instead of watching a dead sweep
    assert "sweep interrupted" in out.getvalue()
    SweepStatus(state="running", pid=os.getpid(), host=socket.gethostname()).save(tmp_path)
    assert sweep_state(tmp_path) == "running"
    SweepStatus(state="running", pid=gone.pid, host="another-machine").save(tmp_path)
    assert sweep_state(tmp_path) == "running"  # a driver elsewhere (a shared folder) cannot be looked at from here


async def test_the_sweep_view_says_interrupted_when_the_driver_is_gone(tmp_path):
    from textual.widgets import Static

    from tui_gan.screens.sweep import SweepApp

    gone = subprocess.Popen([PYTHON, "-c", "pass"])
    gone.wait()
    SweepStatus(state="running", pid=gone.pid, host=socket.gethostname()).save(tmp_path)
    app = SweepApp(tmp_path)
    async with app.run_test(size=(100, 20)) as pilot:
        await pilot.pause()
        head = app.screen.query_one("#sweep-head", Static)
        assert "interrupted" in str(head.render()) and head.has_class("-failed")
        # Nothing is left to stop, and q no longer says the sweep goes on.
        screen = app.screen
        assert not screen.check_action("stop_sweep", ()) and not screen.check_action("leave", ("live",))
        assert screen.check_action("leave", ("over",))
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    from tui_gan.cli.sweep import left_sweep_line

    assert left_sweep_line(tmp_path).startswith("the sweep interrupted; its trials: ")
