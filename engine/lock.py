"""One owner per run folder: an exclusive advisory lock held by the training process for its lifetime.

    lock = RunLock.acquire(run_dir)      # RunLocked if another live process trains this folder
    ...
    lock.release()                       # or let the process end: the kernel drops the lock

The lock is `flock` on `RUN/.lock`, so it dies with its process (a kill -9 or a crash leaves no stale
lock to clean up). The file also holds the owner's pid, so a refused second trainer, `ls` and
`attach` can name who owns the run. Checking never takes the lock (`owner`), so a viewer or `ls`
cannot disturb a live run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class RunLocked(RuntimeError):
    """Another live process owns this run folder."""

    def __init__(self, run_dir: Path, pid: int | None) -> None:
        self.run_dir = run_dir
        self.pid = pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"run {run_dir} is being trained by {who}; attach to it with: gan-tui attach {run_dir}"
        )


class RunLock:
    """An exclusive lock on one run folder, held until `release` or the end of the process."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = run_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Take the folder's lock at once (never waits); RunLocked names the live owner."""
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)  # per the umask, like every run file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(run_dir, owner(run_dir)) from None
        except OSError:
            os.close(fd)
            raise
        # Written after locking: a reader that sees a pid knows it belongs to the holder.
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)  # a full disk: the lock goes with the descriptor, nothing leaks
            raise
        return cls(run_dir, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the folder up (idempotent)."""
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


def owner(run_dir: Path) -> int | None:
    """The pid of the live process that holds `run_dir`'s lock, or None when no process does."""
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            # A shared probe: it succeeds only when nobody holds the exclusive lock.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` is running (a zombie, killed but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    except (OverflowError, ValueError):
        return False  # not a pid at all (a damaged state.json)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


__all__ = ["LOCK_NAME", "RunLock", "RunLocked", "owner", "pid_alive"]
