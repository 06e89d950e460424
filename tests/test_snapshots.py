"""Whole-screen snapshots with the scripted engine at 80x24, 120x40 and 200x60, and the modal
screens at the smallest size (update with --snapshot-update after a deliberate change, and look)."""

import pytest

from tests.fakes import FakeEngine
from tests.test_app import options, until
from tests.test_dashboard import OwnedEngine
from tui_gan.app import GanApp

RUN_DIR = "runs/20261122-120000-synthetic-dcgan-small"  # a fixed path keeps the status line stable


def _settled(app, fake) -> bool:
    # The scripted history ends with quality figures: the status line shows the last of them.
    latest = app.state.quality.latest
    return (app.state.step == fake.steps and app.state.shown_grid() is not None
            and latest is not None and latest.step == fake.steps)


def _app(tmp, engine_class=FakeEngine):
    fake = engine_class(RUN_DIR)
    return fake, GanApp(options(tmp), engine=fake)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
def test_dashboard_snapshot(snap_compare, tmp_path_factory, size):
    fake, app = _app(tmp_path_factory.mktemp("snap"))

    async def settle(pilot):
        await until(pilot, lambda: _settled(app, fake))
        await pilot.pause(1.3)  # past the plot's redraw interval

    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("keys", [("v",), ("question_mark",), ("q",), ("m",), ("e",)],
                         ids=["quality", "help", "quit", "notes", "export"])
def test_screens_at_80x24_snapshot(snap_compare, tmp_path_factory, keys):
    fake, app = _app(tmp_path_factory.mktemp("snap"), OwnedEngine)

    async def settle(pilot):
        await until(pilot, lambda: _settled(app, fake))
        await pilot.pause(1.3)
        await pilot.press(*keys)
        await pilot.pause(1.5)  # plots redraw at most once a second: let the new view's first draw land

    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)
