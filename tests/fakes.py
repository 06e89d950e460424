"""A scripted engine for dashboard tests: known events, recorded commands, no torch."""

from __future__ import annotations

import numpy as np

from engine import commands as cmd
from engine import events as ev
from engine.config import TrainConfig


def known_digits(count: int = 64) -> np.ndarray:
    """Deterministic uint8 images: a bright bar whose position depends on the index."""
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    for i in range(count):
        images[i, 4 + i % 20 : 8 + i % 20, 6:22] = 255
        images[i, 6:22, 12 + i % 4 : 15 + i % 4] = 128
    return images


class FakeEngine:
    """Emits a fixed history on start; records every command it is sent."""

    def __init__(self, run_dir: str, steps: int = 400) -> None:
        self.run_dir = run_dir
        self.steps = steps
        self.commands: list[cmd.Command] = []
        self.config = TrainConfig(dataset="synthetic", steps=1000, lr_g=1e-3, lr_d=1e-3)  # the snapshots show these

    def start(self, emit, progress) -> None:
        progress("importing torch...")
        emit(ev.RunStarted(self.run_dir, self.config.to_dict(), "cpu", "CPU", "synthetic (generated, 10,000 images)", "", 0, 1000, False))
        emit(ev.StateChanged(ev.RunState.RUNNING, 0))
        for step in range(20, self.steps + 1, 20):
            x = step / self.steps
            emit(ev.MetricsLogged(step, step * 64 / 10000, 1.4 - 0.4 * x, 0.7 + 0.6 * x, 0.5 + 0.2 * x, 0.5 - 0.2 * x,
                                  1.0, 2.0, 2e-3, 2e-3, 2000.0, step / 30))
        emit(ev.HyperparamsChanged(200, self.config.hyperparams(), {**self.config.hyperparams(), "lr_g": 1e-3}))
        emit(ev.SamplesGenerated(self.steps, known_digits(), True, ""))
        emit(ev.JudgeReady(0.991, 2000, "cache", 0.0, 1000, 8.6))
        for step in range(100, self.steps + 1, 100):
            hist = tuple(0.1 + 0.01 * ((c + step // 100) % 3 - 1) for c in range(10))
            emit(ev.QualityMeasured(step, 8.6 + 5000 / step, 8.6, 1000, hist, 10, 0.01, 0.9, 0.95))

    def send(self, command: cmd.Command) -> None:
        self.commands.append(command)

    def gpu_memory(self) -> str:
        return ""
