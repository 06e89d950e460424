"""`gan-tui --headless`: the training process. It shows the run as one live progress line on stderr
(on a terminal: rewritten in place and never wider than the terminal; in a file or a pipe: a line
every few seconds) and serves dashboards on the run's control socket, so `gan-tui attach` works on
every run (this is also the process `gan-tui` and `gan-tui --detach` start).

Ctrl-C, SIGTERM and SIGHUP (a dropped SSH session) all ask the runner to stop, which saves a
checkpoint first; a second Ctrl-C quits at once. At the end it prints the run folder, the final
figures and the commands to go on from there.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from engine import events as ev
from tui_gan.describe import judge_unfinished_summary, notes
from tui_gan.exits import lost_its_weights, run_exit_status
from tui_gan.formatting import eta_seconds, format_duration, gan_tui_command
from tui_gan.options import Options

_PLAIN_EVERY_S = 5.0  # without a terminal, one metrics line per this many seconds keeps logs readable
# Said on a dashboard, not in this log: pauses come from a viewer that shows them. (The judge's
# progress gets one line as its training starts; the judge-ready line follows.)
_NOT_NOTED = (ev.StateChanged,)


def run_headless(options: Options) -> int:
    """Train until the run ends or a signal stops it. Exit status (tui_gan/exits.py): 0 done or stopped,
    2 failed on a mistake of the user's (a path, a device, a damaged checkpoint), 1 failed otherwise."""
    progress = ProgressLine(sys.stderr)

    def before_training(signum: int, _frame: object) -> None:
        progress.note(f"{signal.Signals(signum).name}: stopped before training started")  # nothing to save yet
        os._exit(0)

    # Before the slow import: a Ctrl-C or a hang-up while torch loads ends quietly, not in a traceback.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, before_training)
    progress.note("importing torch...")  # also what a starting dashboard shows (it reads train.log)
    from engine.serve import ServedRun, finish_process

    served = ServedRun(options.config, options.runs_dir, options.run_name, options.resume, note=progress.note)
    notifier = None
    if options.notify:
        from engine.notify import attach

        notifier = attach(served, options.notify, options.notify_on, note=progress.note, command=gan_tui_command)
    served.stop_on_signals()
    progress.note("loading the dataset and building the models...")
    final = served.run(progress.show)
    progress.summary(final)
    if notifier is not None:
        notifier.close()  # the run's messages had a bounded wait in served.run; say which did not go out
    return finish_process(run_exit_status(final, progress.error))


class ProgressLine:
    """Turns events into a live progress line (a terminal) or periodic lines (a pipe or log file)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        try:
            self.tty = stream.isatty()
        except (OSError, ValueError):
            self.tty = False
        self.total = 0
        self.last_plain = 0.0
        self.line_open = False
        self.run_dir = ""
        self.last_metrics: ev.MetricsLogged | None = None
        self.last_quality: ev.QualityMeasured | None = None
        self.error: ev.ErrorRaised | None = None
        self.judge: ev.JudgeProgress | None = None  # while the judge trains
        self.judge_unfinished = False  # the run ended before its judge was ready (the engine's "judge" warning)

    def show(self, event: ev.Event) -> None:
        """Render one event: metrics on the live line, the rest as notes in tui_gan/describe.py's words."""
        if isinstance(event, ev.MetricsLogged):
            self._metrics(event)
            return
        if isinstance(event, ev.RunStarted):
            self.total = event.total_steps
            self.run_dir = event.run_dir
        elif isinstance(event, ev.QualityMeasured):
            self.last_quality = event
        elif isinstance(event, ev.ErrorRaised):
            self.error = event
        elif isinstance(event, ev.JudgeProgress):
            first, self.judge = self.judge is None, event
            if not first:  # one line as its training starts (or continues), not one per epoch
                return
        elif isinstance(event, ev.JudgeReady):
            self.judge = None
        elif isinstance(event, ev.WarningRaised) and event.kind == "judge":
            self.judge_unfinished = True
        elif isinstance(event, ev.RunFinished):
            self.run_dir = event.run_dir or self.run_dir
        elif isinstance(event, _NOT_NOTED):
            return
        for line in notes(event):
            self.note(line.text)

    def summary(self, final: ev.RunFinished | None) -> None:
        """The closing lines: the run folder, its final figures, and the commands to go on."""
        if not self.run_dir:
            return
        run_dir = self.run_dir
        lines = [f"run folder: {run_dir}"]
        m = self.last_metrics
        if m is not None:
            lines.append(f"  final: step {m.step:,}/{self.total:,}, D loss {m.d_loss:.3f}, G loss {m.g_loss:.3f}, "
                         f"D(x) {m.d_real:.2f}, D(G(z)) {m.d_fake:.2f}, {format_duration(m.elapsed_s)} of training")
        q = self.last_quality
        if q is not None:
            lines.append(f"  quality at step {q.step:,}: Frechet distance {q.fd:.1f} ({q.fd / q.fd_floor:.1f}x its floor "
                         f"{q.fd_floor:.1f}), {q.classes_covered}/{len(q.class_hist)} classes")
        elif self.judge_unfinished and self.judge is not None:
            lines.append(f"  {judge_unfinished_summary(self.judge)}")
        step = final.step if final is not None else (m.step if m else 0)
        if final is not None and lost_its_weights(final):
            lines.append("  no checkpoint of this run is on disk: it cannot be resumed (free space, then train anew)")
        elif not _has_checkpoint(run_dir):  # it failed, say, before its first save
            lines.append("  no checkpoint of this run was saved: it cannot be resumed; start a new run")
        elif final is not None and final.state == ev.RunState.FINISHED:
            lines.append(f"  train further: {gan_tui_command('--resume', run_dir, '--steps', max(2 * step, step + 1))}")
        else:
            lines.append(f"  resume:  {gan_tui_command('--resume', run_dir)}")
        lines.append(f"  export:  {gan_tui_command('export', run_dir, 'gif')}  (or grid, csv, samples)")
        lines.append(f"  list:    {gan_tui_command('ls', '--runs-dir', Path(run_dir).parent)}")
        for line in lines:
            self.note(line)

    def note(self, text: str) -> None:
        """A line of its own, above the progress line."""
        self._write(("\r\x1b[2K" if self.line_open else "") + text + "\n")
        self.line_open = False

    def _metrics(self, m: ev.MetricsLogged) -> None:
        self.last_metrics = m
        if self.tty:
            # One line that never wraps: a wrapped line cannot be rewritten with \r (each update would
            # leave a copy behind). The width is read each time: the terminal may be resized.
            width = shutil.get_terminal_size((80, 24)).columns
            try:
                width = os.get_terminal_size(self.stream.fileno()).columns
            except (OSError, ValueError, AttributeError):
                pass
            self._write("\r\x1b[2K" + format_metrics(m, self.total, width - 1))
            self.line_open = True
        elif time.monotonic() - self.last_plain >= _PLAIN_EVERY_S or m.step >= self.total:
            self.last_plain = time.monotonic()
            self._write(format_metrics(m, self.total) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # the terminal went away (SIGHUP); training and saving go on regardless


def format_metrics(m: ev.MetricsLogged, total: int, width: int | None = None) -> str:
    """`step 1200/10000 [####......] 12% | D 1.104 G 0.981 | 2,140 img/s | ETA 4:05 | ...`, the most
    useful figures first; with `width`, the bar shrinks and the tail is cut so the line fits."""
    frac = min(1.0, m.step / total) if total else 0.0
    left = eta_seconds(m.step, total, m.elapsed_s) or 0.0
    head = f"step {m.step:,}/{total:,}"
    tail = (f"{frac:4.0%} | D {m.d_loss:.3f} G {m.g_loss:.3f} | {m.images_per_s:,.0f} img/s | "
            f"ETA {format_duration(left)} | ep {m.epoch:.2f} | D(x) {m.d_real:.2f} D(G(z)) {m.d_fake:.2f} | "
            f"{format_duration(m.elapsed_s)} elapsed"
            + (f" | {m.amp_skipped} fp16 steps skipped" if m.amp_skipped else ""))  # the scaler finding its scale
    bar_width = 20
    if width is not None and width < len(head) + len(tail) + bar_width + 4:
        bar_width = max(0, min(20, (width - 60) // 2))  # a shorter bar, then the tail is cut
    filled = int(frac * bar_width)
    bar = f" [{'#' * filled}{'.' * (bar_width - filled)}]" if bar_width >= 5 else ""
    line = f"{head}{bar} {tail}"
    return line if width is None else line[: max(0, width)]


def _has_checkpoint(run_dir: str) -> bool:
    from engine.runs import RunDir  # read at the end only

    return bool(RunDir(Path(run_dir)).checkpoints())
