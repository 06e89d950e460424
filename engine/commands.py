"""Every command a viewer can send a run, declared once: its record, its wire name, its checks, its handler.

    command = from_wire({"command": "step", "count": 3})   # CommandError for anything off
    to_wire(command)                                        # {"command": "step", "count": 3}
    apply(runner, command)                                  # on the training thread, between steps

Commands are imperatives applied only between steps, in order (engine/runner.py). The wire protocol
(engine/protocol.py), the control server, the runner and every viewer's sender read the one table
`COMMANDS` below, so a new command is a record, a table entry with its checks and handler, and a
test. Everything a handler would refuse is checked here first, so a viewer gets "error" instead of
"ok" for it: a seed torch cannot take, a learning rate of 10**400, an export path outside the run.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Union

from engine.config import SEED_LIMIT, ConfigError, TrainConfig

if TYPE_CHECKING:
    from engine.runner import Runner

ROLLBACK_TARGETS = ("last-good", "latest", "best")


class CommandError(ValueError):
    """A command that is unknown or malformed; the text says what is wrong in one line."""


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class Pause:
    """Stop stepping after the current step; wait for commands."""


@dataclass(frozen=True)
class Resume:
    """Go on training."""


@dataclass(frozen=True)
class Step:
    """While paused: run this many steps, then stay paused."""

    count: int = 1


@dataclass(frozen=True)
class SetHyperparams:
    """Change live hyperparameters; only the fields given change."""

    values: dict[str, float | int] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveCheckpoint:
    """Write a checkpoint now."""


@dataclass(frozen=True)
class ExportSamples:
    """Write the fixed-noise grid as a PNG (into the run folder unless a path is given)."""

    path: str = ""


@dataclass(frozen=True)
class SampleFresh:
    """Post a grid from new random noise (the fixed grid is unchanged); with `digit`, every image is
    that class (conditional runs; else a warning). `count`: images (default: the fixed grid's size)."""

    seed: int | None = None
    digit: int | None = None
    count: int | None = None


@dataclass(frozen=True)
class RollBack:
    """Restore a checkpoint: "last-good" (the newest with finite weights), "best" (lowest Frechet
    distance), or a step number; learning rates are multiplied by lr_scale (1: unchanged)."""

    to: str = "last-good"
    lr_scale: float = 1.0


@dataclass(frozen=True)
class Stop:
    """End the run, saving a checkpoint first unless told not to."""

    save: bool = True


Command = Union[Pause, Resume, Step, SetHyperparams, SaveCheckpoint, ExportSamples, SampleFresh, RollBack, Stop]


# ------------------------------------------------------------------- checks
def _no_check(args: dict[str, Any]) -> None:
    pass


def _check_step(args: dict[str, Any]) -> None:
    if not _whole(args.get("count", 1), 1, 10_000):
        raise CommandError("step count must be a whole number from 1 to 10000")


def _check_hyperparams(args: dict[str, Any]) -> None:
    values = args.get("values")
    if not isinstance(values, dict) or not values:
        raise CommandError("set_hyperparams needs a non-empty 'values' object")
    for name, value in values.items():
        if not _is_number(value):
            raise CommandError(f"{name} must be a number, got {_short(value)}")
    try:
        TrainConfig().with_hyperparams(**values)  # the config's own rules, the same the trainer applies
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:
        raise CommandError(_short(str(exc), 300)) from None


def _check_export(args: dict[str, Any]) -> None:
    from engine.runs import RunError, check_export_name

    path = args.get("path", "")
    if not isinstance(path, str):
        raise CommandError("export path must be a string (a file name inside the run's exports/)")
    try:
        check_export_name(path)
    except RunError as exc:
        raise CommandError(str(exc)) from None


def _check_sample_fresh(args: dict[str, Any]) -> None:
    for key, low, high in (("seed", 0, SEED_LIMIT - 1), ("digit", 0, 9999), ("count", 1, 1024)):
        value = args.get(key)
        if value is not None and not _whole(value, low, high):
            raise CommandError(f"sample_fresh {key} must be a whole number from {low} to {high}")


def _check_roll_back(args: dict[str, Any]) -> None:
    to, scale = args.get("to", "last-good"), args.get("lr_scale", 1.0)
    if not isinstance(to, str) or not (to in ROLLBACK_TARGETS or to.isascii() and to.isdigit() and len(to) <= 18):
        raise CommandError("roll_back 'to' must be last-good, latest, best or a step number")
    if not _is_number(scale) or not 0 < scale <= 1:
        raise CommandError("roll_back lr_scale must be a number above 0 and at most 1")


def _check_stop(args: dict[str, Any]) -> None:
    if not isinstance(args.get("save", True), bool):
        raise CommandError("stop 'save' must be true or false")


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class CommandSpec:
    """One command: its wire name, its record, the checks of its arguments, and its handler."""

    name: str
    record: type
    handle: Callable[[Runner, Any], None]
    check: Callable[[dict[str, Any]], None] = _no_check
    moot_at_stop: bool = False
    """Sent before a Stop in the same batch, it is dropped (pausing and stepping are moot then);
    every other command sent before a Stop was acknowledged and still happens."""


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("pause", Pause, lambda run, c: run.pause("paused by the user"), moot_at_stop=True),
    CommandSpec("resume", Resume, lambda run, c: run.resume(), moot_at_stop=True),
    CommandSpec("step", Step, lambda run, c: run.queue_steps(c.count), _check_step, moot_at_stop=True),
    CommandSpec("set_hyperparams", SetHyperparams, lambda run, c: run.set_hyperparams(c.values), _check_hyperparams),
    CommandSpec("save", SaveCheckpoint, lambda run, c: run.saver.save("requested")),
    CommandSpec("export", ExportSamples, lambda run, c: run.saver.export(c.path), _check_export),
    CommandSpec("sample_fresh", SampleFresh, lambda run, c: run.saver.sample_fresh(c.seed, c.digit, c.count),
                _check_sample_fresh),
    CommandSpec("roll_back", RollBack, lambda run, c: run.roll_back(c.to, c.lr_scale), _check_roll_back),
    CommandSpec("stop", Stop, lambda run, c: run.stop(c.save), _check_stop),
)
_BY_NAME = {spec.name: spec for spec in COMMANDS}
_BY_RECORD = {spec.record: spec for spec in COMMANDS}


def spec_of(command: object) -> CommandSpec | None:
    """The table entry of a command record, or None for anything that is not one."""
    return _BY_RECORD.get(type(command))


def from_wire(message: dict[str, Any]) -> Command:
    """Validate and build a command from its wire form; CommandError names what is off."""
    name = message.get("command")
    spec = _BY_NAME.get(name) if isinstance(name, str) else None
    if spec is None:
        raise CommandError(f"unknown command {_short(repr(name) if isinstance(name, str) else name)}; "
                           f"known: {', '.join(_BY_NAME)}")
    known = {f.name for f in fields(spec.record)}
    args = {k: v for k, v in message.items() if k != "command"}
    for key in args:
        if key not in known:
            raise CommandError(f"{spec.name} takes no {_short(repr(key))}")
    spec.check(args)
    return spec.record(**args)


def to_wire(command: Command) -> dict[str, Any]:
    """A command's wire form (the inverse of from_wire); CommandError for an object that is not one."""
    spec = spec_of(command)
    if spec is None:
        raise CommandError(f"{type(command).__name__} is not a gan-tui command")
    return {"command": spec.name, **{f.name: getattr(command, f.name) for f in fields(spec.record)}}


def apply(runner: Runner, command: object) -> None:
    """Run a command's handler on the training thread; anything not in the table is warned about."""
    spec = spec_of(command)
    if spec is None:
        runner.warn(f"unknown command {type(command).__name__} ignored", "command")
        return
    spec.handle(runner, command)


# ------------------------------------------------------------------ helpers
def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = value if isinstance(value, str) else repr(value)
    except ValueError:  # repr of an int past the digits limit
        text = f"a number of more than {sys.get_int_max_str_digits()} digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["COMMANDS", "Command", "CommandError", "CommandSpec", "ExportSamples", "Pause", "Resume", "RollBack",
           "ROLLBACK_TARGETS", "SampleFresh", "SaveCheckpoint", "SetHyperparams", "Step", "Stop", "apply", "from_wire",
           "spec_of", "to_wire"]
