"""The training process's control channel: a Unix domain socket in the run folder.

Every client finds the socket with `socket_path(run_dir)`: RUN/control.sock, or, when that path is
longer than AF_UNIX allows (107 bytes), a short private path /tmp/gan-tui-UID/HASH.sock (folder
mode 0700) with RUN/control.sock left as a symlink pointing to it.

Viewers connect, receive a snapshot (run started, current state, latest metrics and grid) and
then every event; they send commands (engine/protocol.py). The socket is created mode 0600, so
only its owner can connect. Nothing here can slow training: `publish` (called on the training
thread) only appends to per-viewer queues and pokes a wake-up pipe; all socket I/O happens on the
server's own thread, non-blocking. A slow viewer loses its oldest queued events, never the trainer's
time; garbage, half or oversized messages get an error reply (or a closed connection) and the run
goes on. Replies to a viewer's commands travel in their own queue, sent before queued events, so
a viewer that falls behind loses events but never a reply. No input ends the server thread: a
failure while serving one viewer drops that viewer, and the loop goes on.
"""

from __future__ import annotations

import collections
import hashlib
import os
import selectors
import socket
import stat
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from engine import commands as cmd
from engine import events as ev
from engine.protocol import MAX_LINE, ProtocolError, decode_command, encode_event, parse_line, reply

SOCKET_NAME = "control.sock"
_QUEUE_LIMIT = 2000  # events per viewer; past this the oldest are dropped
_REPLY_LIMIT = 10_000  # unanswered replies to a viewer that sends but never reads: it is dropped
_AF_UNIX_MAX = 107  # bytes of a socket path (sun_path is 108 on Linux, with its terminating NUL)


def socket_path(run_dir: Path | str) -> Path:
    """Where the control socket of the run in `run_dir` is (or will be). Every client and the server
    use this one function: RUN/control.sock when that path fits AF_UNIX's limit, else a short
    private path under /tmp/gan-tui-UID/ named by a hash of the run folder's real path."""
    run_dir = Path(run_dir)
    direct = run_dir / SOCKET_NAME
    real = Path(os.path.realpath(run_dir)) / SOCKET_NAME  # the same for every spelling of the folder
    if _fits(real):
        return direct if _fits(Path(os.path.abspath(direct))) else real
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:24]
    return private_socket_dir() / f"{digest}.sock"


def private_socket_dir() -> Path:
    """/tmp/gan-tui-UID, mode 0700, owned by this user (made if missing; OSError if someone else's).
    Not $XDG_RUNTIME_DIR: logind deletes that when the user's last session ends, and a run outlives
    its sessions."""
    folder = Path(f"/tmp/gan-tui-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{folder} is not a private folder of this user; remove it and try again")
    return folder


def _fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= _AF_UNIX_MAX


class ControlServer:
    """Serves one run to any number of local viewers."""

    def __init__(self, path: Path, submit: Callable[[cmd.Command], None]) -> None:
        """`path`: RUN/control.sock (bound where socket_path says), or any other socket path."""
        self.path = socket_path(path.parent) if path.name == SOCKET_NAME else path
        self.pointer = path if self.path != path else None  # RUN/control.sock as a symlink to a private path
        self._inode: int | None = None
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
        """Bind the socket (owner-only) and serve on a daemon thread. The caller owns the run (its lock),
        so a socket file already there is a dead trainer's and is replaced."""
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is born 0600: no window where others could connect
        try:
            listener.bind(str(self.path))
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._inode = os.stat(self.path).st_ino
        if self.pointer is not None:
            try:
                self.pointer.unlink(missing_ok=True)
                self.pointer.symlink_to(self.path)
            except OSError:
                pass  # only a convenience: clients find the socket through socket_path()
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
        try:
            line = encode_event(event)
        except (TypeError, ValueError):
            return  # an event that cannot be encoded must not reach the training thread as an error
        for client in clients:
            client.outbox.append(line)
        self._wake()

    def close(self) -> None:
        """Stop serving and remove the socket file (only if it is still this server's: a new trainer
        of the same run may already have bound its own)."""
        self._closed = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
                if self.pointer is not None and self.pointer.is_symlink() and Path(os.readlink(self.pointer)) == self.path:
                    self.pointer.unlink()
        except OSError:
            pass

    @property
    def viewer_count(self) -> int:
        with self._lock:
            return len(self._clients)

    # --------------------------------------------------------------- serving
    def _serve(self) -> None:
        while not self._closed:
            try:
                ready = self._selector.select(timeout=1.0)
            except (OSError, ValueError):
                traceback.print_exc(file=sys.stderr)
                time.sleep(0.1)  # never a busy loop, never the end of the server
                continue
            for key, mask in ready:
                self._serve_one(key, mask)
            self._update_interest()
        self._shutdown()

    def _serve_one(self, key: selectors.SelectorKey, mask: int) -> None:
        client: _Client | None = None
        try:
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            else:
                client = key.data
                if mask & selectors.EVENT_READ:
                    self._read(client)
                if mask & selectors.EVENT_WRITE and not client.closed:
                    self._flush(client)
        except Exception:  # noqa: BLE001 - one bad viewer must never end the server for the others
            traceback.print_exc(file=sys.stderr)
            if client is not None:
                self._drop(client)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        client = _Client(conn)
        try:
            with self._lock:
                for event in self._snapshot.values():
                    client.outbox.append(encode_event(event))
                self._clients[conn] = client
            self._selector.register(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, client)
        except Exception:
            with self._lock:
                self._clients.pop(conn, None)
            conn.close()  # this viewer gets nothing rather than a half snapshot; the next one may fare better
            raise

    def _read(self, client: _Client) -> None:
        if client.closing:
            return  # told "closing": nothing more of this viewer is read, let alone run
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
            line, rest = client.inbox.split(b"\n", 1)
            if len(line) > MAX_LINE:
                break  # an oversized line ends the connection: the lines behind it in this write are not run
            client.inbox = rest
            if line.strip():
                client.replies.append(self._handle(line))
        end = client.inbox.find(b"\n")
        if (end if end >= 0 else len(client.inbox)) > MAX_LINE:
            client.replies.append(reply(False, f"message over the {MAX_LINE}-byte limit; closing"))
            client.inbox = b""
            client.closing = True
        if len(client.replies) > _REPLY_LIMIT:
            self._drop(client)  # it sends commands and never reads the answers

    def _handle(self, line: bytes) -> bytes:
        """One line in, one reply out, whatever the line holds."""
        try:
            command = decode_command(parse_line(line))
        except ProtocolError as exc:
            return reply(False, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in decoding is an error reply, not a dead server
            return reply(False, f"command not understood ({type(exc).__name__})")
        self._submit(command)
        return reply(True, command=type(command).__name__)

    def _flush(self, client: _Client) -> None:
        while client.replies or client.outbox or client.pending:
            if not client.pending:  # a line is always finished first; then replies before events
                client.pending = client.replies.popleft() if client.replies else client.outbox.popleft()
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
            busy = client.replies or client.outbox or client.pending
            if client.closing and not busy:
                self._drop(client)
                continue
            # A closing viewer is no longer read (it would wake the loop for ever): only its replies go out.
            wanted = (0 if client.closing else selectors.EVENT_READ) | (selectors.EVENT_WRITE if busy else 0)
            if wanted != client.interest and not client.closed:
                try:
                    self._selector.modify(client.sock, wanted, client)
                except (OSError, ValueError, KeyError):
                    self._drop(client)
                    continue
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
        try:
            client.sock.close()
        except OSError:
            pass

    def _shutdown(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            try:
                self._flush(client)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
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
        self.outbox: collections.deque[bytes] = collections.deque(maxlen=_QUEUE_LIMIT)  # events: oldest dropped
        self.replies: collections.deque[bytes] = collections.deque()  # never dropped, sent first
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
    if isinstance(event, (ev.JudgeProgress, ev.JudgeReady)):
        return "judge"  # one key: a new viewer sees the epoch under way, or the ready judge that replaced it
    return ""
