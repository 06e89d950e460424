"""The app behind `gan-tui compare`: just the compare screen; leaving it ends the program."""

from __future__ import annotations

from textual.app import App

from tui_gan.compare_data import RunReader
from tui_gan.screens.compare import CompareScreen


class CompareApp(App[int]):
    """Shows one CompareScreen and exits (status 0) when it is dismissed."""

    TITLE = "gan-tui compare"

    def __init__(self, readers: list[RunReader], *, ascii: bool = False) -> None:
        super().__init__()
        self._readers = readers
        self._ascii = ascii

    def on_mount(self) -> None:
        self.push_screen(CompareScreen(self._readers, ascii=self._ascii), callback=lambda _: self.exit(0))
