"""A full disk never ends a run: it reaches its last step, warns once per kind of write, and once
space is freed checkpoints and log lines are written again (the log lines kept meanwhile included).

On a real 2 MiB tmpfs where the machine allows mounting one (root in a container), else with the
failure injected at the journal's one low-level open."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from engine import commands as cmd
from engine import events as ev
from engine.journal import WRITE_FAILED_PREFIX, WRITE_RECOVERED_PREFIX


class TmpfsDisk:
    """A real small filesystem: filled with a ballast file, freed by deleting it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ballast = root / "ballast"

    def fill(self) -> None:
        with open(self.ballast, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def free(self) -> None:
        self.ballast.unlink()


class InjectedDisk:
    """Every open for writing of a run-folder file (engine.journal._open, which the TensorBoard writer
    shares) fails with ENOSPC while full; with `only`, just the files it picks."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, only: Callable[[Path], bool] | None = None) -> None:
        import engine.journal as journal

        self.root = root
        self.full = False
        real = journal._open

        def open_(path, flags):
            if self.full and (only is None or only(Path(path))):
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, flags)

        monkeypatch.setattr(journal, "_open", open_)

    def fill(self) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False


@pytest.fixture(params=["tmpfs", "injected"])
def disk(request, tmp_path, monkeypatch):
    root = tmp_path / "disk"
    root.mkdir()
    if request.param == "injected":
        yield InjectedDisk(root, monkeypatch)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("no tmpfs can be mounted here; the injected variant covers it")
    try:
        yield TmpfsDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


def run_to(runner, step):
    while runner.trainer.step < step:
        assert runner.tick()
    runner.settle()


def test_full_disk_run_reaches_its_last_step_warns_once_per_kind_and_resumes_writing_when_freed(disk, synthetic_data):
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config

    sink = QueueSink()
    cfg = tiny_config(steps=80, log_every=5, sample_every=10, checkpoint_every=20)
    runner = Runner(cfg, sink, runs_dir=disk.root / "runs", run_name="full", data=synthetic_data)
    runner.setup()
    run_to(runner, 10)
    disk.fill()
    runner.submit(cmd.SetHyperparams({"lr_g": 5e-4}))  # config.json too
    run_to(runner, 45)  # checkpoints at 20 and 40, grids, metrics, state: all fail
    failed = [e for e in sink.drain() if isinstance(e, ev.WarningRaised) and e.kind.startswith(WRITE_FAILED_PREFIX)]
    per_kind = Counter(e.kind for e in failed)
    assert {"disk:checkpoint", "disk:samples", "disk:config"} <= set(per_kind)
    # On a real filesystem a few log lines still fit in the last page of metrics.jsonl.
    assert "disk:metrics" in per_kind or isinstance(disk, TmpfsDisk)
    assert all(n == 1 for n in per_kind.values()), per_kind  # one warning per kind, not one per write
    assert any("No space left on device" in e.message for e in failed)
    assert runner.trainer.step == 45 and runner.state == ev.RunState.RUNNING
    assert [s for s, _ in runner.run.checkpoints()] == []
    assert not [p for p in runner.run.checkpoints_dir.iterdir() if p.name.endswith(".tmp")]  # no partial files

    disk.free()
    while runner.tick():
        pass
    events = sink.drain()
    assert (events[-1].step, events[-1].state, events[-1].run_dir) == (80, ev.RunState.FINISHED, str(runner.run.path))
    recovered = {e.kind for e in events if isinstance(e, ev.WarningRaised) and e.kind.startswith(WRITE_RECOVERED_PREFIX)}
    assert {"disk_ok:checkpoint", "disk_ok:samples"} <= recovered
    assert "disk_ok:metrics" in recovered or "disk:metrics" not in per_kind
    assert [s for s, _ in runner.run.checkpoints()][-1] == 80
    assert runner.run.read_state()["state"] == "finished"
    records, bad = runner.run.read_log_counted()
    metrics_steps = [r["step"] for r in records if r["type"] == "metrics"]
    assert metrics_steps == list(range(5, 81, 5)) and bad == 0  # the lines kept while full were written, in order
    assert sum(r["type"] == "warning" and r["kind"] == "disk:checkpoint" for r in records) == 1
    assert json.loads(runner.run.config_path.read_text())["lr_g"] == 5e-4


def test_log_lines_a_full_disk_kept_waiting_do_not_land_after_a_rollback_past_them(make_runner, monkeypatch):

    runner, _ = make_runner(steps=1000, checkpoint_every=0)
    disk = InjectedDisk(runner.run.path, monkeypatch)
    while runner.trainer.step < 10:
        runner.tick()
    runner.submit(cmd.SaveCheckpoint())
    runner.tick()
    runner.settle()
    disk.fill()  # the records of steps 11-30 wait in memory
    while runner.trainer.step < 30:
        runner.tick()
    runner.settle()
    disk.free()
    runner.submit(cmd.RollBack("10"))
    runner.tick()
    assert runner.trainer.step <= 11
    while runner.trainer.step < 15:
        runner.tick()
    runner.settle()
    records = runner.run.read_log()
    at = next(i for i, r in enumerate(records) if r["type"] == "rollback")
    assert records[at]["step"] == 10
    assert all(r["step"] <= 10 for r in records[:at]), [r["step"] for r in records[:at]]


def test_dropping_waiting_lines_on_a_still_full_disk_says_nothing_of_the_disk(tmp_path, monkeypatch):
    from engine.journal import Journal

    notes = []
    journal = Journal(notes.append)
    disk = InjectedDisk(tmp_path, monkeypatch)
    disk.fill()
    journal.append(tmp_path / "metrics.jsonl", '{"step": 30}\n')
    journal.drop_unwritten(tmp_path / "metrics.jsonl", lambda line: False)
    journal.flush()
    journal.close()
    assert [n.ok for n in notes] == [False]  # "NOT saved", and no "saved again" while it is still full


def test_torch_save_runtime_error_is_a_write_failure_like_any_other(make_runner, monkeypatch):
    import engine.checkpoint as ck

    runner, sink = make_runner(steps=1000, checkpoint_every=10)

    def full(*_a, **_k):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file data/3: file write failed")

    monkeypatch.setattr(ck.torch, "save", full)
    run_to(runner, 30)
    warnings = [e for e in sink.drain() if isinstance(e, ev.WarningRaised)]
    assert [w.kind for w in warnings] == ["disk:checkpoint"] and "PytorchStreamWriter" in warnings[0].message
    monkeypatch.undo()
    run_to(runner, 40)
    events = sink.drain()
    assert any(isinstance(e, ev.CheckpointSaved) and e.step == 40 for e in events)
    assert any(isinstance(e, ev.WarningRaised) and e.kind == "disk_ok:checkpoint" for e in events)


def test_run_folder_files_follow_the_umask(make_runner):
    from engine.export import export_csv, export_grid

    old = os.umask(0o027)
    try:
        runner, _ = make_runner(steps=20)
        runner.tick()
        runner.submit(cmd.ExportSamples("from-viewer.png"))
        while runner.tick():
            pass
        exports = [export_grid(runner.run, scale=2), export_csv(runner.run)[0]]
    finally:
        os.umask(old)
    run = runner.run
    files = [run.config_path, run.metrics_path, run.state_path, run.latest_checkpoint(), run.sample_grids()[-1][1],
             run.path / "fixed_noise.pt", run.exports_dir / "from-viewer.png", *exports]
    for path in files:
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o640), path


def test_a_run_that_ends_with_no_checkpoint_on_disk_says_it_cannot_be_resumed(disk, synthetic_data):
    """A disk too small for any checkpoint: the run ends, and its last events say so (no resume to offer)."""
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config

    sink = QueueSink()
    runner = Runner(tiny_config(steps=30, checkpoint_every=10), sink, runs_dir=disk.root / "runs", run_name="small",
                    data=synthetic_data)
    runner.setup()
    run_to(runner, 2)
    disk.fill()
    while runner.tick():
        pass
    events = sink.drain()
    assert events[-1].state == ev.RunState.FINISHED and events[-1].checkpoint == ""
    warning = next(e for e in events if isinstance(e, ev.WarningRaised) and e.kind == "checkpoint")
    assert "no checkpoint of this run is on disk" in warning.message and "cannot be resumed" in warning.message
    disk.free()


def test_a_headless_run_on_a_disk_too_small_for_a_checkpoint_exits_1_and_offers_no_resume(tmp_path):
    """Issue 24 item 3, a real process on a real 1 MiB tmpfs: the closing lines say the run cannot be
    resumed (no `--resume` that would fail), and the exit status is not success."""
    import sys

    root = tmp_path / "disk"
    root.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], capture_output=True).returncode:
        pytest.skip("no tmpfs can be mounted here")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tui_gan.cli", "--headless", "--dataset", "synthetic", "--preset", "mlp-small",
             "--steps", "40", "--batch-size", "16", "--quality-every", "0", "--runs-dir", str(root / "runs"),
             "--run-name", "small"],
            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )
        from tui_gan.process.launch import leave_message

        left = leave_message(root / "runs" / "small")
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
    assert done.returncode == 1, done.stderr[-2000:]
    tail = done.stderr.strip().splitlines()[-6:]
    assert any("no checkpoint of this run is on disk: it cannot be resumed" in line for line in tail), tail
    assert not any("--resume" in line for line in tail), tail
    assert "Traceback" not in done.stderr
    assert any("cannot be resumed" in line for line in left) and not any("--resume" in line for line in left), left
