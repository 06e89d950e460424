"""Detached training: the control socket, its protocol, `ls`, and recovery after kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import commands as cmd
from engine import events as ev
from engine.protocol import MAX_LINE, ProtocolError, decode_command, decode_event, encode_command, encode_event, parse_line
from engine.config import TrainConfig
from engine.runs import RunDir
from engine.server import SOCKET_NAME
from tests.fakes import known_digits
from tui_gan.formatting import gan_tui_command
from tui_gan.cli.ls import list_runs

ROOT = Path(__file__).resolve().parents[1]


class Viewer:
    """A raw protocol client, as any program could write one."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.sock.settimeout(60)
        self.buffer = b""

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def next(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def until(self, predicate, limit: int = 5000) -> dict:
        for _ in range(limit):
            message = self.next()
            if predicate(message):
                return message
        raise AssertionError("message never came")


def detach(tmp_path: Path, *extra: str) -> Path:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"dataset": "synthetic", "preset": "mlp-small", "g_hidden": [32], "d_hidden": [32],
                                  "latent_dim": 8, "batch_size": 16, "steps": 10**8, "log_every": 10,
                                  "sample_every": 50, "checkpoint_every": 100, "device": "cpu",
                                  "log_every_s": 0, "sample_every_s": 0, "checkpoint_every_s": 0}))
    result = subprocess.run(
        [sys.executable, "-m", "tui_gan.cli", "--detach", "--config", str(config), "--runs-dir", str(tmp_path / "runs"),
         "--run-name", "d", *extra], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "d"
    assert gan_tui_command("attach", run) in result.stdout  # a command that works from this shell
    return run


def pid_of(run: Path) -> int:
    return json.loads((run / "state.json").read_text())["pid"]


def stop(run: Path) -> None:
    viewer = Viewer(run / SOCKET_NAME)
    viewer.send(b'{"command":"stop","save":true}\n')
    viewer.until(lambda m: m.get("event") == "RunFinished")
    pid = pid_of(run)
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def test_detached_run_obeys_commands_over_the_socket(tmp_path):
    run = detach(tmp_path)
    try:
        assert os.getpgid(pid_of(run)) != os.getpgid(0)  # its own session: the terminal's end does not reach it
        viewer = Viewer(run / SOCKET_NAME)
        first = viewer.next()
        assert first["event"] == "RunStarted" and first["data"]["run_dir"] == str(run)
        viewer.send(b'{"command":"pause"}\n')
        assert viewer.until(lambda m: "reply" in m) == {"reply": "ok", "command": "Pause"}
        paused = viewer.until(lambda m: m.get("event") == "StateChanged" and m["data"]["state"] == "paused")
        step = paused["data"]["step"]
        time.sleep(0.5)
        viewer.send(b'{"command":"set_hyperparams","values":{"lr_g":0.0001}}\n{"command":"save"}\n')
        changed = decode_event(viewer.until(lambda m: m.get("event") == "HyperparamsChanged"))
        assert changed.new["lr_g"] == 1e-4 and changed.step == step  # nothing trained while paused
        saved = decode_event(viewer.until(lambda m: m.get("event") == "CheckpointSaved"))
        assert Path(saved.path).is_file() and saved.step == step
        viewer.send(b'{"command":"resume"}\n')
        metrics = viewer.until(lambda m: m.get("event") == "MetricsLogged" and m["data"]["step"] > step + 20)
        assert metrics["data"]["lr_g"] == 1e-4
        # A second viewer at the same time sees the same run.
        other = Viewer(run / SOCKET_NAME)
        assert other.next()["event"] == "RunStarted"
        seen = other.until(lambda m: m.get("event") == "MetricsLogged")
        assert seen["data"]["lr_g"] == 1e-4
    finally:
        stop(run)
    assert not (run / SOCKET_NAME).exists()
    assert RunDir(run).read_state()["state"] == "stopped"


def test_bad_viewers_never_harm_the_run(tmp_path):
    run = detach(tmp_path)
    try:
        path = run / SOCKET_NAME
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600 and os.stat(path).st_uid == os.getuid()
        viewer = Viewer(path)
        for garbage in (b"hello\n", b"[1,2]\n", b'{"command":"format_disk"}\n', b'{"command":"step","count":-5}\n',
                        b'{"command":"set_hyperparams","values":{"lr_d":-1}}\n', b'{"command":"pause","x":1}\n',
                        b'\xff\xfe\n'):
            viewer.send(garbage)
            answer = viewer.until(lambda m: "reply" in m)
            assert answer["reply"] == "error" and answer["message"], garbage
        # A half message, then the viewer dies: the run goes on.
        half = Viewer(path)
        half.send(b'{"command": "pau')
        half.sock.close()
        # An oversized message: an error reply and a closed connection, nothing else.
        big = Viewer(path)
        big.send(b"x" * (MAX_LINE + 10))
        assert big.until(lambda m: "reply" in m)["reply"] == "error"
        step = viewer.until(lambda m: m.get("event") == "MetricsLogged")["data"]["step"]
        later = viewer.until(lambda m: m.get("event") == "MetricsLogged" and m["data"]["step"] > step + 50)
        assert later["data"]["lr_d"] == TrainConfig().lr_d  # the bad value changed nothing
    finally:
        stop(run)


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another user needs root")
def test_another_user_cannot_connect(tmp_path):
    run = detach(tmp_path)
    try:
        os.chmod(tmp_path, 0o755)
        code = (
            "import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(0)\n"
            "sys.exit(3)\n"
        )
        assert subprocess.run([sys.executable, "-c", code, str(run / SOCKET_NAME)], timeout=60).returncode == 0
    finally:
        stop(run)


def test_kill_9_then_resume_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path):
    run = detach(tmp_path)
    viewer = Viewer(run / SOCKET_NAME)
    viewer.until(lambda m: m.get("event") == "CheckpointSaved")
    viewer.until(lambda m: m.get("event") == "MetricsLogged" and m["data"]["step"] % 100 == 50)
    os.kill(pid_of(run), signal.SIGKILL)
    time.sleep(0.5)
    row = next(r for r in list_runs(tmp_path / "runs") if r["name"] == "d")
    assert row["state"] == "interrupted"
    last_ckpt = RunDir(run).checkpoints()[-1][0]
    last_logged = max(r["step"] for r in RunDir(run).read_log())
    result = subprocess.run(
        [sys.executable, "-m", "tui_gan.cli", "--headless", "--resume", str(run), "--steps", str(last_ckpt + 20)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lost = last_logged - last_ckpt
    assert 0 < lost < 100 and f"{lost} steps after the last checkpoint were lost" in result.stderr
    assert f"resumed at step {last_ckpt:,}" in result.stderr


def test_detach_reports_a_trainer_that_dies_at_start_up_at_once(tmp_path):
    empty = tmp_path / "no-images-here"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "tui_gan.cli", "--detach", "--dataset", str(empty), "--runs-dir", str(tmp_path / "runs"),
         "--run-name", "bad"], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    # A folder without images is the user's to fix (issue 25): exit status 2 and the trainer's own one line.
    assert result.returncode == 2
    assert result.stderr.startswith("gan-tui: cannot train: ") and str(empty) in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_ls_reports_each_state(tmp_path):
    runs = tmp_path / "runs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, state, pid in (("a-running", "running", os.getpid()), ("b-dead", "running", dead.pid),
                             ("c-finished", "finished", 1), ("d-failed", "failed", 1), ("e-paused", "paused", os.getpid())):
        folder = runs / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "state.json").write_text(json.dumps({"state": state, "pid": pid, "step": 7}))
        (folder / "metrics.jsonl").write_text(json.dumps({"type": "metrics", "step": 7, "d_loss": 1.25, "g_loss": 0.5}) + "\n")
    rows = {r["name"]: r for r in list_runs(runs)}
    assert rows["a-running"]["state"] == f"running (pid {os.getpid()})"
    assert rows["b-dead"]["state"] == "interrupted"
    assert rows["c-finished"]["state"] == "finished" and rows["d-failed"]["state"] == "failed"
    assert rows["e-paused"]["state"].startswith("paused")
    assert rows["a-running"]["step"] == 7 and rows["a-running"]["d_loss"] == 1.25
    out = subprocess.run([sys.executable, "-m", "tui_gan.cli", "ls", "--runs-dir", str(runs)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    assert "interrupted" in out and "1.250" in out


def test_protocol_round_trips_events_and_refuses_bad_commands():
    samples = ev.SamplesGenerated(5, known_digits(4), True, "p.png")
    back = decode_event(parse_line(encode_event(samples)))
    assert back.step == 5 and (back.images == samples.images).all()
    metrics = ev.MetricsLogged(1, 0.1, float("nan"), 1.0, 0.5, 0.5, 1, 1, 1e-3, 1e-3, 10.0, 1.0)
    assert str(decode_event(parse_line(encode_event(metrics))).d_loss) == "nan"
    state = decode_event(parse_line(encode_event(ev.StateChanged(ev.RunState.PAUSED, 3))))
    assert state.state is ev.RunState.PAUSED
    assert decode_command({"command": "step", "count": 3}) == cmd.Step(3)
    quality = ev.QualityMeasured(500, 20.0, 8.6, 1000, (0.1,) * 10, 10, 0.01, 0.95, 0.98)
    assert decode_event(parse_line(encode_event(quality))) == quality
    alarm = ev.AlarmRaised(7, "collapse", "mode collapse")
    assert decode_event(parse_line(encode_event(alarm))) == alarm
    assert decode_command(parse_line(encode_command(cmd.RollBack("best", 0.5)))) == cmd.RollBack("best", 0.5)
    for bad in ({"command": "step", "count": True}, {"command": "stop", "save": "yes"}, {}, {"command": 1},
                {"command": "roll_back", "lr_scale": 2}, {"command": "roll_back", "to": 3},
                {"command": "set_hyperparams", "values": {"beta1": 2}}, {"command": "set_hyperparams", "values": {"preset": "x"}}):
        with pytest.raises(ProtocolError):
            decode_command(bad)
    with pytest.raises(ProtocolError):
        parse_line(b"x" * (MAX_LINE + 1))


def test_a_viewer_whose_shutdown_hangs_still_ends_after_a_signal():
    """The safety net behind SIGHUP/SIGTERM/SIGINT: a hung exit (seen in Textual's writer queue once
    the terminal hung up) cannot keep a viewer process alive for good."""
    code = "import time\nfrom tui_gan.process.viewer import exit_later\nexit_later(0.5, 3)\ntime.sleep(60)\n"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=30)
    assert done.returncode == 3 and time.monotonic() - start < 20


def test_an_attached_viewer_follows_its_run_through_a_kill_and_a_resume(tmp_path):
    """Issue 24: the trainer is killed under an attached viewer; the viewer says how to resume and,
    when the run is resumed from another terminal, shows it on over the same link."""
    import queue

    from tui_gan.process.socket_link import SocketEngine

    run = detach(tmp_path)
    events: queue.Queue = queue.Queue()
    link = SocketEngine(run)
    link.start(events.put, lambda _note: None)

    def until(predicate, timeout: float = 120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = events.get(timeout=1)
            except queue.Empty:
                continue
            if predicate(event):
                return event
        raise AssertionError("event never came")

    until(lambda e: isinstance(e, ev.CheckpointSaved))
    os.kill(pid_of(run), signal.SIGKILL)
    warning = until(lambda e: isinstance(e, ev.WarningRaised) and e.kind == "attach")
    assert gan_tui_command("--resume", run) in warning.message and "follows it" in warning.message
    until(lambda e: isinstance(e, ev.StateChanged) and e.state == ev.RunState.INTERRUPTED)
    resumed = subprocess.Popen([sys.executable, "-m", "tui_gan.cli", "--headless", "--resume", str(run)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        started = until(lambda e: isinstance(e, (ev.RunStarted, ev.RunFinished)))
        assert isinstance(started, ev.RunStarted) and started.resumed
        until(lambda e: isinstance(e, ev.MetricsLogged) and e.step > started.step)
        assert not link.finished
    finally:
        link.detach()
        resumed.send_signal(signal.SIGTERM)
        _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err[-2000:]
