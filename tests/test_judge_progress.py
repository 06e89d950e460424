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
    load_or_train(small, torch.device("cpu"), tmp_path, epochs=3, progress=lambda k, n: seen.append((k, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    seen.clear()
    judge = load_or_train(small, torch.device("cpu"), tmp_path, epochs=3, progress=lambda k, n: seen.append((k, n)))
    assert judge.source == "cache" and seen == []  # cached: nothing to wait for


def test_judge_progress_travels_the_protocol():
    event = ev.JudgeProgress(2, 6)
    assert decode_event(parse_line(encode_event(event).strip())) == event
