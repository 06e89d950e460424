"""The dashboard's link to a training process in another process: its run folder's control socket."""

from __future__ import annotations

import socket
from pathlib import Path

from engine import events as ev
from engine.protocol import ProtocolError, decode_event, encode_command, parse_line
from engine.server import SOCKET_NAME
from tui_gan.engine_link import Emit, Progress


class AttachError(RuntimeError):
    """No live training process to attach to."""


class SocketEngine:
    """Receives a detached run's events and sends it commands over its Unix socket."""

    attached = True  # q detaches; the run's history comes from its folder

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._sock: socket.socket | None = None
        self._step = 0

    def start(self, emit: Emit, progress: Progress) -> None:
        """Connect, then deliver events until the trainer closes the connection (runs on a worker)."""
        progress(f"connecting to {self.run_dir / SOCKET_NAME}...")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.run_dir / SOCKET_NAME))
        except OSError as exc:
            sock.close()
            raise AttachError(f"no training process is serving {self.run_dir} ({exc.strerror}); "
                              f"resume it with: gan-tui --resume {self.run_dir}") from None
        self._sock = sock
        finished = False
        buffer = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                event = self._event(line)
                if event is not None:
                    finished = finished or isinstance(event, ev.RunFinished)
                    emit(event)
        if not finished:
            emit(ev.WarningRaised(self._step, "the training process went away without a clean stop; "
                                  f"resume with: gan-tui --resume {self.run_dir}", "attach"))
            emit(ev.StateChanged(ev.RunState.INTERRUPTED, self._step, "connection lost"))
            emit(ev.RunFinished(self._step, ev.RunState.INTERRUPTED, str(self.run_dir)))

    def send(self, command: ev.Command) -> None:
        """Send one command line (small, local: does not wait on training)."""
        if self._sock is None:
            return
        try:
            self._sock.sendall(encode_command(command))
        except OSError:
            pass  # the reader sees the connection drop and says so

    def detach(self) -> None:
        """Close the connection; the run goes on."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def gpu_memory(self) -> str:
        return ""

    def _event(self, line: bytes) -> ev.Event | None:
        try:
            message = parse_line(line)
            if "event" in message:
                event = decode_event(message)
                self._step = getattr(event, "step", self._step)
                return event
        except ProtocolError as exc:
            return ev.WarningRaised(self._step, f"unreadable message from the trainer: {exc}", "attach")
        if message.get("reply") == "error":
            return ev.WarningRaised(self._step, f"command refused: {message.get('message')}", "command")
        return None
