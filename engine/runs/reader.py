"""The one way a run folder's files are read back: metrics.jsonl whole, its head, its tail, or followed
as it grows; state.json, config.json and the checkpoint quality index as JSON objects.

Every reader of a run (`gan-tui ls`, `gan-tui compare`, the sweep view, the dashboard's history,
export, resume) comes through here, so a damaged line (a half line being written, garbage, bytes
that are not UTF-8, a `step` that is not a whole number, a line that is not an object) is skipped
the same way everywhere: by `parse_log_line`. A damaged JSON file reads as {} (`read_json_file` also
says what is wrong with it, for `ls` and `show`). No torch here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

HEAD_BYTES = 8192  # the records a run writes first (dataset notes, the judge) are in here
TAIL_BYTES = 16384  # the last losses are at the end of a long log
# Sparse records (quality, paced to a share of the machine) are looked for further back: the window
# grows four times each time, up to this much of the log.
SCAN_BYTES = 4 << 20


def parse_log_line(raw: bytes | str) -> dict[str, Any] | None:
    """One metrics.jsonl line -> its record, or None when the line is damaged (not UTF-8, not JSON,
    not an object, or a `step` that is not a whole number)."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, the int-digits limit
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool):
        return None
    return record


def parse_log_lines(lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    """(the records of whole lines, how many non-empty lines were damaged)."""
    records: list[dict[str, Any]] = []
    bad = 0
    for raw in lines:
        record = parse_log_line(raw)
        if record is None:
            bad += raw.strip() != b""
        else:
            records.append(record)
    return records, bad


def read_log(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(every good record of a metrics.jsonl, how many lines were damaged); a missing file has none."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    return parse_log_lines(data.split(b"\n"))


def read_log_head(path: Path, size: int = HEAD_BYTES) -> list[dict[str, Any]]:
    """The records among the first `size` bytes (a line cut at the end is damaged, so skipped)."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(size)
    except OSError:
        return []
    return parse_log_lines(data.split(b"\n"))[0]


def read_log_tail(path: Path, size: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The records among the last `size` bytes (the first line read from mid-file is dropped)."""
    try:
        with Path(path).open("rb") as f:
            f.seek(0, os.SEEK_END)
            start = max(0, f.tell() - size)
            f.seek(start)
            lines = f.read().split(b"\n")
    except OSError:
        return []
    return parse_log_lines(lines[1:] if start > 0 else lines)[0]


def newest_log_records(path: Path, kind: str | tuple[str, ...], size: int = TAIL_BYTES,
                       limit: int = SCAN_BYTES) -> list[dict[str, Any]]:
    """The records of type `kind` (or of any of several types) in the shortest window at the log's end
    that holds any: `size` bytes, then four times as many each time, up to `limit` bytes or the whole file."""
    kinds = (kind,) if isinstance(kind, str) else kind
    while True:
        found = [r for r in read_log_tail(path, size) if r.get("type") in kinds]
        try:
            whole = size >= Path(path).stat().st_size
        except OSError:
            return found
        if found or whole or size >= limit:
            return found
        size *= 4


@dataclass
class LogUpdate:
    """What `LogFollower.poll` found: the records appended since the last poll, in order."""

    records: list[dict[str, Any]] = field(default_factory=list)
    reset: bool = False
    """The file was replaced or shortened (a resume or rollback rewrote it): `records` start from its
    beginning, and what was read before is void."""
    grew: bool = False
    """Bytes were appended (perhaps only part of a line)."""
    exists: bool = False
    """The file is there (a run that has not logged yet has none)."""
    mtime: float = 0.0
    """The file's modification time."""

    @property
    def changed(self) -> bool:
        """True when there is anything new to show."""
        return self.reset or self.grew


class LogFollower:
    """A metrics.jsonl read incrementally: each `poll()` reads only what was appended since the last.
    A half-written last line waits for its end; a file replaced under a new inode (or shortened) is
    read again from its start."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._inode: int | None = None
        self._partial = b""

    def poll(self) -> LogUpdate:
        """The records appended since the last call (all of them on the first call)."""
        try:
            stat = self.path.stat()
        except OSError:
            return LogUpdate()
        update = LogUpdate(exists=True, mtime=stat.st_mtime)
        if self._inode != stat.st_ino or stat.st_size < self._offset:
            self._offset, self._partial, self._inode = 0, b"", stat.st_ino
            update.reset = True
        if stat.st_size > self._offset:
            try:
                with self.path.open("rb") as f:
                    f.seek(self._offset)
                    data = f.read()
            except OSError:
                return update
            self._offset += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()  # a half-written last line waits for its end
            update.records = parse_log_lines(lines)[0]
            update.grew = True
        return update


class JsonFile(NamedTuple):
    """A JSON file read as one object (`read_json_file`), and what was wrong with it."""

    data: dict[str, Any]
    """The object; {} when the file is missing or damaged."""
    exists: bool
    problem: str | None
    """Why a file that is there is not one JSON object, as the end of a sentence that names it ("is
    not JSON", "cannot be read (Is a directory)", "is not a JSON object (a list)"); None when it is
    one, or is missing."""


def read_json_file(path: Path) -> JsonFile:
    """A JSON file holding one object, telling a missing file from a damaged one (for `ls`, `show`)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return JsonFile({}, False, None)
    except OSError as exc:  # a folder in its place, no permission, an I/O error
        return JsonFile({}, True, f"cannot be read ({exc.strerror or type(exc).__name__})")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, the int-digits limit
        return JsonFile({}, True, "is empty" if not raw.strip() else "is not JSON")
    if not isinstance(data, dict):
        return JsonFile({}, True, f"is not a JSON object (a {_json_kind(data)})")
    return JsonFile(data, True, None)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding one object, or {} when it is missing, unreadable or damaged."""
    return read_json_file(path).data


def read_config_dict(path: Path) -> dict[str, Any]:
    """A run's config.json as a dict, or {} when it is missing or damaged (listing tools only)."""
    return read_json_object(path)


def read_state_record(path: Path) -> dict[str, Any]:
    """A state.json record, or {} when there is none or it is damaged. Fields of the wrong type are
    dropped (`state` a string, `step` and `pid` whole numbers, `updated` a number)."""
    data = read_json_object(path)
    kinds = {"state": (str,), "step": (int,), "pid": (int,), "updated": (int, float)}
    return {k: v for k, v in data.items()
            if k not in kinds or isinstance(v, kinds[k]) and not isinstance(v, bool)}


def read_quality_index(path: Path) -> dict[int, dict[str, Any]]:
    """checkpoints/quality.json: step -> the quality measured at that step ({} when damaged)."""
    data = read_json_object(path)
    return {int(k): v for k, v in data.items() if isinstance(v, dict) and k.isdigit() and len(k) < 19}


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
