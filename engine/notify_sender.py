"""The process's one notification sender: a thread that delivers messages in order of when they are
due, so the training thread only ever queues one (`post` never blocks on the network).

    post(Outgoing("run r1 finished", body=lambda: text, kind="success", targets=targets))
    wait_idle(30.0)        # a short-lived process (the sweep driver at its end) lets it finish

The thread starts with the first message and ends as soon as nothing is queued, so a process holds
no thread of ours between messages and the end of a run finds at most the last messages on their
way. Its name starts with "gan-tui-": engine/serve.py's `close` gives it a bounded wait, and a
process that ends with it still sending does not wait for it (it is a daemon).

A message's body is rendered on this thread just before it is sent: a summary can keep collecting
until then, and reading the run folder (the newest checkpoint) never happens on the training thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from engine.notify_targets import Delivery, Target

THREAD_NAME = "gan-tui-notify"


@dataclass(eq=False)
class Outgoing:
    """One message for some targets; `body` returns its text when it is sent (None: nothing to send)."""

    title: str
    body: Callable[[], str | None]
    kind: str
    targets: tuple[Target, ...]
    due: float = 0.0
    """time.monotonic() before which it is not sent (0: at once)."""
    done: Callable[[Target, Delivery], None] | None = field(default=None, repr=False)
    """Told how each target fared, on the sender's thread (it must not raise or block for long)."""
    taken: bool = False
    """Set when the sender takes it: what joins it from then on goes into a later message."""
    finished: bool = False
    """Set once every target was tried."""


def post(item: Outgoing) -> None:
    """Queue a message; never blocks on the network (safe on the training thread)."""
    _SENDER.post(item)


def hurry(item: Outgoing) -> None:
    """Send a message that waits for its time (a summary) as soon as the sender gets to it."""
    _SENDER.hurry(item)


def wait_idle(timeout: float) -> bool:
    """Wait up to `timeout` seconds until every queued message was tried; True if so."""
    return _SENDER.wait_idle(timeout)


class Sender:
    """A heap of messages by due time and one thread that works through it (see the module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Outgoing]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def post(self, item: Outgoing) -> None:
        with self._cond:
            heapq.heappush(self._heap, (item.due, next(self._order), item))
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=THREAD_NAME, daemon=True)
                self._thread.start()

    def hurry(self, item: Outgoing) -> None:
        with self._cond:
            if item.taken:
                return
            item.due = 0.0
        self.post(item)  # the old entry is skipped once this one is taken

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._thread is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _work(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            try:
                body = item.body()
            except Exception:  # noqa: BLE001 - a message that cannot be written is dropped, the sender goes on
                traceback.print_exc()
                body = None
            for target in item.targets if body is not None else ():
                delivery = target.send(item.title, body, item.kind)
                if item.done is not None:
                    try:
                        item.done(target, delivery)
                    except Exception:  # noqa: BLE001 - a broken callback must not end the sender
                        traceback.print_exc()
            item.finished = True

    def _next(self) -> Outgoing | None:
        """The next message once it is due; None (and the thread ends) when nothing is queued."""
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].taken:
                    heapq.heappop(self._heap)  # sent already through a hurried copy
                if not self._heap:
                    self._thread = None
                    self._cond.notify_all()
                    return None
                due, _, item = self._heap[0]
                wait = due - time.monotonic()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    item.taken = True
                    return item
                self._cond.wait(wait)


_SENDER = Sender()
