"""The status bar: state, step, epoch, speed, time, device, run folder."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

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
    """Two lines that say where the run stands."""

    def show(self, state: DashboardState, gpu_memory: str = "") -> None:
        """Redraw from the state."""
        self.update(status_text(state, gpu_memory))
        for phase in _PHASE_STYLE:
            self.set_class(state.phase == phase, f"-{phase}")


def status_text(state: DashboardState, gpu_memory: str = "") -> Text:
    """The two status lines as rich Text (pure, for tests)."""
    text = Text()
    text.append(f" {state.phase.upper()} ", style=_PHASE_STYLE.get(state.phase, "bold"))
    if state.phase == "loading":
        text.append(f" {state.loading_message}")
        return text
    total = f"/{state.total_steps:,}" if state.total_steps else ""
    text.append(f" step {state.step:,}{total}", style="bold")
    text.append(f"  epoch {state.epoch:.2f}  {state.images_per_s:,.0f} img/s")
    text.append(f"  {format_duration(state.elapsed_s)} elapsed")
    eta = state.eta_s
    if eta is not None and state.phase == "running":
        text.append(f"  ETA {format_duration(eta)}")
    text.append("\n")
    for alarm in state.alarms.values():
        text.append(f" ⚠ {alarm.kind} ", style="bold white on red")
        text.append(" ")
    q = state.quality.latest
    if q is not None and q.fd_floor > 0:
        text.append(f" FD {q.fd:.1f} ({q.fd / q.fd_floor:.1f}x floor)  {q.classes_covered}/{len(q.class_hist)} classes ")
    device = state.device_name + (f" ({state.device}{', ' + gpu_memory if gpu_memory else ''})" if state.device else "")
    text.append(f" {device}", style="dim")
    text.append(f"  {state.run_dir}", style="dim")
    if state.error is not None:
        text.append(f"  error: {state.error.message}", style="bold red")
    return text
