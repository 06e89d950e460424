"""The dashboard's link to a training process: its run folder's control socket.

Every dashboard talks to its trainer this way, the one that launched it (`owns_run`) and any
`gan-tui attach` viewer alike; only the quit question differs. The trainer lives in its own session,
so nothing that happens to the viewer (a closed terminal, a crash, a signal) reaches it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from engine import commands as cmd
from engine import events as ev
from engine.protocol import MAX_EVENT_LINE, ProtocolError, decode_event, encode_command, parse_line
from engine.server import socket_path
from tui_gan.describe import FAILURE_LEAD, USER_ERROR_LEAD
from tui_gan.exits import USER_ERROR
from tui_gan.process.engine_link import Emit, Progress
from tui_gan.formatting import NO_CHECKPOINT, how_to_go_on

_CONNECT_POLL_S = 0.2
_RECONNECT_POLL_S = 0.5  # an attached viewer waiting for its run to be resumed
_ATTACH_TIMEOUT_S = 10.0  # a run that has a socket file but does not answer (not a starting trainer)


class AttachError(RuntimeError):
    """No live training process to attach to; `user_error` when the trainer ended on a mistake of the user's."""

    def __init__(self, message: str, user_error: bool = False) -> None:
        super().__init__(message)
        self.user_error = user_error


class SocketEngine:
    """Receives a training process's events and sends it commands over its Unix socket.

    `process` is the trainer this dashboard just launched (it may still be importing torch): the link
    then waits for its socket as long as the process lives, and reports the end of its log if it dies.
    """

    def __init__(self, run_dir: Path, process: subprocess.Popen[bytes] | None = None,
                 log_path: Path | None = None) -> None:
        self.run_dir = run_dir
        self.process = process
        self.log_path = log_path
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._early: deque[cmd.Command] = deque()
        self._detached = False
        self._step = 0
        self.finished = False
        """True once the trainer said the run is over (RunFinished)."""

    @property
    def owns_run(self) -> bool:
        """True when this dashboard launched the trainer (quitting asks: stop it, or leave it training)."""
        return self.process is not None

    @property
    def attached(self) -> bool:
        """True for a viewer opened with `gan-tui attach`: q detaches, X stops the run."""
        return not self.owns_run

    can_detach = True  # the trainer is its own process: leaving it training is always possible
    remote = True  # the run's history is in its folder, not in this process: load it on RunStarted

    def start(self, emit: Emit, progress: Progress) -> None:
        """Connect (waiting while a launched trainer starts) and deliver its events, on a thread of
        the link's own: this returns at once, so a dashboard that quits never waits on the socket."""
        threading.Thread(target=self._serve, args=(emit, progress), name="gan-tui-link", daemon=True).start()

    def _serve(self, emit: Emit, progress: Progress) -> None:
        try:
            sock = self._connect(progress)
        except AttachError as exc:
            if not self._detached:
                emit(ev.ErrorRaised(0, str(exc), "", user_error=exc.user_error))
                state = ev.RunState.FAILED if self.process is not None else ev.RunState.INTERRUPTED
                emit(ev.StateChanged(state, 0, str(exc)))
                emit(ev.RunFinished(0, state, str(self.run_dir)))
            return
        while self._follow(sock, emit):
            time.sleep(_RECONNECT_POLL_S)
            again = self._connect_once()
            if again is not None:  # the trainer lives: it let go of this viewer (one that fell behind)
                sock = again
                continue
            # An attached viewer outlives its trainer: it says how to resume and waits for the run to
            # be served again (a resume from any terminal), then shows it on; q leaves meanwhile.
            if not self._lost(emit, waits=True):
                return
            sock = self._reconnect()
            if sock is None:
                return
        if not self.finished and not self._detached:
            self._lost(emit, waits=False)

    def _lost(self, emit: Emit, waits: bool) -> bool:
        """Say that the trainer went away without a clean stop, and how to go on; True if the viewer
        should wait for a resume (there is a checkpoint to resume from, and it `waits`)."""
        again = how_to_go_on(self.run_dir)
        if again == NO_CHECKPOINT:
            waits = False
        follows = " (this viewer follows it when it is back; q leaves)" if waits else ""
        emit(ev.WarningRaised(self._step, f"the training process went away without a clean stop; {again}{follows}",
                              "attach"))
        emit(ev.StateChanged(ev.RunState.INTERRUPTED, self._step, "connection lost"))
        if not waits:
            emit(ev.RunFinished(self._step, ev.RunState.INTERRUPTED, str(self.run_dir)))
        return waits

    def _follow(self, sock: socket.socket, emit: Emit) -> bool:
        """Deliver events from `sock` until it closes; True when an attached viewer should wait for the
        run to come back (its trainer went away without finishing, and the viewer did not leave)."""
        with self._lock:
            if self._detached:
                sock.close()
                return False
            self._sock = sock
            early, self._early = list(self._early), deque()
        for command in early:
            self.send(command)
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
                    self.finished = self.finished or isinstance(event, ev.RunFinished)
                    emit(event)
        with self._lock:
            if self._sock is sock:
                self._sock = None
        sock.close()
        return self.attached and not self.finished and not self._detached

    def _reconnect(self) -> socket.socket | None:
        """Wait (as long as the viewer stays) for a trainer to serve this run folder again."""
        while not self._detached:
            sock = self._connect_once()
            if sock is not None:
                return sock
            time.sleep(_RECONNECT_POLL_S)
        return None

    def _connect_once(self) -> socket.socket | None:
        """A connection to the trainer serving this run folder, or None when none answers."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(socket_path(self.run_dir)))
            return sock
        except OSError:
            sock.close()
            return None

    def send(self, command: cmd.Command) -> None:
        """Send one command line (small, local: does not wait on training). Before the connection is
        up it is queued, except a Stop to a trainer still starting: that one is a SIGTERM (which the
        trainer answers by saving and stopping, or, still importing torch, by simply ending)."""
        with self._lock:
            sock = self._sock
            if sock is None:
                if isinstance(command, cmd.Stop) and self.process is not None and self.process.poll() is None:
                    self.process.send_signal(signal.SIGTERM)
                else:
                    self._early.append(command)
                return
        try:
            sock.sendall(encode_command(command))
        except OSError:
            pass  # the reader sees the connection drop and says so

    def detach(self) -> None:
        """Close the connection; the run goes on."""
        with self._lock:
            self._detached = True
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def gpu_memory(self) -> str:
        return ""

    # ---------------------------------------------------------------- helpers
    def _connect(self, progress: Progress) -> socket.socket:
        path = socket_path(self.run_dir)
        started = time.monotonic()
        last_note = ""
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return sock
            except OSError as exc:
                sock.close()
                error = exc
            if self._detached:
                raise AttachError("left before the trainer was up")
            if self.process is None:
                if time.monotonic() - started > _ATTACH_TIMEOUT_S or not path.exists():
                    raise AttachError(f"no training process is serving {self.run_dir} ({error.strerror}); "
                                      f"{how_to_go_on(self.run_dir)}")
            elif self.process.poll() is not None:
                said = why_it_ended(self.log_path, self.process.returncode)
                raise AttachError(f"the training process ended at start-up (exit {self.process.returncode}): "
                                  f"{'; '.join(said) or 'no output'}", user_error=self.process.returncode == USER_ERROR)
            note = self._starting_note(time.monotonic() - started)
            if note != last_note:
                progress(note)
                last_note = note
            time.sleep(_CONNECT_POLL_S)

    def _starting_note(self, waited_s: float) -> str:
        if self.process is None:
            return f"connecting to {socket_path(self.run_dir)}..."
        tail = log_tail(self.log_path, 1)
        doing = tail[0] if tail else "importing torch"
        return f"starting the training process (pid {self.process.pid}, {waited_s:.0f} s): {doing[:120]}"

    def _event(self, line: bytes) -> ev.Event | None:
        try:
            message = parse_line(line, MAX_EVENT_LINE)
            if "event" in message:
                event = decode_event(message)
                self._step = getattr(event, "step", self._step)
                return event
        except (ProtocolError, ValueError, KeyError, TypeError) as exc:  # a line from a different gan-tui, say
            return ev.WarningRaised(self._step, f"unreadable message from the trainer: {exc}", "attach")
        if message.get("reply") == "error":
            return ev.WarningRaised(self._step, f"command refused: {message.get('message')}", "command")
        return None


def why_it_ended(log_path: Path | None, returncode: int) -> list[str]:
    """What a trainer that ended at start-up said of why: its one `cannot train:` (a mistake of the
    user's) or `training failed` line, since the closing lines follow it in the log; else its last lines."""
    tail = [line for line in log_tail(log_path, 20) if not line.endswith("...")]
    lead = USER_ERROR_LEAD if returncode == USER_ERROR else FAILURE_LEAD
    return [line for line in tail if line.startswith(lead)][-1:] or tail[-3:]


def log_tail(log_path: Path | None, lines: int = 3) -> list[str]:
    """The last non-empty lines of a trainer's log (a progress line rewritten with \\r counts once)."""
    if log_path is None:
        return []
    try:
        with log_path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    out = [line.rsplit("\r", 1)[-1].strip() for line in text.splitlines()]
    return [line for line in out if line][-lines:]
