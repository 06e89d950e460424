"""D(real) and D(fake) at a glance: the latest values and sparklines of their recent history."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from tui_gan.state import MetricsHistory

SPARK_POINTS = 60


class DProbe(Vertical):
    """Two labelled sparklines."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="probe-row"):
            yield Label("D(x)    --", id="probe-real-label", classes="probe-label")
            yield Sparkline([], id="probe-real")
        with Horizontal(classes="probe-row"):
            yield Label("D(G(z)) --", id="probe-fake-label", classes="probe-label")
            yield Sparkline([], id="probe-fake")

    def show(self, history: MetricsHistory) -> None:
        """Redraw from the latest records."""
        if not history:
            return
        for key, name, values in (("real", "D(x)   ", history.d_real), ("fake", "D(G(z))", history.d_fake)):
            recent = [v for v in values[-SPARK_POINTS:] if v == v]
            self.query_one(f"#probe-{key}-label", Label).update(f"{name} {values[-1]:.3f}")
            self.query_one(f"#probe-{key}", Sparkline).data = recent
