"""`gan-tui --headless`: the same run as the dashboard, shown as a progress line on stderr.

Ctrl-C, SIGTERM and SIGHUP (a dropped SSH session) all ask the runner to stop, which saves a
checkpoint first; a second Ctrl-C quits at once.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from engine import events as ev
from engine.server import SOCKET_NAME, ControlServer
from tui_gan.formatting import eta_seconds, format_duration

if TYPE_CHECKING:
    from tui_gan.cli import Options

_PLAIN_EVERY_S = 5.0  # without a terminal, one metrics line per this many seconds keeps logs readable


def run_headless(options: Options) -> int:
    """Train until the run ends or a signal stops it. Exit status: 0 done or stopped, 1 failed."""
    from engine.runner import QueueSink, Runner

    queue_sink = QueueSink()
    server: list[ControlServer] = []

    def sink(event: ev.Event) -> None:
        if options.serve and not server and isinstance(event, ev.RunStarted):
            server.append(ControlServer(Path(event.run_dir) / SOCKET_NAME, runner.submit))
            server[0].start()
        if server:
            server[0].publish(event)
        queue_sink(event)

    runner = Runner(options.config, sink, options.runs_dir, options.run_name, options.resume)
    progress = ProgressLine(sys.stderr)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        if stopping and signum == signal.SIGINT:
            progress.note("second Ctrl-C: quitting without waiting for the checkpoint")
            os._exit(130)
        stopping.append(signum)
        progress.note(f"{signal.Signals(signum).name}: saving a checkpoint and stopping...")
        runner.submit(ev.Stop(save=True))

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    runner.start()
    final: ev.RunFinished | None = None
    while final is None:
        try:
            event = queue_sink.queue.get(timeout=0.5)
        except queue.Empty:
            if not runner.join(0):
                continue
            break
        progress.show(event)
        if isinstance(event, ev.RunFinished):
            final = event
    runner.join()
    if server:
        server[0].close()
    return 1 if final is None or final.state == ev.RunState.FAILED else 0


class ProgressLine:
    """Turns events into a live progress line (a terminal) or periodic lines (a pipe or log file)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total = 0
        self.last_plain = 0.0
        self.line_open = False

    def show(self, event: ev.Event) -> None:
        """Render one event."""
        if isinstance(event, ev.RunStarted):
            self.total = event.total_steps
            verb = f"resuming at step {event.step}" if event.resumed else "training"
            self.note(f"{verb} on {event.device_name} ({event.device}): {event.dataset}")
            self.note(f"run folder: {event.run_dir}")
        elif isinstance(event, ev.MetricsLogged):
            self._metrics(event)
        elif isinstance(event, ev.CheckpointSaved):
            self.note(f"checkpoint ({event.reason}) at step {event.step}: {event.path}")
        elif isinstance(event, ev.SamplesExported):
            self.note(f"samples exported: {event.path}")
        elif isinstance(event, ev.HyperparamsChanged):
            self.note(f"step {event.step}: hyperparameters {event.old} -> {event.new}")
        elif isinstance(event, ev.JudgeReady):
            self.note(f"quality judge: {event.accuracy:.1%} on {event.held_out:,} held-out images ({event.source}); "
                      f"Frechet floor {event.fd_floor:.2f} at n={event.n}")
        elif isinstance(event, ev.QualityMeasured):
            self.note(f"quality at step {event.step}: FD {event.fd:.1f} (floor {event.fd_floor:.1f}), "
                      f"{event.classes_covered}/{len(event.class_hist)} classes, KL {event.kl_uniform:.3f}, "
                      f"confidence {event.confidence:.2f}, diversity {event.diversity:.2f}")
        elif isinstance(event, ev.AlarmRaised):
            self.note(f"ALARM {event.kind}: {event.message}")
        elif isinstance(event, ev.AlarmCleared):
            self.note(f"step {event.step}: alarm {event.kind} cleared")
        elif isinstance(event, ev.RolledBack):
            self.note(f"rolled back from step {event.from_step} to {event.step} ({event.path})")
        elif isinstance(event, ev.WarningRaised):
            self.note(f"warning: {event.message}")
        elif isinstance(event, ev.ErrorRaised):
            where = f" (traceback in {event.traceback_path})" if event.traceback_path else ""
            self.note(f"error at step {event.step}: {event.message}{where}")
        elif isinstance(event, ev.RunFinished):
            self.note(f"{event.state.value} at step {event.step}; results in {event.run_dir}")

    def note(self, text: str) -> None:
        """A line of its own, above the progress line."""
        self._write(("\r\x1b[2K" if self.line_open else "") + text + "\n")
        self.line_open = False

    def _metrics(self, m: ev.MetricsLogged) -> None:
        line = format_metrics(m, self.total)
        if self.tty:
            self._write("\r\x1b[2K" + line)
            self.line_open = True
        elif time.monotonic() - self.last_plain >= _PLAIN_EVERY_S or m.step >= self.total:
            self.last_plain = time.monotonic()
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # the terminal went away (SIGHUP); training and saving go on regardless


def format_metrics(m: ev.MetricsLogged, total: int, width: int = 20) -> str:
    """`step 1200/10000 [####......] 12% | D 1.104 G 0.981 | D(x) 0.61 D(G(z)) 0.40 | 2,140 img/s | ETA 4:05`."""
    frac = min(1.0, m.step / total) if total else 0.0
    filled = int(frac * width)
    bar = "#" * filled + "." * (width - filled)
    left = eta_seconds(m.step, total, m.elapsed_s) or 0.0
    return (
        f"step {m.step}/{total} [{bar}] {frac:4.0%} ep {m.epoch:.2f} | D {m.d_loss:.3f} G {m.g_loss:.3f} | "
        f"D(x) {m.d_real:.2f} D(G(z)) {m.d_fake:.2f} | {m.images_per_s:,.0f} img/s | "
        f"{format_duration(m.elapsed_s)} elapsed, ETA {format_duration(left)}"
        + (f" | {m.amp_skipped} fp16 steps skipped" if m.amp_skipped else "")  # the scaler finding its scale
    )
