"""The journal: one atomic writer, one write-error policy, one writer thread."""

from __future__ import annotations

import errno
import os
import threading

import pytest

import engine.journal as journal
from engine.journal import Journal, append_text, atomic_write


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, b"old")

    def broken(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    atomic_write(path, "new text")
    assert path.read_text() == "new text"


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a", b"x")
        append_text(tmp_path / "b", "x\n")
    finally:
        os.umask(old)
    assert {oct(os.stat(tmp_path / n).st_mode & 0o777) for n in "ab"} == {oct(0o644)}


def test_a_failed_append_leaves_no_half_line(tmp_path, monkeypatch):
    path = tmp_path / "log"
    append_text(path, "one\n")
    real_write = os.write
    calls = []

    def short_then_full(fd, data):
        calls.append(1)
        if len(calls) == 1:
            return real_write(fd, data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal.os, "write", short_then_full)
    with pytest.raises(OSError):
        append_text(path, "two two two\n")
    monkeypatch.undo()
    assert path.read_text() == "one\n"


def test_one_note_per_kind_kept_lines_and_a_recovery_note(tmp_path, monkeypatch):
    notes = []
    full = threading.Event()
    real = journal._open

    def open_(path, flags):
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, flags)

    monkeypatch.setattr(journal, "_open", open_)
    j = Journal(notes.append)
    log = tmp_path / "metrics.jsonl"
    j.append(log, "1\n")
    j.flush()
    full.set()
    for i in range(2, 6):
        j.append(log, f"{i}\n")
        j.write(tmp_path / "state.json", f"{i}", "state", retry=True)
    j.flush()
    assert [(n.kind, n.ok) for n in notes] == [("metrics", False), ("state", False)]
    assert "No space left on device" in notes[0].message and notes[0].warning_kind == "disk:metrics"
    assert log.read_text() == "1\n" and j.failing.keys() == {"metrics", "state"}
    full.clear()
    j.append(log, "6\n")
    j.flush()
    assert log.read_text() == "".join(f"{i}\n" for i in range(1, 7))  # nothing lost, in order
    assert (tmp_path / "state.json").read_text() == "5"  # the newest failed replacement, retried
    assert [(n.kind, n.ok) for n in notes[2:]] == [("metrics", True), ("state", True)]
    assert notes[2].warning_kind == "disk_ok:metrics"
    assert j.close()


def test_any_exception_is_a_write_failure_and_the_thread_survives(tmp_path):
    notes, outcomes = [], []
    j = Journal(notes.append)
    j.call("checkpoint", lambda: (_ for _ in ()).throw(RuntimeError("PytorchStreamWriter failed writing file")),
           "checkpoint at step 7", done=lambda ok, err: outcomes.append(ok))
    j.write(tmp_path / "x", b"fine", "samples", done=lambda ok, err: outcomes.append(ok))
    j.flush()
    assert outcomes == [False, True]
    assert notes[0].message.startswith("checkpoint at step 7 NOT saved: RuntimeError: PytorchStreamWriter")
    assert j.close()


def test_a_failure_among_the_runs_last_writes_promises_no_next_write(tmp_path):
    notes = []
    j = Journal(notes.append)
    boom = lambda: (_ for _ in ()).throw(OSError(28, "No space left on device"))  # noqa: E731
    j.call("samples", boom, "sample grid at step 9")
    j.flush()
    j.ending()
    j.call("checkpoint", boom, "checkpoint at step 10")
    j.flush()
    assert notes[0].message.endswith("training goes on and it is tried again at the next write")
    assert notes[1].message == "checkpoint at step 10 NOT saved: No space left on device"
    assert j.close()


def test_a_full_queue_drops_rather_than_blocks(tmp_path):
    notes = []
    gate = threading.Event()
    j = Journal(notes.append, max_queued=3)
    j.call("samples", gate.wait)  # the disk hangs
    for i in range(10):
        j.write(tmp_path / f"{i}", b"x", "samples")  # returns at once every time
    assert [n.kind for n in notes] == ["samples"] and "too slow" in notes[0].message
    gate.set()
    assert j.flush(30)
    j.close()
