"""Whole-screen snapshots with the scripted engine (update with --snapshot-update after a deliberate change)."""

import pytest

from tests.fakes import FakeEngine
from tests.test_app import options, until
from tui_gan.app import GanApp


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_dashboard_snapshot(snap_compare, tmp_path_factory, size):
    run_dir = "runs/20261122-120000-synthetic-dcgan-small"  # a fixed path keeps the status line stable
    tmp = tmp_path_factory.mktemp("snap")
    fake = FakeEngine(run_dir)
    app = GanApp(options(tmp), engine=fake)

    async def settle(pilot):
        await until(pilot, lambda: app.state.step == fake.steps and app.state.shown_grid() is not None)
        await pilot.pause(1.3)  # past the plot's redraw interval

    assert snap_compare(app, terminal_size=size, run_before=settle)
