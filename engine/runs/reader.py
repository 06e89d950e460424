"""Reading a run folder's files: one rule for a damaged line of metrics.jsonl, one for a damaged JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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


def read_config_dict(path: Path) -> dict[str, Any]:
    """A run's config.json as a dict, or {} when it is missing or damaged (listing tools only)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
