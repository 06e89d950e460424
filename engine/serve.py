"""The one owner of a trainer process's run: the Runner, the control socket its viewers reach, the
signals that stop it with a checkpoint, and a clean end of the process.

Every way of training goes through a ServedRun: `gan-tui --headless` (also the process that plain
`gan-tui` and `gan-tui --detach` start) runs it to the end on the runner's thread with `run`; a
sweep trial drives the same runner step by step (`runner.setup()`, `runner.tick()`) and calls
`close`. The runner takes the folder's lock and owns the journal; this object adds what a process
needs around it:

- the control server (engine/server.py), bound once the run has its folder (RunStarted), so every
  viewer (`gan-tui attach`, the dashboard that launched it) uses one transport;
- SIGINT, SIGTERM and SIGHUP (a dropped SSH session) ask for a Stop that saves a checkpoint first;
  a second Ctrl-C quits at once;
- listeners (a progress line, notifications) that see every event and can never stop training;
- an end without native threads left running at interpreter exit (`finish_process`).
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

from engine import commands as cmd
from engine import events as ev
from engine.notify_sender import THREAD_NAME as NOTIFY_THREAD
from engine.record import QueueSink
from engine.restore import Exploit
from engine.runner import Runner
from engine.server import SOCKET_NAME, ControlServer

Listener = Callable[[ev.Event], None]
_THREAD_JOIN_S = 10.0  # at the very end, how long each side thread may take to finish its work


class ServedRun:
    """A Runner with its control server, signal handling and listeners (see the module docstring)."""

    def __init__(self, cfg: Any, runs_dir: Path | str = "runs", run_name: str | None = None, resume: str | None = None,
                 *, data: Any = None, judge_cache: Path | None = None, exploit: Exploit | None = None,
                 note: Callable[[str], None] | None = None) -> None:
        # Threads of ours already running belong to other runs of this process (a test session, a
        # sweep worker): the end of this run waits for its own, never theirs.
        self._others = set(threading.enumerate())
        self.runner = Runner(cfg, self._publish, runs_dir, run_name, resume, data=data, judge_cache=judge_cache,
                             exploit=exploit)
        self.server: ControlServer | None = None
        self.final: ev.RunFinished | None = None
        self._listeners: list[Listener] = []
        self._note = note or (lambda text: print(text, file=sys.stderr, flush=True))
        self._stopping: list[int] = []

    # ------------------------------------------------------------------ API
    def listen(self, listener: Listener) -> None:
        """Call `listener` with every event, on the training thread (it must not block)."""
        self._listeners.append(listener)

    def submit(self, command: cmd.Command) -> None:
        """Queue a command for the run (safe from a signal handler)."""
        self.runner.submit(command)

    def stop_on_signals(self) -> None:
        """SIGINT, SIGTERM and SIGHUP stop the run with a checkpoint; a second Ctrl-C quits at once."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    @property
    def stop_signal(self) -> str:
        """The signal that stopped the run (`SIGTERM`, ...), or "" when none did (notifications tell the two apart)."""
        return signal.Signals(self._stopping[0]).name if self._stopping else ""

    def run(self, show: Listener) -> ev.RunFinished | None:
        """Train on the runner's thread until the run ends, handing every event to `show` on this
        thread; then close. The last event, or None if the runner's thread died without one."""
        events = QueueSink()
        self.listen(events)
        self.runner.start()
        while self.final is None:
            try:
                event = events.queue.get(timeout=0.5)
            except queue.Empty:
                if self.runner.join(0):
                    break
                continue
            show(event)
            if isinstance(event, ev.RunFinished):
                self.final = event
        for event in events.drain():  # a listener may have queued the last ones just before the end
            show(event)
        self.close()
        return self.final

    def close(self) -> None:
        """Stop serving viewers and wait for the run's side threads (the runner has ended)."""
        self.runner.join(_THREAD_JOIN_S)
        if self.server is not None:
            self.server.close()
        for thread in threading.enumerate():
            # The journal, quality and TensorBoard threads end with the run; a slow disk or a judge
            # mid-batch gets a bounded wait (a thread still inside torch at exit aborts the process).
            # The one notification sender may carry this run's last messages whoever started it.
            ours = thread not in self._others or thread.name == NOTIFY_THREAD
            if ours and thread is not threading.current_thread() and thread.name.startswith("gan-tui-"):
                thread.join(_THREAD_JOIN_S)

    # ------------------------------------------------------------- internals
    def _publish(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted) and self.server is None:
            self._serve(Path(event.run_dir))
        if self.server is not None:
            self.server.publish(event)
        if isinstance(event, ev.RunFinished):
            self.final = event
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must never stop training
                traceback.print_exc()

    def _serve(self, run_dir: Path) -> None:
        server = ControlServer(run_dir / SOCKET_NAME, self.runner.submit)
        try:
            server.start()
        except OSError as exc:  # training goes on; only viewers cannot reach it
            self._note(f"no control socket ({exc}); this run cannot be attached to, training goes on")
            return
        self.server = server

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stopping and signum == signal.SIGINT:
            self._note("second Ctrl-C: quitting without waiting for the checkpoint")
            os._exit(130)
        self._stopping.append(signum)
        self._note(f"{signal.Signals(signum).name}: saving a checkpoint and stopping...")
        self.runner.submit(cmd.Stop(save=True))


def finish_process(status: int) -> int:
    """The exit status of a process whose run is over, after flushing stdio. When a side thread still
    runs (a judge mid-batch on a swamped machine), the process ends here without interpreter
    teardown: a thread inside torch at exit aborts it ("terminate called without an active exception")."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if any(t.is_alive() and t is not threading.main_thread() for t in threading.enumerate()):
        os._exit(status)
    return status
