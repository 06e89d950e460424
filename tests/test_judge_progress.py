"""The judge's first training reports its progress (epoch k of n), and the event crosses the socket."""

from __future__ import annotations

import dataclasses

from engine import events as ev
from engine.protocol import decode_event, encode_event, parse_line


def test_training_the_judge_reports_each_epoch(synthetic_data, tmp_path):
    import torch

    from engine.data import ImageData
    from engine.judge import load_or_train

    small = ImageData(synthetic_data.images[:600], synthetic_data.labels[:600],
                      dataclasses.replace(synthetic_data.info, checksum="progress-test", num_images=600))
    seen: list[tuple[int, int]] = []
    load_or_train(small, torch.device("cpu"), tmp_path, epochs=3, progress=lambda k, n, _r: seen.append((k, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    seen.clear()
    judge = load_or_train(small, torch.device("cpu"), tmp_path, epochs=3, progress=lambda k, n, _r: seen.append((k, n)))
    assert judge.source == "cache" and seen == []  # cached: nothing to wait for


def test_a_stopped_judge_training_is_continued_by_the_next_run_and_ends_where_an_unbroken_one_does(synthetic_data,
                                                                                                  tmp_path):
    """Per epoch, the judge's training goes to the cache: a run that ends mid-training loses none of it."""
    import torch

    from engine.data import ImageData
    from engine.judge import JudgeCancelled, load_or_train, partial_progress

    small = ImageData(synthetic_data.images[:600], synthetic_data.labels[:600],
                      dataclasses.replace(synthetic_data.info, checksum="continue-test", num_images=600))
    whole = load_or_train(small, torch.device("cpu"), tmp_path / "whole", epochs=3)
    seen: list[tuple[int, int, int]] = []

    def stop_in_epoch_two() -> bool:
        return bool(seen) and seen[-1][0] == 2

    try:
        load_or_train(small, torch.device("cpu"), tmp_path / "broken", epochs=3, cancelled=stop_in_epoch_two,
                      progress=lambda k, n, r: seen.append((k, n, r)))
        raise AssertionError("not cancelled")
    except JudgeCancelled:
        pass
    assert partial_progress(small, tmp_path / "broken") == (1, 3)  # epoch 1 was done and kept
    seen.clear()
    again = load_or_train(small, torch.device("cpu"), tmp_path / "broken", epochs=3,
                          progress=lambda k, n, r: seen.append((k, n, r)))
    assert seen == [(2, 3, 1), (3, 3, 1)]  # it continued where the first one stopped
    assert partial_progress(small, tmp_path / "broken") is None
    for key, value in whole.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key


def test_judge_progress_travels_the_protocol():
    event = ev.JudgeProgress(2, 6, resumed=1)
    assert decode_event(parse_line(encode_event(event).strip())) == event
