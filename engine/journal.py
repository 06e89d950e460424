"""Every write into a run folder goes through here: one atomic writer and one write-error policy.

    journal = Journal(on_note=print)                 # starts its writer thread
    journal.append(run.metrics_path, line, "metrics")
    journal.write(path, data_or_writer, "checkpoint", what="checkpoint at step 20", done=callback)
    journal.call("checkpoint", lambda: run.prune_checkpoints(3))
    journal.flush()                                  # everything queued so far is on disk (or failed)
    journal.close()

The policy: a write that fails for any reason (OSError such as ENOSPC, torch.save's RuntimeError,
anything else) never reaches the caller. The first failure of a kind produces ONE WriteNote
(ok=False); later failures of that kind are quiet; the next success produces a recovery WriteNote
(ok=True). Appended lines that could not be written are kept (bounded) and written before the next
line to the same file, so a disk that fills and is freed again loses no log line; a replacement
queued with `retry=True` (state.json, config.json, an index) is tried again, newest per target,
after the next write that succeeds. Replacements
(checkpoints, state.json, PNGs, indexes) are all-or-nothing: a temporary file in the same folder,
fsync, os.replace, fsync of the folder; a failure leaves the old file and no temporary file behind.

The writes happen on one writer thread fed by a bounded queue, in the order they were queued, so
the training thread never waits on the disk. When the queue is full (a disk far slower than
training) a write is dropped and reported as a failure of its kind rather than stalling training.

Files are created with mode 0o666 minus the process umask, like any file the user creates (a
`tempfile.mkstemp` file would be 0600).
"""

from __future__ import annotations

import collections
import errno
import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Union

Content = Union[bytes, str, Callable[[IO[bytes]], None]]
Done = Callable[[bool, Union[BaseException, None]], None]

WRITE_FAILED_PREFIX = "disk:"  # WarningRaised.kind of a write failure: "disk:metrics", "disk:checkpoint", ...
WRITE_RECOVERED_PREFIX = "disk_ok:"  # the matching recovery note: "disk_ok:metrics", ...
KINDS = {
    "metrics": "metrics log",
    "samples": "sample grid",
    "checkpoint": "checkpoint",
    "state": "run state (state.json)",
    "quality": "checkpoint quality index",
    "config": "config.json",
    "export": "export",
    "log": "log",
    "tensorboard": "TensorBoard log",
}
_MAX_UNWRITTEN = 4 << 20  # bytes of log lines kept for a retry per file; older ones beyond are dropped
_MAX_QUEUED = 4096
_tmp_counter = itertools.count()


@dataclass(frozen=True)
class WriteNote:
    """A change in a kind of write: it started failing (ok=False) or works again (ok=True)."""

    kind: str
    ok: bool
    message: str

    @property
    def warning_kind(self) -> str:
        """The WarningRaised.kind to post: disk:KIND or disk_ok:KIND."""
        return (WRITE_RECOVERED_PREFIX if self.ok else WRITE_FAILED_PREFIX) + self.kind


# ---------------------------------------------------------- the one atomic writer
def atomic_write(path: Path, content: Content) -> None:
    """Replace `path` with `content` (bytes, text, or a function writing to a binary file) all-or-nothing.

    Raises whatever the write raised; the old file stays and no temporary file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_tmp_counter)}.tmp")
    fd = _open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def append_text(path: Path, text: str) -> None:
    """Append `text` to `path` (created per the umask); a failed write is cut back off, so a full disk
    leaves no half line."""
    append_bytes(path, text.encode())


def append_bytes(path: Path, data: bytes) -> None:
    """Append `data` whole or not at all (created per the umask): a failed write is cut back off, so a
    file of records (a log, TensorBoard's event file) never holds half a record."""
    fd = _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def _open(path: Path, flags: int) -> int:
    # The one place a run-folder file is opened for writing (tests inject a full disk here). Mode
    # 0o666 less the umask, like any file the user creates.
    return os.open(path, flags, 0o666)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut could otherwise bring back the old name)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe_error(exc: BaseException) -> str:
    """A one-line reason: 'No space left on device' rather than a repr."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    first = text[0][:200] if text else type(exc).__name__
    return f"{type(exc).__name__}: {first}"


# -------------------------------------------------------- the write-error policy
class Journal:
    """A writer thread for one run folder with one write-error policy (see the module docstring)."""

    def __init__(self, on_note: Callable[[WriteNote], None], max_queued: int = _MAX_QUEUED) -> None:
        self._on_note = on_note
        self._max_queued = max_queued
        self._jobs: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._failing: dict[str, str] = {}  # kind -> the reason of its first failure
        self._ending = False  # the run's last writes: no "training goes on" in a failure's note
        self._unwritten: dict[Path, str] = {}  # writer thread only
        self._retry: dict[str, _Job] = {}  # writer thread only: what -> the newest failed job
        self._thread = threading.Thread(target=self._work, name="gan-tui-journal", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ API
    def append(self, path: Path, text: str, kind: str = "metrics") -> None:
        """Queue `text` (whole lines) to be appended to `path`."""
        self._put(_Job(kind, KINDS.get(kind, kind), lambda: self._append_now(Path(path), text), None))

    def write(self, path: Path, content: Content, kind: str, what: str = "", done: Done | None = None,
              retry: bool = False) -> None:
        """Queue an all-or-nothing replacement of `path`. `content` must not change after this call
        (pass bytes, or a function over data the caller no longer mutates). `retry`: see call()."""
        self._put(_Job(kind, what or KINDS.get(kind, kind), lambda: atomic_write(Path(path), content), done, retry))

    def call(self, kind: str, fn: Callable[[], Any], what: str = "", done: Done | None = None,
             retry: bool = False) -> None:
        """Queue any other write (a prune, an index update) under the same policy. With `retry`, a
        failed job is run again after the next successful write, unless a newer job with the same
        `what` (its target) succeeded first."""
        self._put(_Job(kind, what or KINDS.get(kind, kind), fn, done, retry))

    def drop_unwritten(self, path: Path, keep: Callable[[str], bool]) -> None:
        """Queue: of the lines of `path` still waiting for room on the disk, keep only those `keep`
        accepts (a rollback drops the ones that describe the steps it threw away)."""

        def drop() -> None:
            lines = self._unwritten.pop(Path(path), "").splitlines(keepends=True)
            kept = "".join(line for line in lines if keep(line))
            if kept:
                self._unwritten[Path(path)] = kept

        self._put(_Job("", "", drop, None))  # kind "": it writes nothing, so it says nothing of the disk

    def failed(self, kind: str, exc: BaseException, what: str = "") -> None:
        """Report a write that failed before it reached the queue (e.g. serializing a checkpoint)."""
        self._outcome(_Job(kind, what or KINDS.get(kind, kind), lambda: None, None), exc)

    def ending(self) -> None:
        """The run is ending: a failure from now on is noted without the promise that training goes on
        and tries again (the run's last lines say whether a checkpoint is on disk)."""
        with self._cond:
            self._ending = True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write queued so far is done (written or failed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Write what is queued (with a last try of unwritten log lines), then end the thread."""
        with self._cond:
            if self._closed:
                return True
            self._jobs.append(_Job("", "", self._retry_unwritten, None))  # kind "": no note at the very end
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def failing(self) -> dict[str, str]:
        """kind -> reason for every kind of write that fails now."""
        with self._cond:
            return dict(self._failing)

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._jobs) + self._busy

    # -------------------------------------------------------------- helpers
    def _put(self, job: _Job) -> None:
        with self._cond:
            if self._closed:
                dropped = "the run's writer is closed"
            elif len(self._jobs) >= self._max_queued:
                dropped = f"the disk is too slow: {len(self._jobs)} writes are waiting"
            else:
                self._jobs.append(job)
                self._cond.notify_all()
                return
        self._outcome(job, OSError(errno.EBUSY, dropped))

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._closed)
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                self._busy = True
            ok = self._run(job)
            if ok and self._retry:  # the disk has room again: the writes that failed get their turn
                for key in list(self._retry):
                    again = self._retry.pop(key, None)
                    if again is not None and not self._run(again):
                        break
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _run(self, job: _Job) -> bool:
        error: BaseException | None = None
        try:
            job.fn()
        except Exception as exc:  # noqa: BLE001 - the policy: any failure to write is reported, never raised
            error = exc
        if job.retry:
            if error is None:
                self._retry.pop(job.what, None)
            else:
                self._retry[job.what] = job
        self._outcome(job, error)
        return error is None

    def _outcome(self, job: _Job, error: BaseException | None) -> None:
        note = None
        with self._cond:
            if not job.kind:
                pass
            elif error is not None and job.kind not in self._failing:
                self._failing[job.kind] = describe_error(error)
                goes_on = "" if self._ending else "; training goes on and it is tried again at the next write"
                note = WriteNote(job.kind, False, f"{job.what} NOT saved: {describe_error(error)}{goes_on}")
            elif error is None and job.kind in self._failing:
                del self._failing[job.kind]
                note = WriteNote(job.kind, True, f"{KINDS.get(job.kind, job.kind)} saved again")
        for callback in (lambda: note and self._on_note(note), lambda: job.done and job.done(error is None, error)):
            try:
                callback()
            except Exception:  # noqa: BLE001 - a broken listener must not end the writer thread
                pass

    def _append_now(self, path: Path, text: str) -> None:
        # Lines that failed before go first, so the file keeps its order once the disk has room again.
        pending = self._unwritten.pop(path, "") + text
        try:
            append_text(path, pending)
        except Exception:
            if len(pending) > _MAX_UNWRITTEN:
                cut = pending.find("\n", len(pending) - _MAX_UNWRITTEN)
                pending = pending[cut + 1 :] if cut >= 0 else ""
            self._unwritten[path] = pending
            raise

    def _retry_unwritten(self) -> None:
        for path in list(self._unwritten):
            self._append_now(path, "")
        for key in list(self._retry):
            self._retry.pop(key).fn()


@dataclass
class _Job:
    kind: str
    what: str
    fn: Callable[[], Any]
    done: Done | None
    retry: bool = False


__all__ = ["KINDS", "WRITE_FAILED_PREFIX", "WRITE_RECOVERED_PREFIX", "Journal", "WriteNote", "append_text",
           "atomic_write", "describe_error", "fsync_dir"]
