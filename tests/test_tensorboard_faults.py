"""TensorBoard logging follows the run's one write-error rule: a full disk is one warning, the run goes
on, the records wait, and once space returns they reach the same event file, which reads back whole.
No raw traceback. On a real small tmpfs where this machine can mount one, and with ENOSPC injected at
the journal's one low-level open (the way tests/test_diskfull.py does it)."""

from __future__ import annotations

import errno
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from engine import commands as cmd
from engine import events as ev
from engine.tensorboard import TensorBoardLogger
from tests.test_diskfull import InjectedDisk

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_log(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def wait_for(condition, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_full_disk_is_one_warning_the_run_goes_on_and_the_event_file_catches_up(make_runner, monkeypatch, capfd,
                                                                                   tmp_path):
    disk = InjectedDisk(tmp_path, monkeypatch, only=lambda path: path.name.startswith("events.out.tfevents"))
    runner, sink = make_runner(steps=10**6, log_every=5, sample_every=10, checkpoint_every=0, tensorboard=True)
    events: list[ev.Event] = []

    def run_to(step: int) -> None:
        while runner.trainer.step < step:
            assert runner.tick()
            events.extend(sink.drain())

    run_to(20)
    disk.fill()
    run_to(60)
    wait_for(lambda: runner.tensorboard.failed, "the event file's writes did not fail")
    run_to(80)  # failing writes after the first say nothing more
    disk.free()
    wait_for(lambda: not runner.tensorboard.failed, "the event file's writes did not recover")
    run_to(100)
    runner.submit(cmd.Stop())
    while runner.tick():
        events.extend(sink.drain())
    events.extend(sink.drain())
    runner.tensorboard.close()
    kinds = [e.kind for e in events if isinstance(e, ev.WarningRaised)]
    assert kinds.count("disk:tensorboard") == 1 and kinds.count("disk_ok:tensorboard") == 1, kinds
    failed = next(e for e in events if isinstance(e, ev.WarningRaised) and e.kind == "disk:tensorboard")
    assert "No space left on device" in failed.message and "\n" not in failed.message
    assert events[-1].state == ev.RunState.STOPPED
    assert "Traceback" not in capfd.readouterr().err
    acc = read_log(runner.run.path)
    logged = [r["step"] for r in runner.run.read_log() if r["type"] == "metrics"]
    assert [s.step for s in acc.Scalars("loss/d_loss")] == logged  # the steps written while full too
    assert len(list(runner.run.path.glob("events.out.tfevents.*"))) == 1  # one file, read to its end


@pytest.fixture
def tmpfs(tmp_path):
    root = tmp_path / "tmpfs"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("no tmpfs can be mounted here; the injected test covers it")
    yield root
    subprocess.run(["umount", "-l", str(root)], capture_output=True)


def fill(root: Path) -> Path:
    ballast = root / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


def test_on_a_real_full_tmpfs_the_log_recovers_when_space_is_freed(tmpfs, capfd):
    warnings: list[ev.WarningRaised] = []
    logger = TensorBoardLogger(tmpfs, warnings.append)
    logger(ev.RunStarted(str(tmpfs), {"lr_g": 0.001}, "cpu", "CPU", "synthetic", "", 0, 1000, False))
    for step in range(1, 11):
        logger(_metrics(step))
    wait_for(lambda: 10 in _steps(tmpfs, "loss/d_loss"), "the first records did not reach the file")
    ballast = fill(tmpfs)
    for step in range(11, 200):  # images too: far more than the last page of the file can take
        logger(_metrics(step))
        logger(ev.SamplesGenerated(step, np.full((16, 28, 28), step, dtype=np.uint8), fixed=True))
    wait_for(lambda: logger.failed, "a full tmpfs did not fail the writes")
    ballast.unlink()
    logger(_metrics(200))
    wait_for(lambda: not logger.failed, "the writes did not recover after space was freed")
    logger(ev.RunFinished(200, ev.RunState.FINISHED, str(tmpfs)))
    logger.close()
    assert [w.kind for w in warnings] == ["disk:tensorboard", "disk_ok:tensorboard"]
    assert "Traceback" not in capfd.readouterr().err
    acc = read_log(tmpfs)
    assert [s.step for s in acc.Scalars("loss/d_loss")] == list(range(1, 201))
    assert [im.step for im in acc.Images("samples/fixed")] == list(range(11, 200))


def _steps(root: Path, tag: str) -> list[int]:
    try:
        return [s.step for s in read_log(root).Scalars(tag)]
    except KeyError:
        return []


def _metrics(step: int) -> ev.MetricsLogged:
    return ev.MetricsLogged(step=step, epoch=step / 100, d_loss=1.0 / step, g_loss=2.0, d_real=0.6, d_fake=0.4,
                            grad_norm_g=1.0, grad_norm_d=1.0, lr_g=1e-3, lr_d=1e-3, images_per_s=100.0, elapsed_s=step)
