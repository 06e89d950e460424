"""Exports decode: PNG size, GIF frame count, CSV rows, sample PNGs; `gan-tui export` without a dashboard."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from engine.export import ExportError, export_checkpoint_samples, export_csv, export_gif, export_grid
from engine.runs import RunDir, read_grid_png
from tui_gan.cli import main


@pytest.fixture
def finished_run(make_runner):
    runner, _ = make_runner(steps=40, sample_every=10, checkpoint_every=20)
    while runner.tick():
        pass
    return runner.run


def test_grid_png_at_a_scale_has_the_scaled_size_and_the_same_pixels(finished_run):
    path = export_grid(finished_run, scale=3)
    with Image.open(path) as im:
        assert im.size == (3 * (4 * 30 + 2), 3 * (4 * 30 + 2))  # 16 samples: 4x4 cells of 28 + 2 padding
        pixels = np.asarray(im.convert("L"))
    newest = read_grid_png(finished_run.sample_grids()[-1][1], 16)
    one = finished_run.exports_dir / "one.png"
    export_grid(finished_run, one, scale=1)
    assert np.array_equal(read_grid_png(one, 16), newest)
    assert np.array_equal(pixels[::3, ::3], np.asarray(Image.open(one).convert("L")))


def test_gif_has_one_frame_per_saved_grid(finished_run):
    path, frames = export_gif(finished_run)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == frames == len(finished_run.sample_grids()) == 5


def test_csv_has_one_row_per_log_record(finished_run):
    path, rows = export_csv(finished_run)
    with path.open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == rows == len(finished_run.read_log())
    metrics = [r for r in table if r["type"] == "metrics"]
    assert metrics and float(metrics[-1]["step"]) == 40 and metrics[-1]["d_loss"]


def test_checkpoint_samples_are_n_single_pngs(finished_run, tmp_path):
    paths = export_checkpoint_samples(finished_run, tmp_path / "digits", count=10, checkpoint="20")
    assert len(paths) == 10
    for path in paths:
        with Image.open(path) as im:
            assert im.size == (28, 28)
    with pytest.raises(ExportError, match="no checkpoint '7'"):
        export_checkpoint_samples(finished_run, count=3, checkpoint="7")


def test_gan_tui_export_works_without_the_dashboard(finished_run, tmp_path, capsys):
    runs_dir = str(finished_run.path.parent)
    assert main(["export", finished_run.path.name, "gif", "--runs-dir", runs_dir, "--out", str(tmp_path / "a.gif")]) == 0
    assert "5 frames" in capsys.readouterr().out
    assert main(["export", str(finished_run.path), "csv"]) == 0
    assert main(["export", str(finished_run.path), "grid", "--scale", "2"]) == 0
    assert main(["export", str(finished_run.path), "samples", "--count", "4", "--out", str(tmp_path / "s")]) == 0
    assert len(list((tmp_path / "s").glob("*.png"))) == 4
    assert main(["export", str(tmp_path / "nope"), "csv"]) == 2  # a run that is not there: the user's mistake
    assert "does not exist" in capsys.readouterr().err


def test_an_empty_run_says_what_is_missing(tmp_path):
    from engine.config import TrainConfig

    run = RunDir.create(tmp_path, "empty", TrainConfig())
    for export in (export_gif, export_grid, export_csv):
        with pytest.raises(ExportError, match="no (sample grids|metrics log)"):
            export(run)


def test_grid_gif_and_csv_exports_never_import_torch(finished_run, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from tui_gan.cli import main\n"
        "for what in ('grid', 'gif', 'csv'):\n"
        "    assert main(['export', sys.argv[1], what, '--out', sys.argv[2] + '/x.' + what]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code, str(finished_run.path), str(tmp_path)], cwd=root, check=True, timeout=120)
    with Image.open(tmp_path / "x.grid") as im:
        assert im.size == (4 * 122, 4 * 122)


def test_gif_frames_are_labelled_with_their_step(finished_run):
    path, frames = export_gif(finished_run, scale=2)
    steps = [step for step, _ in finished_run.sample_grids()]
    bands = []
    with Image.open(path) as im:
        for i in range(frames):
            im.seek(i)
            frame = np.asarray(im.convert("L"))
            band, picture = frame[:14], frame[14:]
            assert band.max() > 0  # the label is drawn, in its own band above the digits
            bands.append(band.tobytes())
            assert picture.shape == (2 * 122, 2 * 122)
    assert len(set(bands)) == len(steps) == frames  # each frame says a different step


def test_csv_columns_are_fixed_whatever_the_first_record(finished_run, tmp_path):
    from engine.export import CSV_COLUMNS

    log = finished_run.metrics_path
    log.write_text('{"type": "warning", "step": 0, "kind": "dataset", "message": "x", "zeta": 1}\n' + log.read_text())
    path, _ = export_csv(finished_run, tmp_path / "m.csv")
    with path.open() as f:
        header = next(csv.reader(f))
    assert tuple(header[: len(CSV_COLUMNS)]) == CSV_COLUMNS and header[len(CSV_COLUMNS):] == ["zeta"]
    assert header[:5] == ["type", "step", "epoch", "d_loss", "g_loss"]


def test_every_png_of_a_run_is_greyscale(finished_run):
    """Issue 25: sample grids and single-sample exports alike are one-channel PNGs (mode L)."""
    singles = export_checkpoint_samples(finished_run, count=4)
    for path in [p for _, p in finished_run.sample_grids()] + singles + [export_grid(finished_run)]:
        with Image.open(path) as im:
            assert im.mode == "L", (path, im.mode)
