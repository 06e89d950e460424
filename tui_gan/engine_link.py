"""How the dashboard reaches an engine: one small interface, so tests can swap in a fake.

`LocalEngine` runs the engine's Runner in this process. The app calls `start` from a thread
worker (importing torch takes seconds and must not hold up the first frame) and `send` from the UI
thread; neither ever waits on training.
"""

from __future__ import annotations

from typing import Callable, Protocol

from engine import events as ev

Emit = Callable[[ev.Event], None]
Progress = Callable[[str], None]


class EngineLink(Protocol):
    """What the app needs from an engine."""

    def start(self, emit: Emit, progress: Progress) -> None:
        """Begin training; deliver every event to `emit` (from any thread). May block while loading."""

    def send(self, command: ev.Command) -> None:
        """Queue a command; never blocks."""

    def gpu_memory(self) -> str:
        """GPU memory in use, for the status bar ("" on the CPU)."""


class LocalEngine:
    """The engine in this process, on its own worker thread."""

    def __init__(self, config: object, runs_dir: object, run_name: str | None, resume: str | None) -> None:
        self._args = (config, runs_dir, run_name, resume)
        self._runner: object | None = None
        self._early: list[ev.Command] = []

    def start(self, emit: Emit, progress: Progress) -> None:
        progress("importing torch...")
        from engine.runner import Runner

        config, runs_dir, run_name, resume = self._args
        progress("loading the dataset and building the models...")
        runner = Runner(config, emit, runs_dir, run_name, resume)  # type: ignore[arg-type]
        for command in self._early:
            runner.submit(command)
        self._runner = runner
        runner.start()

    def send(self, command: ev.Command) -> None:
        if self._runner is None:
            self._early.append(command)  # pressed before torch finished loading: applied first thing
        else:
            self._runner.submit(command)  # type: ignore[attr-defined]

    def gpu_memory(self) -> str:
        trainer = getattr(self._runner, "trainer", None)
        if trainer is None or trainer.device.type != "cuda":
            return ""  # also keeps us away from a torch that is still importing on the worker
        import torch

        return f"{torch.cuda.memory_allocated(trainer.device) / 2**20:,.0f} MiB in use"
