"""One reader of a run folder: `ls`, `compare`, the sweep view and the dashboard's history skip a damaged
metrics line the same way (engine/runs/reader.py's parse_log_line), and none of them stops on one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import TrainConfig
from engine.runs import LogFollower, RunDir, read_log, read_log_head, read_log_tail
from engine.sweep.rows import read_trials
from engine.sweep.spec import SweepStatus
from tests.test_damaged import BAD_LINES
from tui_gan.compare_data import RunReader

GOOD = [
    {"type": "metrics", "step": 10, "d_loss": 1.5, "g_loss": 0.5, "lr_g": 2e-4, "lr_d": 1e-3, "elapsed_s": 1.0},
    {"type": "quality", "step": 10, "fd": 30.0, "fd_floor": 10.0, "classes_covered": 9, "class_hist": [0.1] * 10},
    {"type": "metrics", "step": 20, "d_loss": 1.25, "g_loss": 0.75, "lr_g": 2e-4, "lr_d": 1e-3, "elapsed_s": 2.0},
]
# Latin-1 inside an otherwise good line (json.loads raises UnicodeDecodeError, not JSONDecodeError);
# a float step and a bool step are not whole numbers either.
DAMAGED = [*BAD_LINES, b'{"type": "metrics", "step": 12, "note": "caf\xe9"}', b"\xff garbage",
           b'{"type": "metrics", "step": 15.5}', b'{"type": "metrics", "step": true}']


def damaged_run(folder: Path) -> RunDir:
    """A run whose log holds the good records with every kind of damaged line between them."""
    run = RunDir.create(folder.parent, folder.name, TrainConfig(dataset="synthetic"))
    lines = [json.dumps(r).encode() for r in GOOD]
    run.metrics_path.write_bytes(b"\n".join([*DAMAGED[:5], lines[0], *DAMAGED[5:], *lines[1:]]) + b"\n")
    run.write_state("stopped", 20)
    return run


def test_every_way_of_reading_the_log_skips_the_same_lines(tmp_path):
    run = damaged_run(tmp_path / "r")
    records, bad = read_log(run.metrics_path)
    assert records == GOOD and bad == len(DAMAGED)
    assert run.read_log() == GOOD
    whole = run.metrics_path.stat().st_size  # one damaged line alone is 50 KB, past the default windows
    assert read_log_head(run.metrics_path, whole) == read_log_tail(run.metrics_path, whole) == GOOD
    assert read_log_tail(run.metrics_path) == GOOD[1:]
    assert LogFollower(run.metrics_path).poll().records == GOOD
    assert run.newest_log_records("quality") == [GOOD[1]]


def test_the_follower_waits_for_a_half_line_and_skips_a_non_utf8_one(tmp_path):
    run = damaged_run(tmp_path / "r")
    follower = run.follow_log()
    assert follower.poll().records == GOOD
    with run.metrics_path.open("ab") as f:
        f.write(b'\xff\xfe\n{"type": "metrics", "st')
    update = follower.poll()
    assert update.grew and update.records == []
    with run.metrics_path.open("ab") as f:
        f.write(b'ep": 30}\n')
    assert follower.poll().records == [{"type": "metrics", "step": 30}]


def test_compare_reads_a_damaged_log_without_stopping(tmp_path):
    reader = RunReader(damaged_run(tmp_path / "r"))
    assert reader.poll()
    assert reader.series.step == [10, 20]
    assert reader.series.q_step == [10]


def test_ls_reads_a_damaged_log_without_stopping(tmp_path):
    from tui_gan.cli.ls import list_runs

    damaged_run(tmp_path / "r")
    (row,) = list_runs(tmp_path)
    assert (row["step"], row["d_loss"], row["quality"]) == (20, 1.25, "3.0x 9/10")


def test_the_sweep_view_reads_a_damaged_log_without_stopping(tmp_path):
    damaged_run(tmp_path / "trial-000")
    (row,) = read_trials(tmp_path, SweepStatus())
    assert (row.name, row.state, row.step, row.history) == ("trial-000", "stopped", 20, (3.0,))


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[1]", b"{not json"])
def test_a_damaged_config_reads_as_empty_everywhere(tmp_path, content):
    run = damaged_run(tmp_path / "trial-000")
    run.config_path.write_bytes(content)
    assert run.read_config() == {} and RunReader(run).config == {}
    (row,) = read_trials(tmp_path, SweepStatus())
    assert row.batch_size is None and row.step == 20


def test_resume_reads_the_newest_intact_checkpoint_and_names_the_skipped_ones(make_runner):
    from engine.checkpoint import CheckpointError

    runner, _ = make_runner(steps=30, checkpoint_every=10, keep_checkpoints=5)
    while runner.tick():
        pass
    newest = runner.run.checkpoint_path(30)
    newest.write_bytes(newest.read_bytes()[:200])  # truncated
    found = runner.run.newest_intact_checkpoint()
    assert found.path == runner.run.checkpoint_path(20)
    assert found.payload["trainer"]["step"] == 20 and found.config.steps == 30
    assert len(found.skipped) == 1 and str(newest) in found.skipped[0]
    for _, path in runner.run.checkpoints():
        path.write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        runner.run.newest_intact_checkpoint()
