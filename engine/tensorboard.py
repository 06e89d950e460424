"""Every run folder is also a TensorBoard log dir: the run's events, written by TensorBoard's own writer.

    logger = open_tensorboard(cfg, run.path, on_warning)   # None when cfg.tensorboard is off
    logger(event)                                           # for every event the runner emits
    logger.close()                                          # also done by RunFinished and at exit

The writer is torch's `torch.utils.tensorboard.SummaryWriter` (with the `tensorboard` package):
torch is already the engine's dependency, and the one `tensorboard` package gives the writer's
protobufs, the viewer (`tensorboard --logdir runs`) and the reader the tests check the logs with
(`EventAccumulator`), so the files are written and read by the same well-kept code. tensorboardX
would write the same files but add a second writer library and still need `tensorboard` to view.

Only the training process writes here (the Runner makes the logger); attached viewers and
`gan-tui export` never do. The training thread only puts events on a queue: a thread of the
logger's own imports tensorboard (lazily, so no screen waits for it), builds the summaries and
encodes the PNGs, and SummaryWriter writes the file on its own thread again. A failure to write is
one warning and the end of TensorBoard logging for the run, never the end of the run.

Tags follow metrics.jsonl's names, grouped: `loss/d_loss`, `d/d_real`, `grad/grad_norm_g`,
`lr/lr_g`, `speed/images_per_s`, `progress/epoch`, `quality/fd`, `quality/fd_over_floor`,
`quality/class_hist/3`...; images `samples/fixed`; text `config`, `events/hparams`,
`events/alarms`, `events/rollback`, `events/warnings`; and the config as hparams with the last
`quality/fd_over_floor` as its metric.

No step is written twice for a tag: a resumed or rolled-back run at step S opens a new writer with
`purge_step=S+1` (TensorBoard drops what the old files hold after S, as metrics.jsonl does), and
scalars or images at or before S that the runner posts again are skipped.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine import events as ev

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
_FLUSH_S = 5  # a live run shows up in TensorBoard within seconds, not SummaryWriter's default 2 minutes
_CLOSE_WAIT_S = 10.0
_CLOSE = object()


def open_tensorboard(cfg: Any, run_dir: Path, on_warning: Callable[[ev.WarningRaised], None]) -> TensorBoardLogger | None:
    """The logger for a run folder, or None when the config turns TensorBoard off."""
    if not getattr(cfg, "tensorboard", True):
        return None
    return TensorBoardLogger(run_dir, on_warning)


class TensorBoardLogger:
    """An event consumer that writes a run's TensorBoard log from a thread of its own. Never blocks."""

    def __init__(self, log_dir: Path, on_warning: Callable[[ev.WarningRaised], None] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self._on_warning = on_warning
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: Any = None
        self._floor = -1  # scalars and images at or before this step are already in the log
        self._last: dict[str, int] = {}  # tag -> last step written
        self._step = 0
        self._failed = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="gan-tui-tensorboard", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a daemon thread is not waited for: flush what is queued at exit

    def __call__(self, event: ev.Event) -> None:
        """Queue an event (called on the training thread; never blocks, never raises)."""
        if not self._closed:
            self._queue.put(event)

    def close(self, timeout: float = _CLOSE_WAIT_S) -> None:
        """Write what is queued, close the files and end the thread (idempotent)."""
        if not self._closed:
            self._closed = True
            self._queue.put(_CLOSE)
        atexit.unregister(self.close)  # a long-lived process (a reused sweep worker) keeps no closed loggers
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def failed(self) -> bool:
        """True once a write failed (logging stopped; the run went on)."""
        return self._failed

    # ---------------------------------------------------------------- thread
    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                break
            if self._failed:
                continue
            try:
                self._write(item)
            except Exception as exc:  # noqa: BLE001 - any writer failure is a warning, never the run's end
                self._fail(exc)
            if isinstance(item, ev.RunFinished):
                break
        self._closed = True
        self._close_writer()

    def _write(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self._open(purge_after=event.step if event.resumed else None)
            self._on_start(event)
        elif self._writer is None:
            return  # nothing before RunStarted has a place yet
        elif isinstance(event, ev.MetricsLogged):
            for name, group in METRIC_GROUPS.items():
                self._scalar(f"{group}/{name}", getattr(event, name), event.step)
        elif isinstance(event, ev.QualityMeasured):
            for tag, value in quality_scalars(event).items():
                self._scalar(tag, value, event.step)
        elif isinstance(event, ev.SamplesGenerated):
            if event.fixed and self._fresh("samples/fixed", event.step):
                self._writer.add_image("samples/fixed", grid_image(event.images), event.step, dataformats="HW")
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
            self._text("events/warnings", f"step {event.step}: {event.message}", event.step)
        elif isinstance(event, ev.JudgeReady):
            self._text("events/judge", f"judge {event.accuracy:.1%} on {event.held_out:,} held-out images ({event.source}); "
                       f"FD floor {event.fd_floor:.2f} at n={event.n}", self._step)

    def _open(self, purge_after: int | None) -> None:
        """A new writer; after a resume or rollback to step S, TensorBoard drops the old steps after S."""
        from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard loads only in the trainer

        self._close_writer()
        purge_step = None if purge_after is None else purge_after + 1
        if purge_after is not None:
            _wait_for_a_later_second(self.log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step, max_queue=100, flush_secs=_FLUSH_S)
        if purge_after is not None:
            self._floor = purge_after
            self._last = {tag: min(step, purge_after) for tag, step in self._last.items()}

    def _on_start(self, event: ev.RunStarted) -> None:
        from torch.utils.tensorboard.summary import hparams

        self._step = event.step
        config = event.config
        shown = json.dumps(config, indent=2)
        self._text("config", "    " + shown.replace("\n", "\n    "), event.step)  # indented: markdown code
        exp, start, end = hparams(hparam_values(config), {HPARAM_METRIC: math.nan})
        for summary in (exp, start, end):
            self._writer.file_writer.add_summary(summary)

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if value is None or not self._fresh(tag, step):
            return
        self._writer.add_scalar(tag, float(value), step)

    def _text(self, tag: str, text: str, step: int) -> None:
        self._step = max(self._step, step)
        self._writer.add_text(tag, text, step)

    def _fresh(self, tag: str, step: int) -> bool:
        """True (and remembered) when `tag` has nothing at `step` or later yet."""
        if step <= self._floor or step <= self._last.get(tag, -1):
            return False
        self._last[tag] = step
        self._step = max(self._step, step)
        return True

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001 - see _fail
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if self._failed:
            return
        self._failed = True
        message = f"TensorBoard log in {self.log_dir} stopped: {type(exc).__name__}: {exc} (training goes on)"
        if self._on_warning is not None:
            try:
                self._on_warning(ev.WarningRaised(self._step, message, "tensorboard"))
            except Exception:  # noqa: BLE001 - nothing left to tell
                pass
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already failed; the warning is out
                pass


def _wait_for_a_later_second(log_dir: Path) -> None:
    """TensorBoard reads a folder's event files in name order, and a name starts with its whole second
    of creation: a purging file made in the same second as an older one could sort before it (the
    counter after the second does not sort as a number). Waiting (on this thread, at most a second,
    only at resume and rollback) keeps the files in the order they were written."""
    newest = 0
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
