"""Pure pieces of the dashboard: the digit renderer, plot shaping, the state reducer."""

import numpy as np
from rich.color import Color

from engine import events as ev
from tui_gan.state import DashboardState
from tui_gan.widgets.loss_plot import downsample, ema, to_log10
from tui_gan.widgets.sample_grid import (
    ASCII_RAMP,
    HALF_BLOCK,
    ascii_char,
    choose_layout,
    digit_lines,
    halfblock_cell,
    quantize,
    shown_order,
)


def test_half_blocks_map_known_pixels_to_known_characters_and_greys():
    assert halfblock_cell(255, 0) == (HALF_BLOCK, 255, 0)
    assert halfblock_cell(0, 255) == (HALF_BLOCK, 0, 255)
    assert halfblock_cell(0, 0) == (" ", 0, 0)
    assert halfblock_cell(255, 255) == (" ", 255, 255)
    assert halfblock_cell(130, 128) == (" ", quantize(128), quantize(128))
    assert quantize(0) == 0 and quantize(255) == 255


def test_ascii_ramp_maps_black_to_space_and_white_to_at():
    assert ascii_char(0, 0) == " " and ascii_char(255, 255) == "@"
    assert ascii_char(0, 255) == ASCII_RAMP[4]  # mean 127.5 of 256 levels over 10 characters


def test_a_digit_becomes_rows_of_styled_segments():
    image = np.zeros((28, 28), dtype=np.uint8)
    image[0, :] = 255  # the top pixel row of the first cell row is white
    rows = digit_lines(image, factor=1, ascii=False)
    assert len(rows) == 14
    first = rows[0][0]
    assert first.text == HALF_BLOCK * 28
    assert first.style.color == Color.from_rgb(255, 255, 255) and first.style.bgcolor == Color.from_rgb(0, 0, 0)
    assert "".join(s.text for s in rows[1]) == " " * 28
    half = digit_lines(image, factor=2, ascii=True)
    assert len(half) == 7 and len(half[0][0].text) == 14


def test_layout_prefers_full_size_only_when_a_4x4_grid_fits():
    assert choose_layout(200, 100, 64)[0] == 1
    factor, cols, rows = choose_layout(46, 20, 64)
    assert (factor, cols, rows) == (2, 3, 2)


def test_a_class_grid_that_does_not_fit_whole_shows_its_classes_in_turn_not_many_of_one():
    # 10 x 10, row r is class r: at 80x24 the dashboard has room for 2 x 2 half-size digits.
    order, cols = shown_order(100, 10, cols=2, rows=2)
    assert [i // 10 for i in order] == [0, 1, 2, 3] and cols == 2
    order, cols = shown_order(100, 10, cols=4, rows=5)  # the next noise starts after class 9
    assert [i // 10 for i in order][:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1] and order[10] == 1
    # All ten rows fit: one class a row, never more columns than the grid has.
    order, cols = shown_order(100, 10, cols=13, rows=10)
    assert cols == 10 and order == list(range(100))
    order, cols = shown_order(100, 10, cols=3, rows=12)
    assert cols == 3 and order[:6] == [0, 1, 2, 10, 11, 12] and len(order) == 30
    # Not a class grid: the first digits, as before.
    assert shown_order(64, 0, cols=3, rows=2) == ([0, 1, 2, 3, 4, 5], 3)
    assert shown_order(64, 10, cols=3, rows=2) == ([0, 1, 2, 3, 4, 5], 3)


def test_ema_downsample_and_log_are_bounded_and_nan_safe():
    values = [1.0, float("nan"), 3.0]
    assert np.allclose(ema(values, 0.5), [1.0, 1.0, 2.0])
    x = np.arange(10_000, dtype=float)
    xs, ys = downsample(x, x * 2, 80)
    assert len(xs) == 80 and np.allclose(ys, xs * 2)
    assert np.isnan(to_log10(np.array([-1.0, 0.0]))).all() and to_log10(np.array([100.0]))[0] == 2.0


def test_reducer_folds_events_and_browses_grids():
    state = DashboardState()
    state.apply(ev.RunStarted("runs/x", {"lr_g": 1, "lr_d": 1, "beta1": 0.5, "beta2": 0.9, "d_steps": 1, "label_smoothing": 0},
                              "cpu", "CPU", "d", "", 0, 100, False))
    for step in (10, 20):
        state.apply(ev.MetricsLogged(step, 0.1, 1.0, 2.0, 0.6, 0.4, 1, 1, 1e-3, 1e-3, 500.0, step / 10))
        state.apply(ev.SamplesGenerated(step, np.full((4, 28, 28), step, np.uint8), True, ""))
    state.apply(ev.MetricsLogged(10, 0.1, 9.0, 9.0, 0.6, 0.4, 1, 1, 1e-3, 1e-3, 500.0, 1.0))  # replay: ignored
    assert state.history.step == [10, 20] and state.d_probs == (0.6, 0.4)
    assert state.eta_s == (100 - 20) * 2.0 / 20
    assert state.shown_grid().step == 20
    state.browse(-1)
    assert state.shown_grid().step == 10
    state.browse(+1)
    assert state.view_index is None and state.shown_grid().step == 20
    state.load_history([{"type": "metrics", "step": 5, "d_loss": 1, "g_loss": 1, "d_real": 0.5, "d_fake": 0.5},
                        {"type": "hparams", "step": 5}], [(0, "runs/x/samples/step_00000000.png")])
    assert state.history.step == [5, 10, 20] and state.markers == [5] and state.grids[0].step == 0


def test_paths_break_only_at_slashes_and_status_parts_never_cut():
    from tui_gan.paths import wrap_path
    from tui_gan.widgets.status import status_text

    path = "runs/20261122-120000-synthetic-dcgan-small/exports/grid_step_00000400_x4.png"
    lines = wrap_path(path, 46).split("\n")
    assert "".join(lines) == path and all(len(line) <= 46 for line in lines)
    assert all(line.endswith("/") for line in lines[:-1])
    state = DashboardState()
    state.apply(ev.RunStarted("/very/long/folder/" + "x" * 60, {"lr_g": 1, "lr_d": 1, "beta1": 0.5, "beta2": 0.9,
                              "d_steps": 1, "label_smoothing": 0}, "cpu", "CPU", "d", "", 0, 100, False))
    state.apply(ev.StateChanged(ev.RunState.PAUSED, 0))
    text = status_text(state, width=80).plain
    assert "x" * 60 in text and "/very/long" not in text  # the folder's name whole, its path dropped
    assert "img/s" not in text  # paused: no stale rate
    from tui_gan.paths import wrap_paths_in

    message = f"could not read {path}: permission denied"
    wrapped = wrap_paths_in(message)
    assert wrapped.replace("\n", "") == message and "exports/" in wrapped.split("\n")[1]


def test_a_resume_after_a_pause_is_a_note_too():
    state = DashboardState()
    state.apply(ev.RunStarted("runs/x", {"lr_g": 1, "lr_d": 1, "beta1": 0.5, "beta2": 0.9, "d_steps": 1,
                              "label_smoothing": 0}, "cpu", "CPU", "d", "", 0, 100, False))
    state.apply(ev.StateChanged(ev.RunState.RUNNING, 0))
    state.apply(ev.StateChanged(ev.RunState.PAUSED, 40, "paused by the user"))
    state.apply(ev.StateChanged(ev.RunState.RUNNING, 40))
    texts = [text for _, text in state.notes]
    assert any("paused by the user" in t for t in texts) and any("resumed at step 40" in t for t in texts), texts
    assert not any("resumed" in t for t in texts[:-1])  # the start is no resume


def test_the_status_line_says_how_old_its_quality_figures_are():
    from tui_gan.widgets.status import status_text

    state = DashboardState()
    state.apply(ev.RunStarted("runs/x", {"lr_g": 1, "lr_d": 1, "beta1": 0.5, "beta2": 0.9, "d_steps": 1,
                              "label_smoothing": 0}, "cpu", "CPU", "d", "", 0, 10_000, False))
    state.apply(ev.StateChanged(ev.RunState.RUNNING, 0))
    state.apply(ev.QualityMeasured(200, 730.7, 9.34, 1000, (0.1,) * 10, 5, 0.5, 0.8, 0.3))
    state.apply(ev.MetricsLogged(200, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 2e-4, 2e-4, 100.0, 10.0))
    assert "FD 730.7 (78.2x floor)  5/10 classes" in status_text(state, width=80).plain  # measured at this step
    state.apply(ev.MetricsLogged(1560, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 2e-4, 2e-4, 100.0, 60.0))
    assert "FD 730.7 (78.2x floor) @ 200  5/10 classes" in status_text(state, width=80).plain


def test_the_quality_figures_show_label_agreement_and_the_worst_class_for_conditional_runs():
    from engine import events as ev
    from tui_gan.state import QualityHistory
    from tui_gan.widgets.quality_panel import figures_text

    base = dict(step=400, fd=21.1, fd_floor=8.6, n=1000, class_hist=(0.1,) * 10, classes_covered=10,
                kl_uniform=0.01, confidence=0.9, diversity=0.95)
    conditional = QualityHistory()
    conditional.append(ev.QualityMeasured(**base, label_agreement=0.991,
                                          class_fd=tuple(10.0 + k for k in range(10)), class_fd_floor=(5.0,) * 10))
    assert "labels 99% worst 9:4x" in figures_text(conditional).plain
    unconditional = QualityHistory()
    unconditional.append(ev.QualityMeasured(**base))
    assert "labels" not in figures_text(unconditional).plain
