"""Hostile input is one line, never a traceback, and nothing starts: a binary --config, a config whose
width list is a number, a run name too long for the file system, a runs folder that cannot be
written; and a viewer's oversized line ends its connection with nothing behind it run."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from engine import commands as cmd
from engine.protocol import MAX_LINE
from engine.server import SOCKET_NAME, ControlServer
from tui_gan import cli


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    config = tmp_path / "weights.json"
    config.write_bytes(bytes(range(256)) * 4)
    err = _refused(["--headless", "--config", str(config), "--runs-dir", str(tmp_path / "runs")], capsys)
    assert "config" in err and "binary" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, field", [('{"g_hidden": 5}', "g_hidden"), ('{"d_hidden": null}', "d_hidden"),
                                         ('{"data_root": 7}', "data_root"), ('{"steps": 1' + "0" * 5000 + "}", "config")])
def test_a_config_value_of_the_wrong_shape_is_one_line_naming_the_field(tmp_path, capsys, text, field):
    config = tmp_path / "c.json"
    config.write_text(text)
    err = _refused(["--headless", "--config", str(config), "--runs-dir", str(tmp_path / "runs")], capsys)
    assert err.startswith(f"gan-tui: {field}:")


def test_a_run_name_too_long_for_the_file_system_is_one_line_and_starts_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    err = _refused(["--detach", "--dataset", "synthetic", "--runs-dir", str(runs), "--run-name", "a" * 300], capsys)
    assert "run_name" in err and "300 bytes" in err and "255" in err
    assert not runs.exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write: a read-only tmpfs where this user can mount one (root: permissions
    would not stop it), else a folder without write permission."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode == 0:
        yield folder
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        return
    if os.geteuid() == 0:
        pytest.skip("root without mount: no folder here is read-only to it")
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("where", ["", "sub/runs"])
def test_detach_into_a_read_only_runs_folder_is_one_line(read_only_folder, capsys, where):
    runs = read_only_folder / where if where else read_only_folder
    err = _refused(["--detach", "--dataset", "synthetic", "--runs-dir", str(runs)], capsys)
    assert "runs_dir" in err and "cannot be written" in err and "--runs-dir" in err
    assert list(read_only_folder.iterdir()) == []


def test_after_an_oversized_line_nothing_else_of_the_same_write_is_run(tmp_path):
    commands: list[cmd.Command] = []
    server = ControlServer(tmp_path / SOCKET_NAME, commands.append)
    server.start()
    try:
        viewer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        viewer.connect(str(server.path))
        viewer.settimeout(30)
        # One write: a line just over the limit, then a command that must not run. The server reads
        # in 64 KiB chunks, so the command can arrive in the same read as the oversized line's end.
        payload = b"x" * (MAX_LINE + 1) + b"\n" + b'{"command":"stop","save":false}\n' * 50
        try:
            viewer.sendall(payload)
        except OSError:
            pass  # the server may close before it took everything: that is the point
        received = b""
        while True:
            try:
                chunk = viewer.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        viewer.close()
        assert b"closing" in received
        assert b'"ok"' not in received
        assert commands == []
        # A line one byte under the limit (with its newline) is still a line, not a reason to close.
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.connect(str(server.path))
        other.settimeout(30)
        other.sendall(b'{"command":"pause"}' + b" " * (MAX_LINE - 19) + b"\n" + b'{"command":"resume"}\n')
        replies = b""
        while replies.count(b"\n") < 2:
            replies += other.recv(65536)
        other.close()
        assert commands == [cmd.Pause(), cmd.Resume()]
    finally:
        server.close()

