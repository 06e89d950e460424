"""The wire format between a training process and its viewers: one JSON object per line.

Plain data only (no pickle), so neither side can make the other run code. Every message is a
single line of UTF-8 JSON of at most MAX_LINE bytes:

    viewer -> trainer   {"command": "pause"}
                        {"command": "resume"}
                        {"command": "step", "count": 1}
                        {"command": "set_hyperparams", "values": {"lr_g": 0.0001}}
                        {"command": "save"}
                        {"command": "export", "path": ""}          (a file name inside RUN/exports/)
                        {"command": "sample_fresh", "seed": 7}     (seed optional, 0..2**63-1)
                        {"command": "sample_fresh", "digit": 3, "count": 64}   (a conditional run's class)
                        {"command": "roll_back", "to": "last-good", "lr_scale": 0.5}   (last-good, latest, best or a step)
                        {"command": "stop", "save": true}
    trainer -> viewer   {"event": "MetricsLogged", "data": {...the event's fields...}}
                        {"reply": "ok", "command": "pause"}
                        {"reply": "error", "message": "..."}

Events carry the fields of the dataclasses in engine/events.py; image arrays travel as
{"shape": [N, 28, 28], "uint8_base64": "..."}; RunState values as their strings.

Commands are named and checked by the one command table (engine/commands.py) before the trainer
answers "ok": anything that would fail when applied (a seed torch cannot take, a learning rate of
10**400, an export path outside the run) gets an error reply instead. Hostile input (deep nesting,
huge numbers, bytes that are not UTF-8) is a ProtocolError like any other bad line.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from typing import Any

import numpy as np

from engine import events as ev
from engine.commands import Command, CommandError, from_wire, to_wire

MAX_LINE = 1 << 20  # 1 MiB: a command is tiny; anything far larger from a viewer is refused
# Events come from the trainer the viewer chose: a 32x32-class grid (1,024 images) is ~1 MB encoded.
MAX_EVENT_LINE = 16 << 20

_EVENT_TYPES: dict[str, type] = {t.__name__: t for t in ev.Event.__args__}  # type: ignore[attr-defined]


class ProtocolError(ValueError):
    """A message that is not valid in this protocol; the text says what is wrong."""


# ------------------------------------------------------------------ events
def encode_event(event: ev.Event) -> bytes:
    """An event as one JSON line."""
    data = {f.name: _plain(getattr(event, f.name)) for f in dataclasses.fields(event)}
    return _line({"event": type(event).__name__, "data": data})


def decode_event(message: dict[str, Any]) -> ev.Event:
    """Rebuild an event from a decoded line."""
    cls = _EVENT_TYPES.get(message.get("event", ""))
    if cls is None or not isinstance(message.get("data"), dict):
        raise ProtocolError(f"unknown event {message.get('event')!r}")
    data = dict(message["data"])
    if "images" in data:
        data["images"] = _array(data["images"])
    if "state" in data:
        data["state"] = ev.RunState(data["state"])
    if "class_hist" in data and isinstance(data["class_hist"], list):
        data["class_hist"] = tuple(data["class_hist"])
    for key in ("class_fd", "class_fd_floor"):  # JSON's null was a NaN (a class with no samples)
        if isinstance(data.get(key), list):
            data[key] = tuple(math.nan if v is None else v for v in data[key])
    if cls is ev.MetricsLogged:
        data = {k: math.nan if v is None else v for k, v in data.items()}  # JSON's null was a NaN
    try:
        return cls(**data)
    except TypeError as exc:
        raise ProtocolError(f"bad {cls.__name__}: {exc}") from None


# ---------------------------------------------------------------- commands
def encode_command(command: Command) -> bytes:
    """A command as one JSON line (its wire form from the command table)."""
    try:
        return _line(to_wire(command))
    except CommandError as exc:
        raise ProtocolError(str(exc)) from None


def decode_command(message: dict[str, Any]) -> Command:
    """Validate and rebuild a command; ProtocolError for anything off (the trainer then replies an error)."""
    try:
        return from_wire(message)
    except CommandError as exc:
        raise ProtocolError(str(exc)) from None


def parse_line(line: bytes, limit: int = MAX_LINE) -> dict[str, Any]:
    """One received line -> a JSON object, or ProtocolError (lines over `limit` bytes too)."""
    if len(line) > limit:
        raise ProtocolError(f"message of {len(line)} bytes is over the {limit}-byte limit")
    try:
        message = json.loads(line)
    except RecursionError:
        raise ProtocolError("not JSON: nested too deeply") from None
    except ValueError as exc:  # bad JSON, bytes that are not UTF-8, a number of thousands of digits
        raise ProtocolError(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message


def reply(ok: bool, text: str = "", command: str = "") -> bytes:
    """A reply line to a viewer's command."""
    return _line({"reply": "ok", "command": command} if ok else {"reply": "error", "message": text})


# ----------------------------------------------------------------- helpers
def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value, dtype=np.uint8)
        return {"shape": list(array.shape), "uint8_base64": base64.b64encode(array.tobytes()).decode("ascii")}
    if isinstance(value, ev.RunState):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _array(value: Any) -> np.ndarray:
    try:
        raw = base64.b64decode(value["uint8_base64"], validate=True)
        return np.frombuffer(raw, dtype=np.uint8).reshape(value["shape"]).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"bad image array: {exc}") from None


def _line(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode() + b"\n"
