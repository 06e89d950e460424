"""How the dashboard reaches an engine: one small interface, so tests can swap in a fake.

The dashboard normally talks to a training process of its own over the run's control socket
(`tui_gan.process.socket_link.SocketEngine`). `LocalEngine` runs the engine's Runner in this process instead
(`--in-process`: tests and debugging); leaving such a dashboard stops the run. The app calls `start`
from a thread worker (importing torch takes seconds and must not hold up the first frame) and `send`
from the UI thread; neither ever waits on training.
"""

from __future__ import annotations

from typing import Callable, Protocol

from engine import commands as cmd
from engine import events as ev

Emit = Callable[[ev.Event], None]
Progress = Callable[[str], None]


class EngineLink(Protocol):
    """What the app needs from an engine."""

    def start(self, emit: Emit, progress: Progress) -> None:
        """Begin training; deliver every event to `emit` (from any thread). May block while loading."""

    def send(self, command: cmd.Command) -> None:
        """Queue a command; never blocks."""

    def gpu_memory(self) -> str:
        """GPU memory in use, for the status bar ("" on the CPU)."""

    # Optional, read with getattr by the app (a fake may leave them out):
    #   owns_run: bool   this dashboard started the run, so quitting asks whether to stop it
    #   attached: bool   a viewer opened with `gan-tui attach` (q detaches, X stops)
    #   can_detach: bool the run can be left training when this dashboard quits (LocalEngine: no,
    #                    it has no detach(); its run ends with a checkpoint when the process ends)
    #   detach() -> None leave the run training and let go of it (SocketEngine)


class LocalEngine:
    """The engine in this process, on its own worker thread. It cannot outlive the dashboard."""

    owns_run = True
    attached = False
    can_detach = False
    remote = False

    def __init__(self, config: object, runs_dir: object, run_name: str | None, resume: str | None) -> None:
        self._args = (config, runs_dir, run_name, resume)
        self._runner: object | None = None
        self._early: list[cmd.Command] = []

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

    def send(self, command: cmd.Command) -> None:
        if self._runner is None:
            self._early.append(command)  # pressed before torch finished loading: applied first thing
        else:
            self._runner.submit(command)  # type: ignore[attr-defined]

    def wait(self, timeout: float) -> bool:
        """Wait for the run to end (its final checkpoint written); False on timeout or if never started."""
        runner = self._runner
        return bool(runner is not None and runner.join(timeout))  # type: ignore[attr-defined]

    def gpu_memory(self) -> str:
        trainer = getattr(self._runner, "trainer", None)
        if trainer is None or trainer.device.type != "cuda":
            return ""  # also keeps us away from a torch that is still importing on the worker
        import torch

        return f"{torch.cuda.memory_allocated(trainer.device) / 2**20:,.0f} MiB in use"
