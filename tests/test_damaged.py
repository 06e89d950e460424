"""Damaged files never stop the tools: bad metrics lines anywhere, a damaged state.json, quality index
or config, an unreadable sample PNG, a corrupt newest checkpoint. Each is skipped with a note."""

from __future__ import annotations

import json

import pytest
import torch

from engine import events as ev
from engine.runs import RunDir, RunError, read_config_dict, read_grid_png


def finished_run(make_runner, **changes):
    runner, sink = make_runner(**changes)
    while runner.tick():
        pass
    return runner, sink


BAD_LINES = [
    b"garbage",
    b"\xff\xfe not utf-8",
    b"[1, 2]",
    b'{"step": "ten", "type": "metrics"}',
    b'{"step": ' + b"9" * 5000 + b"}",
    b"[" * 50_000,
    b'{"type": "metrics", "step": 7, "d_lo',
]


def test_bad_metrics_lines_anywhere_are_skipped_and_counted(make_runner):
    runner, _ = finished_run(make_runner, steps=20)
    lines = runner.run.metrics_path.read_bytes().splitlines()
    damaged = [lines[0], *BAD_LINES[:4], *lines[1:4], *BAD_LINES[4:], *lines[4:]]
    runner.run.metrics_path.write_bytes(b"\n".join(damaged) + b"\n")
    records, bad = runner.run.read_log_counted()
    assert bad == len(BAD_LINES) and len(records) == len(lines)
    assert runner.run.read_log() == records


def test_resume_with_a_damaged_log_keeps_good_lines_and_sets_bad_ones_aside(make_runner):
    runner, _ = finished_run(make_runner, steps=20, checkpoint_every=10)
    with runner.run.metrics_path.open("ab") as f:
        f.write(b"\xff\xfe junk\n[[[[\n")
    resumed, sink = make_runner(resume="latest", steps=30, checkpoint_every=10)
    while resumed.tick():
        pass
    records, bad = resumed.run.read_log_counted()
    assert bad == 0 and max(r["step"] for r in records) == 30
    abandoned = (resumed.run.path / "metrics.abandoned.jsonl").read_bytes()
    assert b"junk" in abandoned and b"[[[[" in abandoned  # set aside, not lost


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1]", b"\xff\xfe", b'{"state": 5, "pid": "x", "step": 3}',
                                     b"[" * 50_000])
def test_a_damaged_state_json_reads_as_what_it_still_says(tmp_path, content):
    run = RunDir(tmp_path)
    run.state_path.write_bytes(content)
    state = run.read_state()
    assert isinstance(state, dict) and "pid" not in state and "state" not in state
    assert state.get("step", 3) == 3


def test_a_damaged_quality_index_means_no_best_checkpoint(make_runner):
    runner, _ = finished_run(make_runner, steps=20, checkpoint_every=10)
    for junk in (b"\x00\x01", b"[]", b'{"10": 5, "x": {}, "99999999999999999999999": {"fd": 1}}', b'{"10": {"fd": NaN}}',
                 b'{"10": {"fd": "low"}}', b'{"10": {"fd": true}}'):
        runner.run.quality_index_path.write_bytes(junk)
        assert runner.run.best_checkpoint() is None
        with pytest.raises(RunError, match="quality figure"):
            runner.run.find_checkpoint("best")
    runner.run.quality_index_path.write_bytes(b'{"10": {"fd": 3.0}, "20": {"fd": "x"}}')
    assert runner.run.best_checkpoint() == runner.run.checkpoint_path(10)


def test_an_unreadable_sample_png_is_a_clear_error(make_runner):
    runner, _ = finished_run(make_runner, steps=20)
    _, path = runner.run.sample_grids()[-1]
    for content in (b"", b"\x89PNG\r\n\x1a\n truncated", b"not a png at all"):
        path.write_bytes(content)
        with pytest.raises(RunError, match="unreadable"):
            read_grid_png(path, 16)
    _, small = runner.run.sample_grids()[0]
    with pytest.raises(RunError, match="too small"):
        read_grid_png(small, 64)


def test_a_damaged_config_reads_as_empty_for_listing_tools(tmp_path):
    path = tmp_path / "config.json"
    for content in (b"{", b"[1]", b"\xff"):
        path.write_bytes(content)
        assert read_config_dict(path) == {}


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_says_so(make_runner):
    runner, _ = finished_run(make_runner, steps=30, checkpoint_every=10, keep_checkpoints=5)
    newest = runner.run.checkpoint_path(30)
    newest.write_bytes(newest.read_bytes()[:200])  # truncated, as by a full disk outside gan-tui
    malformed = runner.run.checkpoint_path(20)
    torch.save({"format": 1, "config": {}, "trainer": {}, "hparam_history": []}, malformed)
    resumed, sink = make_runner(resume="latest", steps=40, checkpoint_every=10, keep_checkpoints=5)
    assert resumed.trainer.step == 10
    events = sink.drain()
    notes = [e.message for e in events if isinstance(e, ev.WarningRaised) and e.kind == "resume"]
    assert any(str(newest) in n and "corrupt or truncated" in n and "older checkpoint" in n for n in notes)
    assert any(str(malformed) in n for n in notes)
    assert any("20 steps after the last checkpoint were lost" in n for n in notes)
    assert isinstance(events[0], ev.RunStarted) and events[0].step == 10


def test_resume_when_every_checkpoint_is_damaged_fails_with_one_clear_message(make_runner, tmp_path, synthetic_data):
    from engine.runner import QueueSink, Runner
    from tests.conftest import tiny_config

    runner, _ = finished_run(make_runner, steps=20, checkpoint_every=10)
    for _, path in runner.run.checkpoints():
        path.write_bytes(b"\0" * 64)
    sink = QueueSink()
    Runner(tiny_config(), sink, runs_dir=tmp_path / "runs", resume="latest", data=synthetic_data).run_forever()
    events = sink.drain()
    assert isinstance(events[0], ev.ErrorRaised) and "no intact checkpoint" in events[0].message
    assert events[-1].state == ev.RunState.FAILED
    assert json.loads(runner.run.state_path.read_text())["state"] == "finished"  # what the folder still holds
    assert "no intact checkpoint" in runner.run.error_path.read_text()
