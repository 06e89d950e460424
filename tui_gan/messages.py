"""Messages that reach the dashboard from other threads: engine events, start-up progress, history.

Posted to the App (from the engine's thread or an I/O worker); the App folds them into the
`DashboardState`, and the dashboard screen redraws from that state on its timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from engine import events as ev


@dataclass
class EngineEvent(Message):
    """An engine event, posted from the training thread (or the socket reader)."""

    event: ev.Event


@dataclass
class LoadingProgress(Message):
    """Start-up progress before the engine has a run."""

    text: str


@dataclass
class HistoryLoaded(Message):
    """A resumed or attached run's earlier metrics and sample grids, read off the UI thread."""

    records: list[dict[str, Any]]
    grids: list[tuple[int, str]]
