"""The training process's control channel: a Unix domain socket in the run folder.

Viewers connect, receive a snapshot (run started, current state, latest metrics and grid) and
then every event; they send commands (engine/protocol.py). The socket is created mode 0600, so
only its owner can connect. Nothing here can slow training: `publish` (called on the training
thread) only appends to per-viewer queues and pokes a wake-up pipe; all socket I/O happens on the
server's own thread, non-blocking. A slow viewer loses its oldest queued events, never the trainer's
time; garbage, half or oversized messages get an error reply (or a closed connection) and the run
goes on.
"""

from __future__ import annotations

import collections
import os
import selectors
import socket
import threading
from pathlib import Path
from typing import Callable

from engine import events as ev
from engine.protocol import MAX_LINE, ProtocolError, decode_command, encode_event, parse_line, reply

SOCKET_NAME = "control.sock"
_QUEUE_LIMIT = 2000  # events per viewer; past this the oldest are dropped


class ControlServer:
    """Serves one run to any number of local viewers."""

    def __init__(self, path: Path, submit: Callable[[ev.Command], None]) -> None:
        self.path = path
        self._submit = submit
        self._lock = threading.Lock()
        self._clients: dict[socket.socket, _Client] = {}
        self._snapshot: dict[str, ev.Event] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None

    # ------------------------------------------------------------------ API
    def start(self) -> None:
        """Bind the socket (owner-only) and serve on a daemon thread."""
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is born 0600: no window where others could connect
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(8)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name="gan-tui-control", daemon=True)
        self._thread.start()

    def publish(self, event: ev.Event) -> None:
        """Fan an event out to the viewers. Called on the training thread; never blocks."""
        key = _snapshot_key(event)
        with self._lock:  # one lock for snapshot and viewers: a new viewer misses nothing, sees nothing twice
            if key:
                self._snapshot[key] = event
            clients = list(self._clients.values())
        if not clients:
            return
        line = encode_event(event)
        for client in clients:
            client.outbox.append(line)
        self._wake()

    def close(self) -> None:
        """Stop serving and remove the socket file."""
        self._closed = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)

    @property
    def viewer_count(self) -> int:
        with self._lock:
            return len(self._clients)

    # --------------------------------------------------------------- serving
    def _serve(self) -> None:
        while not self._closed:
            for key, mask in self._selector.select(timeout=1.0):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                else:
                    client: _Client = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(client)
                    if mask & selectors.EVENT_WRITE and not client.closed:
                        self._flush(client)
            self._update_interest()
        self._shutdown()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        client = _Client(conn)
        with self._lock:
            for event in self._snapshot.values():
                client.outbox.append(encode_event(event))
            self._clients[conn] = client
        self._selector.register(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)  # the viewer went away, perhaps mid-message: nothing else to do
            return
        client.inbox += data
        while b"\n" in client.inbox:
            line, client.inbox = client.inbox.split(b"\n", 1)
            if line.strip():
                client.outbox.append(self._handle(line))
        if len(client.inbox) > MAX_LINE:
            client.outbox.append(reply(False, f"message over the {MAX_LINE}-byte limit; closing"))
            client.inbox = b""
            client.closing = True

    def _handle(self, line: bytes) -> bytes:
        try:
            command = decode_command(parse_line(line))
        except ProtocolError as exc:
            return reply(False, str(exc))
        self._submit(command)
        return reply(True, command=type(command).__name__)

    def _flush(self, client: _Client) -> None:
        while client.outbox or client.pending:
            if not client.pending:
                client.pending = client.outbox.popleft()
            try:
                sent = client.sock.send(client.pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(client)
                return
            client.pending = client.pending[sent:]
        if client.closing:
            self._drop(client)

    def _update_interest(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox or client.pending else 0)
            if wanted != client.interest and not client.closed:
                self._selector.modify(client.sock, wanted, client)
                client.interest = wanted

    def _drop(self, client: _Client) -> None:
        if client.closed:
            return
        client.closed = True
        with self._lock:
            self._clients.pop(client.sock, None)
        try:
            self._selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    def _shutdown(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            self._flush(client)
            self._drop(client)
        if self._listener is not None:
            self._listener.close()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a full pipe already means "wake up"


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = b""
        self.outbox: collections.deque[bytes] = collections.deque(maxlen=_QUEUE_LIMIT)
        self.pending = b""
        self.interest = selectors.EVENT_READ | selectors.EVENT_WRITE
        self.closing = False
        self.closed = False


def _snapshot_key(event: ev.Event) -> str:
    """What a newly connected viewer needs to draw the run at once (the rest is in the run folder)."""
    if isinstance(event, ev.SamplesGenerated):
        return "samples" if event.fixed else ""
    if isinstance(event, (ev.RunStarted, ev.StateChanged, ev.MetricsLogged, ev.HyperparamsChanged, ev.RunFinished)):
        return type(event).__name__
    return ""
