"""Every run folder is also a TensorBoard log dir: the run's events as TensorBoard event files.

    logger = open_tensorboard(cfg, run.path, on_warning)   # None when cfg.tensorboard is off
    logger(event)                                           # for every event the runner emits
    logger.close()                                          # also done by RunFinished and at exit

The summaries are built by torch's own builders (`torch.utils.tensorboard.summary`: scalar, image,
text, hparams) and framed by the `tensorboard` package's RecordWriter, so the files are what
SummaryWriter writes and what TensorBoard's reader (`EventAccumulator`, also the tests' reader)
expects. What SummaryWriter adds on top, a thread that writes its queue and dies at its first error
(with a raw traceback and no way back), is left out: a full disk must cost the event file no more
than metrics.jsonl. So the records are appended the way the journal appends log lines (one open per
batch, a failed write cut back off, so no half record is ever left in the file) and the writes run
under the run's one write-error policy (engine/journal.py's Journal, kind "tensorboard"): the first
failure is one warning (WarningRaised kind `disk:tensorboard`), later ones are quiet, the records
are kept (bounded) and written, in order, into the same file at the next write that succeeds, which
says so once (`disk_ok:tensorboard`). Never the end of the run.

Only the training process writes here (the Runner makes the logger); attached viewers and
`gan-tui export` never do. The training thread only puts events on a queue: a thread of the
logger's own imports tensorboard (lazily, so no screen waits for it), builds the summaries and
encodes the PNGs, and the logger's journal writes them on its writer thread.

Tags follow metrics.jsonl's names, grouped: `loss/d_loss`, `d/d_real`, `grad/grad_norm_g`,
`lr/lr_g`, `speed/images_per_s`, `progress/epoch`, `quality/fd`, `quality/fd_over_floor`,
`quality/class_hist/3`...; images `samples/fixed`; text `config`, `events/hparams`,
`events/alarms`, `events/rollback`, `events/warnings`; and the config as hparams with the last
`quality/fd_over_floor` as its metric.

No step is written twice for a tag: a resumed or rolled-back run at step S starts a new event file
that opens with a purge at S+1 (TensorBoard drops what the older files hold after S, as
metrics.jsonl does), and scalars or images at or before S that the runner posts again are skipped.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import json
import math
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine import events as ev
from engine.journal import Journal, WriteNote, append_bytes

#: metrics.jsonl field -> its TensorBoard group
METRIC_GROUPS = {
    "d_loss": "loss",
    "g_loss": "loss",
    "d_real": "d",
    "d_fake": "d",
    "grad_norm_g": "grad",
    "grad_norm_d": "grad",
    "lr_g": "lr",
    "lr_d": "lr",
    "images_per_s": "speed",
    "epoch": "progress",
    "elapsed_s": "progress",
}
HPARAM_METRIC = "quality/fd_over_floor"
KIND = "tensorboard"  # the Journal kind of these writes: warnings disk:tensorboard / disk_ok:tensorboard
WHAT = "TensorBoard log"
_CLOSE_WAIT_S = 10.0
_MAX_PENDING = 8 << 20  # bytes of records kept for a retry while the disk is full; older ones beyond are dropped
_CLOSE = object()
_file_counter = itertools.count()


def open_tensorboard(cfg: Any, run_dir: Path, on_warning: Callable[[ev.WarningRaised], None]) -> TensorBoardLogger | None:
    """The logger for a run folder, or None when the config turns TensorBoard off."""
    if not getattr(cfg, "tensorboard", True):
        return None
    return TensorBoardLogger(run_dir, on_warning)


class TensorBoardLogger:
    """An event consumer that writes a run's TensorBoard log from threads of its own. Never blocks."""

    def __init__(self, log_dir: Path, on_warning: Callable[[ev.WarningRaised], None] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self._on_warning = on_warning
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._path: Path | None = None  # the event file records go to now (made at its first write)
        self._stamp = 0  # the creation second in the newest file's name
        self._pending: list[tuple[Path, bytes]] = []  # framed records not on disk yet, oldest first
        self._pending_lock = threading.Lock()
        self._write_queued = False
        self._floor = -1  # scalars and images at or before this step are already in the log
        self._last: dict[str, int] = {}  # tag -> last step written
        self._step = 0
        self._closed = False
        self._journal = Journal(on_note=self._note)
        self._thread = threading.Thread(target=self._loop, name="gan-tui-tensorboard", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a daemon thread is not waited for: write what is queued at exit

    def __call__(self, event: ev.Event) -> None:
        """Queue an event (called on the training thread; never blocks, never raises)."""
        if not self._closed:
            self._queue.put(event)

    def close(self, timeout: float = _CLOSE_WAIT_S) -> None:
        """Write what is queued, end the threads (idempotent)."""
        if not self._closed:
            self._closed = True
            self._queue.put(_CLOSE)
        atexit.unregister(self.close)  # a long-lived process (a reused sweep worker) keeps no closed loggers
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def failed(self) -> bool:
        """True while writes fail (the records wait for room; the run goes on)."""
        return KIND in self._journal.failing

    # ---------------------------------------------------------------- thread
    def _loop(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            while True:  # everything queued meanwhile goes out in one write
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is _CLOSE:
                    done = True
                    break
                try:
                    self._encode(item)
                except Exception as exc:  # noqa: BLE001 - a summary that cannot be built is a failed write, not the run's end
                    self._journal.failed(KIND, exc, WHAT)
                if isinstance(item, ev.RunFinished):
                    done = True
                    break
            self._queue_write()
        self._closed = True
        self._journal.close(_CLOSE_WAIT_S)

    def _encode(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self._open(purge_after=event.step if event.resumed else None)
            self._on_start(event)
        elif self._path is None:
            return  # nothing before RunStarted has a place yet
        elif isinstance(event, ev.MetricsLogged):
            for name, group in METRIC_GROUPS.items():
                self._scalar(f"{group}/{name}", getattr(event, name), event.step)
        elif isinstance(event, ev.QualityMeasured):
            for tag, value in quality_scalars(event).items():
                self._scalar(tag, value, event.step)
        elif isinstance(event, ev.SamplesGenerated):
            if event.fixed and self._fresh("samples/fixed", event.step):
                from torch.utils.tensorboard.summary import image

                self._summary(image("samples/fixed", grid_image(event.images), dataformats="HW"), event.step)
        elif isinstance(event, ev.HyperparamsChanged):
            changes = ", ".join(f"{k} {event.old.get(k)} -> {v}" for k, v in event.new.items() if event.old.get(k) != v)
            self._text("events/hparams", f"step {event.step}: {changes}", event.step)
        elif isinstance(event, ev.AlarmRaised):
            self._text("events/alarms", f"step {event.step}: **{event.kind}** raised: {event.message}", event.step)
        elif isinstance(event, ev.AlarmCleared):
            self._text("events/alarms", f"step {event.step}: {event.kind} cleared", event.step)
        elif isinstance(event, ev.RolledBack):
            self._open(purge_after=event.step)
            self._text("events/rollback", f"rolled back from step {event.from_step} to step {event.step} ({event.path})", event.step)
        elif isinstance(event, ev.WarningRaised):
            if not event.kind.endswith(KIND):  # its own failure notes would only wait behind it
                self._text("events/warnings", f"step {event.step}: {event.message}", event.step)
        elif isinstance(event, ev.JudgeReady):
            self._text("events/judge", f"judge {event.accuracy:.1%} on {event.held_out:,} held-out images ({event.source}); "
                       f"FD floor {event.fd_floor:.2f} at n={event.n}", self._step)

    def _open(self, purge_after: int | None) -> None:
        """A new event file; after a resume or rollback to step S, TensorBoard drops the old steps after S."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        if purge_after is not None:
            _wait_for_a_later_second(self.log_dir, self._stamp)
        self._stamp = int(time.time())
        name = f"events.out.tfevents.{self._stamp:010d}.{socket.gethostname()}.{os.getpid()}.{next(_file_counter)}"
        self._path = self.log_dir / name
        self._event(Event(file_version="brain.Event:2"))
        if purge_after is not None:  # what SummaryWriter(purge_step=S+1) writes first
            self._event(Event(step=purge_after + 1, file_version="brain.Event:2"))
            self._event(Event(step=purge_after + 1, session_log=SessionLog(status=SessionLog.START)))
            self._floor = purge_after
            self._last = {tag: min(step, purge_after) for tag, step in self._last.items()}

    def _on_start(self, event: ev.RunStarted) -> None:
        from torch.utils.tensorboard.summary import hparams

        self._step = event.step
        config = event.config
        shown = json.dumps(config, indent=2)
        self._text("config", "    " + shown.replace("\n", "\n    "), event.step)  # indented: markdown code
        for summary in hparams(hparam_values(config), {HPARAM_METRIC: math.nan}):
            self._summary(summary, None)

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if value is None or not self._fresh(tag, step):
            return
        from torch.utils.tensorboard.summary import scalar

        self._summary(scalar(tag, float(value)), step)

    def _text(self, tag: str, text: str, step: int) -> None:
        from torch.utils.tensorboard.summary import text as text_summary

        self._step = max(self._step, step)
        self._summary(text_summary(tag, text), step)

    def _fresh(self, tag: str, step: int) -> bool:
        """True (and remembered) when `tag` has nothing at `step` or later yet."""
        if step <= self._floor or step <= self._last.get(tag, -1):
            return False
        self._last[tag] = step
        self._step = max(self._step, step)
        return True

    def _summary(self, summary: Any, step: int | None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        event = Event(summary=summary)
        if step is not None:
            event.step = int(step)
        self._event(event)

    def _event(self, event: Any) -> None:
        """Frame one event as a TensorBoard record and keep it for the next write."""
        from tensorboard.summary.writer.record_writer import RecordWriter

        if not event.wall_time:
            event.wall_time = time.time()
        framed = _Framed()
        RecordWriter(framed).write(event.SerializeToString())
        assert self._path is not None
        with self._pending_lock:
            self._pending.append((self._path, framed.data))

    # ---------------------------------------------------------------- writes
    def _queue_write(self) -> None:
        with self._pending_lock:
            if self._write_queued or not self._pending:
                return
            self._write_queued = True
        self._journal.call(KIND, self._write_pending, WHAT)

    def _write_pending(self) -> None:
        """On the journal's thread: append every waiting record, in order. A failed append is cut back
        off and its records (and those behind them) wait for the next write."""
        with self._pending_lock:
            records, self._pending = self._pending, []
            self._write_queued = False
        written = 0
        try:
            for path, group in _by_file(records):
                _append(path, b"".join(data for _, data in group))
                written += len(group)
        except BaseException:
            with self._pending_lock:
                self._pending = _bounded(records[written:] + self._pending)
            raise

    def _note(self, note: WriteNote) -> None:
        """The journal's one warning when these writes start failing, and one when they work again."""
        if self._on_warning is None:
            return
        message = f"{WHAT} saved again" if note.ok else note.message
        try:
            self._on_warning(ev.WarningRaised(self._step, message, note.warning_kind))
        except Exception:  # noqa: BLE001 - nothing left to tell
            pass


class _Framed:
    """What RecordWriter writes into: the bytes of one framed record."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _by_file(records: list[tuple[Path, bytes]]) -> list[tuple[Path, list[tuple[Path, bytes]]]]:
    groups: list[tuple[Path, list[tuple[Path, bytes]]]] = []
    for record in records:
        if groups and groups[-1][0] == record[0]:
            groups[-1][1].append(record)
        else:
            groups.append((record[0], [record]))
    return groups


def _bounded(records: list[tuple[Path, bytes]]) -> list[tuple[Path, bytes]]:
    """The newest records that fit in _MAX_PENDING bytes."""
    total, keep = 0, len(records)
    while keep > 0 and total + len(records[keep - 1][1]) <= _MAX_PENDING:
        keep -= 1
        total += len(records[keep][1])
    return records[keep:]


def _append(path: Path, data: bytes) -> None:
    """Append `data` whole or not at all, through the journal's one appender: the event file never
    holds half a record, so later records read on after a full disk."""
    path.parent.mkdir(parents=True, exist_ok=True)  # a log dir of its own, as SummaryWriter makes one
    append_bytes(path, data)


def _wait_for_a_later_second(log_dir: Path, newest: int = 0) -> None:
    """TensorBoard reads a folder's event files in name order, and a name starts with its whole second
    of creation: a purging file made in the same second as an older one could sort before it (the
    counter after the second does not sort as a number). Waiting (on this thread, at most a second,
    only at resume and rollback) keeps the files in the order they were written. `newest`: the second
    of a file of ours that may not be on disk yet."""
    for path in log_dir.glob("events.out.tfevents.*"):
        stamp = path.name.split(".")[3]
        if stamp.isdigit():
            newest = max(newest, int(stamp))
    while time.time() < newest + 1:
        time.sleep(min(1.0, newest + 1 - time.time()))


# --------------------------------------------------------------- pure helpers
def quality_scalars(q: ev.QualityMeasured) -> dict[str, float]:
    """Every number of a quality measurement as `quality/...` tags, FD over its floor included."""
    out: dict[str, float] = {}
    for name, value in dataclasses.asdict(q).items():
        if name == "step":
            continue
        if isinstance(value, (list, tuple)):
            for i, share in enumerate(value):
                out[f"quality/{name}/{i}"] = float(share)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"quality/{name}"] = float(value)
    if q.fd_floor > 0:
        out[HPARAM_METRIC] = q.fd / q.fd_floor
    return out


def hparam_values(config: dict[str, Any]) -> dict[str, Any]:
    """The config as TensorBoard hparams: numbers, strings and booleans as they are, the rest as text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = json.dumps(value)
    return out


def grid_image(images: np.ndarray, padding: int = 2) -> np.ndarray:
    """uint8 (N, H, W) -> one (rows, cols) uint8 grid, laid out as the run's samples/*.png."""
    n, h, w = images.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    out = np.zeros((padding + rows * (h + padding), padding + cols * (w + padding)), dtype=np.uint8)
    for i in range(n):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        out[top : top + h, left : left + w] = images[i]
    return out
