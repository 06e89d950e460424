"""Every run folder is a TensorBoard log dir: read back with TensorBoard's own reader."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from engine import commands as cmd
from engine import events as ev
from engine.tensorboard import TensorBoardLogger, grid_image, quality_scalars

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_log(run_dir: Path) -> EventAccumulator:
    """Every event file of the folder, as TensorBoard loads it (purges applied)."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def raw_steps(run_dir: Path, tag: str) -> list[int]:
    """The steps of `tag` in the files themselves, file by file, without the reader's purge logic."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("summary") and any(v.tag == tag for v in event.summary.value):
                steps.append(event.step)
    return steps


def run_to(runner, step: int) -> None:
    while runner.trainer.step < step:
        runner.tick()


def finish(runner) -> None:
    runner.submit(cmd.Stop())
    while runner.tick():
        pass
    runner.tensorboard.close()


def test_a_short_run_logs_loss_scalars_images_config_and_hparams(make_runner):
    runner, _ = make_runner(steps=30, log_every=5, sample_every=10, tensorboard=True)
    while runner.tick():
        pass
    runner.tensorboard.close()
    acc = read_log(runner.run.path)
    tags = acc.Tags()
    for tag in ("loss/d_loss", "loss/g_loss", "d/d_real", "d/d_fake", "grad/grad_norm_g", "lr/lr_g", "speed/images_per_s"):
        assert tag in tags["scalars"], tag
    d_loss = acc.Scalars("loss/d_loss")
    assert [s.step for s in d_loss] == [5, 10, 15, 20, 25, 30]
    logged = [r["d_loss"] for r in runner.run.read_log() if r["type"] == "metrics"]
    assert [s.value for s in d_loss] == pytest.approx(logged, rel=1e-6)  # the same numbers as metrics.jsonl
    assert [im.step for im in acc.Images("samples/fixed")] == [0, 10, 20, 30]
    assert acc.Images("samples/fixed")[0].encoded_image_string.startswith(b"\x89PNG")
    assert "config/text_summary" in tags["tensors"]  # the config as text
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams = acc.PluginTagToContent("hparams")  # and as hparams, with FD over its floor as the metric
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr_g"].number_value == pytest.approx(runner.cfg.lr_g)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["quality/fd_over_floor"]


def test_quality_scalars_and_alarms_reach_the_log(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger(ev.RunStarted(str(tmp_path), {"lr_g": 0.001, "g_hidden": [32]}, "cpu", "CPU", "synthetic", "", 0, 100, False))
    for step, fd in ((50, 40.0), (100, 20.0)):
        logger(ev.QualityMeasured(step, fd, 8.0, 100, (0.5, 0.5), 2, 0.0, 0.9, 1.0))
    logger(ev.AlarmRaised(60, "d_wins", "D wins outright"))
    logger(ev.HyperparamsChanged(70, {"lr_g": 0.001}, {"lr_g": 0.0005}))
    logger(ev.RunFinished(100, ev.RunState.FINISHED, str(tmp_path)))
    logger.close()
    acc = read_log(tmp_path)
    assert [(s.step, s.value) for s in acc.Scalars("quality/fd")] == [(50, 40.0), (100, 20.0)]
    assert [s.value for s in acc.Scalars("quality/fd_over_floor")] == [5.0, 2.5]
    for tag in ("quality/fd_floor", "quality/confidence", "quality/diversity", "quality/classes_covered", "quality/class_hist/1"):
        assert tag in acc.Tags()["scalars"], tag
    texts = acc.Tags()["tensors"]
    assert "events/alarms/text_summary" in texts and "events/hparams/text_summary" in texts
    alarm = acc.Tensors("events/alarms/text_summary")[0]
    assert b"d_wins" in alarm.tensor_proto.string_val[0]


def test_after_resume_and_rollback_no_step_appears_twice(make_runner):
    runner, _ = make_runner(steps=10**6, checkpoint_every=20, log_every=5, sample_every=10, tensorboard=True)
    run_to(runner, 30)
    finish(runner)  # stopped at 30 with a checkpoint at 30; the records to 30 stay
    runner, _ = make_runner(resume=str(runner.run.path), steps=10**6, checkpoint_every=20, log_every=5, sample_every=10, tensorboard=True)
    run_to(runner, 47)
    runner.submit(cmd.RollBack("40"))
    runner.tick()
    assert runner.trainer.step in (40, 41)
    run_to(runner, 55)
    finish(runner)
    acc = read_log(runner.run.path)
    for steps in ([s.step for s in acc.Scalars("loss/d_loss")], [im.step for im in acc.Images("samples/fixed")]):
        assert steps == sorted(set(steps))
    d_steps = [s.step for s in acc.Scalars("loss/d_loss")]
    assert d_steps == list(range(5, 60, 5))
    logged = [r["step"] for r in runner.run.read_log() if r["type"] == "metrics"]
    assert d_steps == logged  # TensorBoard and metrics.jsonl agree on every step kept
    # In the files themselves too: each step of a tag is written once, except those a purge drops.
    counts = Counter(raw_steps(runner.run.path, "loss/d_loss"))
    assert {step for step, n in counts.items() if n > 1} <= set(range(45, 50))  # 45: before the rollback, purged
    assert Counter(raw_steps(runner.run.path, "samples/fixed"))[30] == 1  # resume re-posts step 30's grid: skipped
    assert Counter(raw_steps(runner.run.path, "samples/fixed"))[40] == 1  # and the rollback step 40's
    # TensorBoard reads the files in name order: each purging file must sort after the one it purges.
    stamps = [int(p.name.split(".")[3]) for p in sorted(runner.run.path.glob("events.out.tfevents.*"))]
    assert len(stamps) == 3 and stamps == sorted(set(stamps))


def test_no_tensorboard_writes_no_event_files(make_runner):
    runner, _ = make_runner(steps=10, tensorboard=False)
    while runner.tick():
        pass
    assert runner.tensorboard is None
    assert not list(runner.run.path.glob("events.out.tfevents.*"))


def test_cli_flag_turns_it_off():
    from tui_gan.cli import parse_options

    assert parse_options([]).config.tensorboard is True
    assert parse_options(["--no-tensorboard"]).config.tensorboard is False


def test_grid_image_matches_the_sample_png_layout():
    images = np.full((5, 28, 28), 200, dtype=np.uint8)
    grid = grid_image(images)
    assert grid.shape == (2 + 2 * 30, 2 + 3 * 30)
    assert grid[2, 2] == 200 and grid[0, 0] == 0 and grid[32, 62] == 0  # the sixth cell stays empty


def test_quality_scalars_names_every_number():
    q = ev.QualityMeasured(10, 16.0, 8.0, 100, (0.25, 0.75), 2, 0.1, 0.9, 1.0)
    tags = quality_scalars(q)
    assert tags["quality/fd_over_floor"] == 2.0 and tags["quality/class_hist/1"] == 0.75
    assert "quality/step" not in tags


def test_export_only_reads_the_run_and_writes_no_event_file(make_runner):
    from engine import export

    runner, _ = make_runner(steps=20, tensorboard=True)
    while runner.tick():
        pass
    runner.tensorboard.close()
    before = {p.name: p.stat().st_size for p in runner.run.path.glob("events.out.tfevents.*")}
    export.export_csv(runner.run, None)
    export.export_grid(runner.run, None, scale=2, step=None)
    after = {p.name: p.stat().st_size for p in runner.run.path.glob("events.out.tfevents.*")}
    assert len(before) == 1 and after == before
