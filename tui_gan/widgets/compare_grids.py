"""The newest sample grid of each run, side by side, titled in the run's colour."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui_gan.compare_data import RunReader
from tui_gan.widgets.sample_grid import SampleGrid


class CompareGrids(Horizontal):
    """One column per run: `N name @ step` over that run's digits."""

    DEFAULT_CSS = """
    CompareGrids > Vertical { width: 1fr; padding-right: 1; }
    CompareGrids .grid-title { height: 1; }
    """

    def __init__(self, count: int, *, ascii: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self._count = count
        self._ascii = ascii
        self._shown: list[int | None] = [None] * count

    def compose(self) -> ComposeResult:
        for i in range(self._count):
            with Vertical():
                yield Static("", classes="grid-title", id=f"grid-title-{i}")
                yield SampleGrid(ascii=self._ascii, id=f"grid-{i}")

    def show(self, readers: list[RunReader], labels: list[Text]) -> None:
        """Titles always; digits only for the runs whose newest grid changed."""
        for i, (reader, label) in enumerate(zip(readers, labels)):
            where = f"@ {reader.grid_step:,}" if reader.grid_step is not None else "(no grid yet)"
            self.query_one(f"#grid-title-{i}", Static).update(label + Text(f" {where}"))
            if reader.grid_step != self._shown[i]:
                self._shown[i] = reader.grid_step
                self.query_one(f"#grid-{i}", SampleGrid).set_images(reader.grid, int(reader.config.get("num_classes") or 0))
