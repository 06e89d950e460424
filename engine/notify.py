"""Notifications: what a run says on a phone or a team chat, and when. Every message text is here.

    notifier = attach(served, urls, on, note=progress.note)   # a trainer process (`--headless`)
    trial_settings()                                          # the sweep driver: what its trials send, and where
    attach_trial(served, settings, sweep="lr-pbt")            # a sweep trial
    notify_sweep_end(spec, status)                            # the sweep driver, once the sweep is over

What is sent, by category (`--notify-on`; the default is finished, failed, alarms):
- finished: the run reached its length, or a viewer stopped it: step, training time, the last quality
  (Frechet distance over its floor, classes), the run folder and the commands to go on or export;
- failed: the run failed, or a signal stopped it: the message and the newest checkpoint;
- alarms: a health alarm (engine/health.py: non-finite values, which pause the run; mode collapse; D
  winning outright; exploding gradients) or a rollback; a kind at most once in ten minutes;
- changes: live hyperparameters changed (a dashboard, PBT, a resume): at most one message a minute.

A Notifier listens to one ServedRun (engine/serve.py) on the training thread and only ever queues:
the process's one sender thread delivers (engine/notify_sender.py). When a URL stops taking
messages, the run's log gets one note (a warning, through the runner on its own thread), and one
more when it takes them again; never one per try. URLs never appear here in full (engine/notify_targets.py).
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from engine import events as ev
from engine.notify_sender import Outgoing, hurry, post, wait_idle
from engine.notify_targets import (Delivery, Target, env_urls, environment_on, environment_targets,
                                   read_targets, readable_targets)

if TYPE_CHECKING:
    from engine.serve import ServedRun
    from engine.sweep.spec import SweepSpec, SweepStatus

Command = Callable[..., str]
CHANGES_EVERY_S = 60.0  # hyperparameter changes: at most one message a minute per run
ALARM_QUIET_S = 600.0  # the same alarm kind again: at most once in ten minutes per run
SWEEP_END_WAIT_S = 30.0  # the sweep driver waits this long for its last message before it exits


class Notifier:
    """A listener (`served.listen(notifier)`) that turns one run's events into messages; never blocks."""

    def __init__(self, served: ServedRun, targets: Iterable[Target], on: Iterable[str], *,
                 note: Callable[[str], None] | None = None, command: Command | None = None, sweep: str = "") -> None:
        runner = served.runner
        self.targets = tuple(targets)
        self.on = frozenset(on)
        self._served, self._runner = served, runner
        self._note = note or (lambda text: print(f"gan-tui: {text}", file=sys.stderr, flush=True))
        self._command = command or _plain_command
        self._sweep = sweep
        self._host = socket.gethostname()
        self.name = runner.run_name or (Path(runner.resume_spec).name if runner.resume_spec else "a new run")
        self.run_dir = ""
        self._total = 0
        self._quality: ev.QualityMeasured | None = None
        self._error = self._traceback = ""
        self._rollback: ev.RolledBack | None = None  # sent with the learning rates it leaves in force
        self._alarms: dict[str, tuple[float, int]] = {}  # kind -> (when last sent, times raised since)
        self._lock = threading.Lock()  # what the sender thread and the training thread share
        self._changes: list[ev.HyperparamsChanged] = []
        self._summary: Outgoing | None = None
        self._changes_sent_at = -math.inf
        self._notes: list[str] = []
        self._ended = False
        self._failing: set[Target] = set()
        self._posted: list[Outgoing] = []

    # ------------------------------------------------------------------ API
    def __call__(self, event: ev.Event) -> None:
        """One event of the run, on the training thread."""
        if self._rollback is not None and not isinstance(event, ev.HyperparamsChanged):
            self._rolled_back(self._rollback)  # after the changes it made (a scaled learning rate, say)
        if isinstance(event, ev.QualityMeasured):
            self._quality = event
        elif isinstance(event, ev.RunStarted):
            self.run_dir, self._total = os.path.abspath(event.run_dir), event.total_steps
            self.name = Path(event.run_dir).name
        elif isinstance(event, ev.ErrorRaised):
            self._error, self._traceback = event.message, event.traceback_path
        elif isinstance(event, ev.AlarmRaised) and "alarms" in self.on:
            self._alarm(event)
        elif isinstance(event, ev.RolledBack):
            self._quality = None  # measured on weights that are gone
            self._rollback = event if "alarms" in self.on else None
        elif isinstance(event, ev.HyperparamsChanged) and "changes" in self.on:
            self._changed(event)
        elif isinstance(event, ev.RunFinished):
            self._finished(event)

    @property
    def label(self) -> str:
        """The run's name in messages: `r1`, or `SWEEP/trial-003` for a sweep trial."""
        return f"{self._sweep}/{self.name}" if self._sweep else self.name

    def close(self) -> None:
        """For a process about to end: say which messages are still on their way (not waited for)."""
        for item in self._posted:
            if not item.finished:
                self._note(f"the notification \"{item.title}\" had not gone out when the process ended")

    # ------------------------------------------------------------- the events
    def _alarm(self, event: ev.AlarmRaised) -> None:
        now = time.monotonic()
        sent_at, unsent = self._alarms.get(event.kind, (-math.inf, 0))
        if now - sent_at < ALARM_QUIET_S:
            self._alarms[event.kind] = (sent_at, unsent + 1)  # told in the next message of this kind
            return
        self._alarms[event.kind] = (now, 0)
        self._send(f"{self.label}: alarm {event.kind}", "warning",
                   alarm_text(self._facts(event.step), event.kind, event.message, unsent))

    def _rolled_back(self, event: ev.RolledBack) -> None:
        self._rollback = None
        cfg = self._runner.cfg
        self._send(f"{self.label} rolled back to step {event.step:,}", "warning", rollback_text(
            self._facts(event.step), event.from_step, Path(event.path).name, cfg.lr_g, cfg.lr_d))

    def _changed(self, event: ev.HyperparamsChanged) -> None:
        with self._lock:
            self._changes.append(event)
            if self._summary is not None and not self._summary.taken:
                return  # it joins the summary on its way
            due = max(time.monotonic(), self._changes_sent_at + CHANGES_EVERY_S)
            self._summary = Outgoing(f"{self.label}: hyperparameters changed", self._sum_up_changes, "info",
                                     self.targets, due, self._delivered)
            summary = self._summary
        self._posted.append(summary)
        post(summary)

    def _sum_up_changes(self) -> str | None:
        """On the sender thread, when the summary goes out: every change since the last one."""
        with self._lock:
            changes, self._changes = self._changes, []
            self._changes_sent_at = time.monotonic()
        return changes_text(self._facts(changes[-1].step), changes) if changes else None

    def _finished(self, event: ev.RunFinished) -> None:
        with self._lock:
            summary, self._ended = self._summary, True
            notes, self._notes = self._notes, []
        for text in notes:  # the run's log is closed: what it did not take goes to the process's output
            self._note(text)
        if summary is not None:
            hurry(summary)  # the changes before the end go out before it
        if event.run_dir:  # a resume that failed before it started still knows its folder
            self.run_dir, self.name = os.path.abspath(event.run_dir), Path(event.run_dir).name
        facts = self._facts(event.step)
        signal_name = getattr(self._served, "stop_signal", "")
        if event.state == ev.RunState.FINISHED and "finished" in self.on:
            self._send(f"{self.label} finished", "success", finished_text(facts, self._runner.train_s, self._quality))
        elif event.state == ev.RunState.FAILED and "failed" in self.on:
            self._send(f"{self.label} failed", "failure", lambda: failed_text(facts, self._error, self._traceback))
        elif event.state == ev.RunState.STOPPED and signal_name and "failed" in self.on:
            self._send(f"{self.label} stopped by {signal_name}", "failure",
                       lambda: signalled_text(facts, signal_name))
        elif event.state == ev.RunState.STOPPED and not signal_name and not self._sweep and "finished" in self.on:
            # A sweep's trials stop for PBT and for the sweep's own stop: the sweep's end message tells those.
            self._send(f"{self.label} stopped", "info", stopped_text(facts, self._runner.train_s, self._quality))

    # ------------------------------------------------------------- delivery
    def _send(self, title: str, kind: str, body: str | Callable[[], str | None]) -> None:
        render = body if callable(body) else (lambda: body)
        item = Outgoing(title, render, kind, self.targets, 0.0, self._delivered)
        self._posted.append(item)
        post(item)

    def _delivered(self, target: Target, delivery: Delivery) -> None:
        """On the sender thread: one note when a URL stops taking messages, one when it takes them again."""
        if not delivery and target not in self._failing:
            self._failing.add(target)
            with self._lock:
                ended = self._ended
            later = ("the run has ended, so nothing more is sent" if ended else
                     "training goes on, later messages are still tried, and a note says when they get through again")
            self._say(f"notifications to {target.masked} are not getting through ({delivery.why}); {later}")
        elif delivery and target in self._failing:
            self._failing.discard(target)
            self._say(f"notifications to {target.masked} get through again")

    def _say(self, text: str) -> None:
        """A note in the run's log, written by the runner on the training thread; once the run is over, on
        the process's output (the trainer's train.log)."""
        with self._lock:
            ended = self._ended
            if not ended:
                self._notes.append(text)
        if ended:
            self._note(text)
        else:
            self._runner.record.later_call(self._log_notes)

    def _log_notes(self) -> None:
        with self._lock:
            notes, self._notes = self._notes, []
        for text in notes:
            self._runner.warn(text, "notify")

    def _facts(self, step: int) -> RunFacts:
        return RunFacts(self.label, self._host, self.run_dir, step, self._total or self._runner.total_steps,
                        self._command)


@dataclass(frozen=True)
class RunFacts:
    """What every message of a run says: its name, the host, the folder, where it stands."""

    label: str
    host: str
    run_dir: str
    step: int
    total: int
    command: Command

    @property
    def where(self) -> str:
        return f"{self.label} on {self.host}"


# ----------------------------------------------------------- the messages
def finished_text(f: RunFacts, train_s: float, quality: ev.QualityMeasured | None) -> str:
    """The run reached its planned length."""
    return "\n".join([f"{f.where} finished at step {f.step:,}/{f.total:,} after {_duration(train_s)} of training.",
                      quality_line(quality), f"Run folder: {f.run_dir}",
                      f"Train further: {f.command('--resume', f.run_dir, '--steps', max(2 * f.step, f.step + 1))}",
                      f"Export: {f.command('export', f.run_dir, 'gif')} (or grid, csv, samples)"])


def stopped_text(f: RunFacts, train_s: float, quality: ev.QualityMeasured | None) -> str:
    """A viewer stopped the run (with a checkpoint)."""
    return "\n".join([f"{f.where} was stopped from a dashboard at step {f.step:,}/{f.total:,} after "
                      f"{_duration(train_s)} of training.", quality_line(quality), f"Run folder: {f.run_dir}",
                      f"Resume: {f.command('--resume', f.run_dir)}"])


def failed_text(f: RunFacts, error: str, traceback_path: str = "") -> str:
    """The run failed (rendered on the sender thread: it reads the run folder)."""
    head = f"{f.where} failed at step {f.step:,}: {error or 'no message'}" if f.run_dir else \
        f"{f.where} failed before training started: {error or 'no message'}"
    return "\n".join([head, *_checkpoint_lines(f), *([f"Traceback: {traceback_path}"] if traceback_path else [])])


def signalled_text(f: RunFacts, signal_name: str) -> str:
    """A signal (SIGTERM, SIGHUP: a dropped SSH session, a batch system) stopped the run, with a checkpoint."""
    return "\n".join([f"{f.where} was stopped by {signal_name} at step {f.step:,}/{f.total:,}.", *_checkpoint_lines(f)])


def alarm_text(f: RunFacts, kind: str, message: str, unsent: int) -> str:
    """A health alarm was raised (non-finite values have paused the run)."""
    again = f" (raised {unsent} more time{'s' if unsent != 1 else ''} since the last message)" if unsent else ""
    lines = [f"{f.where}, alarm {kind} at step {f.step:,}{again}: {message}"]
    if f.run_dir:
        lines.append(f"Attach: {f.command('attach', f.run_dir)}")
    return "\n".join(lines)


def rollback_text(f: RunFacts, from_step: int, checkpoint: str, lr_g: float, lr_d: float) -> str:
    """The run went back to a checkpoint."""
    return "\n".join([f"{f.where} rolled back from step {from_step:,} to step {f.step:,} ({checkpoint}); "
                      f"it goes on with lr_g {lr_g:.3g}, lr_d {lr_d:.3g}.", f"Attach: {f.command('attach', f.run_dir)}"])


def changes_text(f: RunFacts, changes: list[ev.HyperparamsChanged]) -> str:
    """Hyperparameter changes since the last such message, summed up: each value from before the first to
    after the last."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for change in changes:
        for key, value in change.old.items():
            before.setdefault(key, value)
        after.update(change.new)
    moved = [f"{k} {_value(before.get(k))} -> {_value(v)}" for k, v in after.items() if before.get(k) != v]
    steps = f"at step {changes[0].step:,}" if changes[0].step == changes[-1].step else \
        f"from step {changes[0].step:,} to {changes[-1].step:,}"
    count = f"{len(changes)} change{'s' if len(changes) != 1 else ''}"
    lines = [f"{f.where}: {count} of its hyperparameters {steps}: {', '.join(moved) or 'back to where they were'}."]
    if f.run_dir:
        lines.append(f"Attach: {f.command('attach', f.run_dir)}")
    return "\n".join(lines)


def quality_line(q: ev.QualityMeasured | None) -> str:
    """`Quality at step 3,000: Frechet distance 41.2, 4.4x its floor 9.3; 10/10 classes.`"""
    if q is None:
        return "Quality: not measured (--quality-every 0, or no measurement yet)."
    ratio = f", {q.fd / q.fd_floor:.1f}x its floor {q.fd_floor:.1f}" if q.fd_floor > 0 else ""
    return f"Quality at step {q.step:,}: Frechet distance {q.fd:.1f}{ratio}; {q.classes_covered}/{len(q.class_hist)} classes."


def notify_test_text() -> tuple[str, str]:
    """`gan-tui notify-test`: title and body."""
    host = socket.gethostname()
    return ("gan-tui test message", f"A test message from gan-tui on {host}: runs started with this URL in --notify "
            "(or GAN_TUI_NOTIFY) send their messages here.")


def sweep_end_text(spec: SweepSpec, status: SweepStatus, command: Command | None = None) -> str:
    """The sweep is over: how its trials ended and its best trial."""
    from engine.sweep.rows import describe_best

    command = command or _plain_command
    ends: dict[str, int] = {}
    for entry in status.trials.values():
        state = str(entry.get("status", "unknown")).lower()
        ends[state] = ends.get(state, 0) + 1
    tally = ", ".join(f"{n} {state}" for state, n in sorted(ends.items()))
    lines = [f"sweep {spec.name} on {socket.gethostname()} {status.state}: {len(status.trials)} trials ({tally or 'none ran'})."]
    if status.message:
        lines.append(status.message)
    lines += [describe_best(status) + ".", f"Sweep folder: {spec.path}", f"Watch: {command('attach', spec.path)}"]
    return "\n".join(lines)


# --------------------------------------------------------- wiring helpers
def attach(served: ServedRun, urls: Iterable[str], on: Iterable[str], *, note: Callable[[str], None] | None = None,
           command: Command | None = None, sweep: str = "") -> Notifier | None:
    """A Notifier listening to `served`, sending to `urls` (checked already: ConfigError otherwise); None without URLs."""
    urls = tuple(urls)
    if not urls:
        return None
    notifier = Notifier(served, read_targets(urls), on, note=note, command=command, sweep=sweep)
    served.listen(notifier)
    return notifier


def trial_settings() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The sweep driver's URLs and categories (GAN_TUI_NOTIFY, GAN_TUI_NOTIFY_ON), handed to every trial
    through Ray's object store (`tune.with_parameters`). Not through runtime_env: Ray's runtime-env
    agent writes a job's env_vars in full into /tmp/ray/session_*/logs/runtime_env_agent.log on every
    node, readable by every user of it."""
    return tuple(env_urls(os.environ)), tuple(sorted(environment_on()))


def attach_trial(served: ServedRun, settings: tuple[tuple[str, ...], tuple[str, ...]] | None,
                 sweep: str = "") -> Notifier | None:
    """A sweep trial's Notifier for the driver's `trial_settings()`; None when it sends nothing."""
    urls, on = settings or ((), ())
    targets = readable_targets(urls)
    if not targets:
        return None
    notifier = Notifier(served, targets, on, sweep=sweep)
    served.listen(notifier)
    return notifier


def notify_sweep_end(spec: SweepSpec, status: SweepStatus, wait_s: float = SWEEP_END_WAIT_S) -> bool:
    """The sweep driver, once the sweep is over: one message with how it ended and its best trial, to
    the URLs of GAN_TUI_NOTIFY (finished and stopped sweeps count as `finished`, failed ones as
    `failed`). Waits up to `wait_s` for delivery; True when every URL took it (or none was asked for)."""
    targets = environment_targets()
    category = "failed" if status.state == "failed" else "finished"
    if not targets or category not in environment_on():
        return True
    results: list[Delivery] = []

    def done(target: Target, delivery: Delivery) -> None:
        results.append(delivery)
        if not delivery:
            print(f"gan-tui sweep: the notification to {target.masked} was not delivered ({delivery.why})",
                  file=sys.stderr, flush=True)

    body = sweep_end_text(spec, status)
    post(Outgoing(f"sweep {spec.name} {status.state}", lambda: body, "failure" if category == "failed" else "success",
                  tuple(targets), 0.0, done))
    wait_idle(wait_s)
    return len(results) == len(targets) and all(results)


def _checkpoint_lines(f: RunFacts) -> list[str]:
    if not f.run_dir:
        return []
    from engine.runs import RunDir

    newest = RunDir(Path(f.run_dir)).latest_checkpoint()
    if newest is None:
        return [f"No checkpoint yet. Run folder: {f.run_dir}"]
    return [f"Newest checkpoint: {newest}", f"Resume: {f.command('--resume', f.run_dir)}"]


def _plain_command(*args: object) -> str:
    return shlex.join(["gan-tui", *(str(a) for a in args)])


def _duration(seconds: float) -> str:
    h, rest = divmod(int(max(0.0, seconds)), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
