"""Small text helpers shared by the headless progress line, the status bar and `gan-tui ls`."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """4:05, 1:02:03."""
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(step: int, total: int, elapsed_s: float) -> float | None:
    """Seconds left at the run's average pace so far, or None when there is no pace or nothing left."""
    if step <= 0 or elapsed_s <= 0 or total <= step:
        return None
    return (total - step) * elapsed_s / step
