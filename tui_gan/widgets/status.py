"""The status bar: state, step, epoch, speed, time, alarms, quality, device, run folder; and on a
run that fell back to the synthetic digits, a third line saying why and how to get the real data.

Each line is built from parts in order of importance; a part that does not fit whole is left out
(or swapped for a shorter form, such as the run folder's name for its path), never cut mid-word.
"""

from __future__ import annotations

import os

from rich.text import Text
from textual.widgets import Static

from tui_gan.describe import fallback_line
from tui_gan.formatting import format_duration
from tui_gan.state import DashboardState

_PHASE_STYLE = {
    "loading": "bold black on yellow",
    "starting": "bold black on yellow",
    "running": "bold black on green",
    "paused": "bold black on yellow",
    "finished": "bold black on cyan",
    "stopped": "bold white on blue",
    "failed": "bold white on red",
}


class StatusBar(Static):
    """Two lines that say where the run stands (three on a fallback run)."""

    _shown: tuple[DashboardState, str] | None = None

    def on_resize(self) -> None:
        if self._shown is not None:
            self.show(*self._shown)  # each part is fitted to the width: the first show may precede layout

    def show(self, state: DashboardState, gpu_memory: str = "") -> None:
        """Redraw from the state."""
        self._shown = (state, gpu_memory)
        self.update(status_text(state, gpu_memory, self.content_size.width or 200))
        for phase in _PHASE_STYLE:
            self.set_class(state.phase == phase, f"-{phase}")
        self.set_class(bool(state.dataset_note), "-fallback")

    @property
    def rows(self) -> int:
        """The lines it takes (the dashboard's smallest size depends on it)."""
        return 3 if self.has_class("-fallback") else 2


def status_text(state: DashboardState, gpu_memory: str = "", width: int = 200) -> Text:
    """The status lines as rich Text, each fitted to `width` (pure, for tests): two, and a third on a
    run that trains on the synthetic digits because its dataset was not to be had."""
    first = Text(no_wrap=True, overflow="ellipsis")
    first.append(f" {state.phase.upper()} ", style=_PHASE_STYLE.get(state.phase, "bold"))
    if state.phase == "loading":
        first.append(f" {state.loading_message}")
        return first
    total = f"/{state.total_steps:,}" if state.total_steps else ""
    parts: list[tuple[str, str]] = [(f" step {state.step:,}{total}", "bold"), (f"  epoch {state.epoch:.2f}", "")]
    if state.phase == "running":  # paused or over, the last rate would be stale (the badge says why)
        parts.append((f"  {state.images_per_s:,.0f} img/s", ""))
    parts.append((f"  {format_duration(state.elapsed_s)} elapsed", ""))
    eta = state.eta_s
    if eta is not None and state.phase == "running":
        parts.append((f"  ETA {format_duration(eta)}", ""))
    _fit(first, parts, width)

    second = Text(no_wrap=True, overflow="ellipsis")
    parts = [(f" ⚠ {alarm.kind} ", "bold white on red") for alarm in state.alarms.values()]
    if state.error is not None:
        whole = f"  error: {state.error.message}"
        parts.append((whole if len(whole) <= width // 2 else "  error: see the notes (m)", "bold red"))
    q = state.quality.latest
    if q is not None and q.fd_floor > 0:
        at = f" @ {q.step:,}" if q.step < state.step else ""  # measurements are minutes apart: say how old
        parts.append((f" FD {q.fd:.1f} ({q.fd / q.fd_floor:.1f}x floor){at}  {q.classes_covered}/{len(q.class_hist)} classes ", ""))
    gpu_memory = gpu_memory or state.device_memory
    device = state.device_name + (f" ({state.device}{', ' + gpu_memory if gpu_memory else ''})" if state.device else "")
    if state.judge_status:
        judge = f" {state.judge_status} "
        progress = state.judge_unfinished
        if progress is not None and progress.resumed:  # said when it fits beside the device
            longer = f" {state.judge_status}, continuing from epoch {progress.resumed + 1} "
            used = sum(len(part) for part, _ in parts) + len(device) + 1
            judge = longer if used + len(longer) <= width else judge
        parts.append((judge, "bold"))
    parts.append((f" {device}", "dim"))
    _fit(second, parts, width)
    if state.run_dir:
        used = second.cell_len
        for candidate in (state.run_dir, os.path.basename(state.run_dir.rstrip("/"))):
            if used + 2 + len(candidate) <= width:
                second.append(f"  {candidate}", style="dim")
                break
    first.append("\n")
    if not state.dataset_note:
        return first + second
    third = Text(f" ⚠ {fallback_line(state.dataset_note, width - 3)}", style="bold yellow", no_wrap=True,
                 overflow="ellipsis")
    second.append("\n")
    return first + second + third


def _fit(text: Text, parts: list[tuple[str, str]], width: int) -> None:
    """Append the parts that fit whole, in order (a later, shorter part may still fit)."""
    for part, style in parts:
        if text.cell_len + len(part) <= width:
            text.append(part, style=style)
