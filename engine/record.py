"""A run's two outlets as the training thread sees them: events out, and writes into the run folder.

Events go to the run's sink (the dashboard posts a Textual message, a trainer process publishes on
its control socket, tests queue them) and to TensorBoard, which only queues. Every write into the
folder goes through the run's Journal (engine/journal.py) on its writer thread: training never
waits on the disk, and a failed write (a full disk) is one warning per kind, retried. What a write's
outcome means for the run (CheckpointSaved, SamplesExported, a warning) is handed back to the
training thread through `later`, and a paused runner is woken to apply it at once.
"""

from __future__ import annotations

import queue
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from engine import events as ev
from engine.journal import Journal, WriteNote
from engine.runs import log_line, log_record

if TYPE_CHECKING:
    from engine.config import TrainConfig
    from engine.runs import RunDir
    from engine.tensorboard import TensorBoardLogger

Sink = Callable[[ev.Event], None]
Done = Callable[[bool, "BaseException | None"], None]


class QueueSink:
    """A sink that never blocks: events wait in an unbounded queue until a consumer takes them."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()

    def __call__(self, event: ev.Event) -> None:
        self.queue.put(event)

    def drain(self) -> list[ev.Event]:
        """Every event posted so far."""
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def wait_for(self, kind: type, timeout: float = 60.0) -> ev.Event:
        """Block until an event of `kind` arrives (events before it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind.__name__} within {timeout} s")
            event = self.queue.get(timeout=remaining)
            if isinstance(event, kind):
                return event


class RunRecord:
    """Events out and the run folder's writes, for one run; `step` says where the run stands now."""

    def __init__(self, sink: Sink, wake: Callable[[], None], step: Callable[[], int]) -> None:
        self.sink = sink
        self._wake = wake
        self._step = step
        self._written: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()  # journal outcomes
        self.run: RunDir | None = None
        self.journal: Journal | None = None
        self.tensorboard: TensorBoardLogger | None = None

    # ------------------------------------------------------------------ events
    def emit(self, event: ev.Event) -> None:
        """Post an event (TensorBoard only queues it). A broken consumer never stops training."""
        if self.tensorboard is not None:
            self.tensorboard(event)
        try:
            self.sink(event)
        except Exception:  # noqa: BLE001 - a broken consumer must never stop training
            traceback.print_exc()

    def warn(self, message: str, kind: str) -> None:
        """A warning: logged in metrics.jsonl and posted."""
        step = self._step()
        self.append(log_record("warning", step, kind=kind, message=message))
        self.emit(ev.WarningRaised(step, message, kind))

    # ------------------------------------------------------------------ writes
    def open_journal(self, run: RunDir) -> Journal:
        """Start the folder's writer thread; its notes (a kind of write failing or working again) are warnings."""
        self.run = run
        self.journal = Journal(on_note=lambda note: self.later_call(lambda: self._on_note(note)))
        return self.journal

    def append(self, record: dict[str, Any]) -> None:
        """One line into metrics.jsonl, through the writer thread."""
        if self.journal is not None and self.run is not None:
            self.journal.append(self.run.metrics_path, log_line(record), "metrics")

    def write(self, kind: str, action: Callable[[], Any], what: str = "", done: Done | None = None,
              retry: bool = False) -> None:
        """Queue any write into the folder under the journal's policy (see Journal.call)."""
        if self.journal is not None:
            self.journal.call(kind, action, what, done, retry)

    def write_file(self, path: Path, content: bytes, kind: str, what: str = "", done: Done | None = None,
                   retry: bool = False) -> None:
        """Queue an all-or-nothing replacement of a file of the folder (see Journal.write)."""
        if self.journal is not None:
            self.journal.write(path, content, kind, what, done, retry)

    def write_config(self, cfg: TrainConfig) -> None:
        """config.json: the run's current settings, retried after a full disk."""
        run = self.run
        if run is not None:
            self.write("config", lambda: run.write_config(cfg), retry=True)

    def write_state(self, state: ev.RunState) -> None:
        """state.json, through the journal (retried: `ls` must learn where the run stands)."""
        run, step = self.run, self._step()
        if run is not None:
            self.write("state", lambda: run.write_state(state.value, step), retry=True)

    def failed(self, kind: str, exc: BaseException, what: str = "") -> None:
        """A write that failed before it reached the queue (serializing a checkpoint, say)."""
        if self.journal is not None:
            self.journal.failed(kind, exc, what)
            self.take_written()

    # ------------------------------------------------------- back on the thread
    def later(self, done: Done) -> Done:
        """A journal callback (writer thread) turned into work for the training thread."""
        return lambda ok, error: self.later_call(lambda: done(ok, error))

    def later_call(self, action: Callable[[], None]) -> None:
        """Run `action` on the training thread at its next look at the queue (a paused runner wakes)."""
        self._written.put(action)
        self._wake()

    def take_written(self) -> None:
        """Apply every write outcome that came back since the last call."""
        while True:
            try:
                action = self._written.get_nowait()
            except queue.Empty:
                return
            action()

    def settle(self, deadline_s: float) -> None:
        """Wait up to `deadline_s` for the queued writes and apply their outcomes now."""
        deadline = time.monotonic() + deadline_s  # a hung disk (a dead NFS server) must not hold a run's end for long
        for _ in range(4):  # an outcome may queue a follow-up write (a checkpoint's pruning)
            if self.journal is not None:
                self.journal.flush(max(0.0, deadline - time.monotonic()))
            self.take_written()
            if self.journal is None or not self.journal.queued:
                return

    def _on_note(self, note: WriteNote) -> None:
        # Logged through the journal too: a metrics failure keeps the line and writes it once there is room.
        self.warn(note.message, note.warning_kind)
