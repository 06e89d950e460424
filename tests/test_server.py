"""The control channel cannot be silenced: hostile lines, values out of range, a viewer that never
reads, and run folders whose socket path is too long for AF_UNIX. Real sockets, real threads."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import numpy as np
import pytest

from engine import commands as cmd
from engine import events as ev
from engine.protocol import MAX_LINE, ProtocolError, decode_command, parse_line
from engine.server import SOCKET_NAME, ControlServer, socket_path


class Viewer:
    """A raw protocol client."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.sock.settimeout(30)
        self.buffer = b""

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def next(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "connection closed"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def reply(self) -> dict:
        while True:
            message = self.next()
            if "reply" in message:
                return message


@pytest.fixture
def served(tmp_path):
    commands: list[cmd.Command] = []
    server = ControlServer(tmp_path / SOCKET_NAME, commands.append)
    server.start()
    yield server, commands, tmp_path
    server.close()


HOSTILE = [
    b"[" * 100_000 + b"]" * 100_000,  # RecursionError inside json
    b'{"command":"step","count":' + b"9" * 5000 + b"}",  # past Python's int-string limit: ValueError
    b'{"command":"set_hyperparams","values":{"lr_g":' + b"1" + b"0" * 400 + b"}}",  # 10**400: float overflow
    b'{"command":"set_hyperparams","values":{"lr_g":1e999}}',  # inf
    b'{"command":"set_hyperparams","values":{"lr_g":"0.1"}}',
    b'{"command":"set_hyperparams","values":{"preset":"mlp"}}',
    b'{"command":"set_hyperparams","values":[]}',
    b"\xff\xfe\x00garbage",  # not UTF-8
    b"[1,2,3]",
    b"42",
    b'"pause"',
    b"null",
    b'{"command":"format_disk"}',
    b'{"command":["pause"]}',
    b'{"command":"pause","extra":1}',
    b'{"command":"step","count":true}',
    b'{"command":"step","count":0}',
    b'{"command":"sample_fresh","seed":1180591620717411303424}',  # 2**70
    b'{"command":"sample_fresh","seed":-1}',
    b'{"command":"roll_back","to":"../../etc/passwd"}',
    b'{"command":"roll_back","to":"/tmp/evil.pt"}',
    b'{"command":"roll_back","to":"last-good","lr_scale":' + b"1" + b"0" * 400 + b"}",
    b'{"command":"roll_back","to":"last-good","lr_scale":0}',
    b'{"command":"export","path":"config.json/../../config.json"}',
    b'{"command":"export","path":"/etc/passwd"}',
    b'{"command":"export","path":"../config.json"}',
    b'{"command":"export","path":7}',
    b'{"command":"stop","save":"yes"}',
]


@pytest.mark.parametrize("line", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_line_gets_an_error_reply_and_the_server_still_answers(served, line):
    server, commands, _ = served
    viewer = Viewer(server.path)
    viewer.send(line + b"\n")
    answer = viewer.reply()
    assert answer["reply"] == "error" and answer["message"]
    viewer.send(b'{"command":"pause"}\n')
    assert viewer.reply() == {"reply": "ok", "command": "Pause"}
    assert commands == [cmd.Pause()]  # the hostile line submitted nothing


def test_an_oversized_line_closes_that_viewer_only(served):
    server, commands, _ = served
    big = Viewer(server.path)
    big.send(b"x" * (MAX_LINE + 10))
    assert big.reply()["reply"] == "error"
    other = Viewer(server.path)
    other.send(b'{"command":"resume"}\n')
    assert other.reply() == {"reply": "ok", "command": "Resume"}


def test_values_in_range_pass(served):
    server, commands, _ = served
    viewer = Viewer(server.path)
    for line in (b'{"command":"sample_fresh","seed":9223372036854775807}', b'{"command":"roll_back","to":"120","lr_scale":0.5}',
                 b'{"command":"export","path":"digits.png"}', b'{"command":"export","path":"sub/digits"}',
                 b'{"command":"set_hyperparams","values":{"lr_g":0.0001,"d_steps":2}}'):
        viewer.send(line + b"\n")
        assert viewer.reply()["reply"] == "ok", line
    assert commands[0] == cmd.SampleFresh(2**63 - 1) and commands[1] == cmd.RollBack("120", 0.5)


def test_replies_are_never_dropped_behind_queued_events(served):
    server, commands, _ = served
    viewer = Viewer(server.path)
    viewer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    images = np.zeros((64, 28, 28), dtype=np.uint8)
    for step in range(5000):  # far past the per-viewer event queue: the oldest events are dropped
        server.publish(ev.SamplesGenerated(step, images, fixed=False))
    viewer.send(b'{"command":"save"}\n')
    for step in range(5000, 10000):
        server.publish(ev.SamplesGenerated(step, images, fixed=False))
    seen_reply = None
    steps = []
    while seen_reply is None:
        message = viewer.next()
        if "reply" in message:
            seen_reply = message
        else:
            steps.append(message["data"]["step"])
    assert seen_reply == {"reply": "ok", "command": "SaveCheckpoint"}
    assert commands == [cmd.SaveCheckpoint()]
    assert len(steps) < 10000  # events were dropped, the reply was not


def test_a_long_run_path_gets_a_short_private_socket_found_by_socket_path(tmp_path):
    run_dir = tmp_path / ("a-very-long-folder-name-" * 6) / "run"
    run_dir.mkdir(parents=True)
    assert len(str(run_dir / SOCKET_NAME)) > 108
    path = socket_path(run_dir)
    assert len(os.fsencode(path)) <= 107 and path.parent == Path(f"/tmp/gan-tui-{os.getuid()}")
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    commands: list[cmd.Command] = []
    server = ControlServer(run_dir / SOCKET_NAME, commands.append)
    server.start()
    try:
        assert server.path == path and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert (run_dir / SOCKET_NAME).is_symlink() and (run_dir / SOCKET_NAME).resolve() == path  # the pointer
        viewer = Viewer(socket_path(run_dir))
        viewer.send(b'{"command":"pause"}\n')
        assert viewer.reply()["reply"] == "ok"
        # Any spelling of the folder finds the same socket.
        os.chdir(run_dir.parent)
        assert socket_path(Path("run")) == path
    finally:
        os.chdir(tmp_path)
        server.close()
    assert not path.exists() and not (run_dir / SOCKET_NAME).is_symlink()


def test_a_short_run_path_keeps_its_socket_in_the_folder(tmp_path):
    assert socket_path(tmp_path) == tmp_path / SOCKET_NAME


def test_close_leaves_a_newer_servers_socket_alone(tmp_path):
    first = ControlServer(tmp_path / SOCKET_NAME, lambda c: None)
    first.start()
    second = ControlServer(tmp_path / SOCKET_NAME, lambda c: None)  # the run's next trainer
    second.start()
    first.close()
    assert (tmp_path / SOCKET_NAME).exists()
    Viewer(tmp_path / SOCKET_NAME).send(b'{"command":"pause"}\n')
    second.close()
    assert not (tmp_path / SOCKET_NAME).exists()


def test_decode_command_checks_every_value():
    with pytest.raises(ProtocolError, match="nested too deeply"):
        parse_line(b"[" * 100_000)
    with pytest.raises(ProtocolError, match="lr_g"):
        decode_command({"command": "set_hyperparams", "values": {"lr_g": 10**400}})
    with pytest.raises(ProtocolError, match="seed"):
        decode_command({"command": "sample_fresh", "seed": 2**70})
    assert decode_command({"command": "export", "path": ""}) == cmd.ExportSamples("")
