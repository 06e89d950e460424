"""Paths for people: relative to where gan-tui was started, broken at `/` (never mid-name) to fit."""

from __future__ import annotations

import os

TOAST_WIDTH = 46  # the content width of a toast at 80 columns (see Toast in app.tcss)


def relative(path: str) -> str:
    """`path` relative to the working directory when it lies under it, else as given."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith("..") else rel


def wrap_path(path: str, width: int = TOAST_WIDTH) -> str:
    """Lines of at most `width` characters, broken only after a `/` (a name longer than `width` stays whole)."""
    parts = path.split("/")
    lines: list[str] = []
    line = ""
    for i, part in enumerate(parts):
        piece = part + ("/" if i < len(parts) - 1 else "")
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    return "\n".join(lines)


def shown_path(text: str, width: int = TOAST_WIDTH) -> str:
    """A path (optionally followed by " (detail)") made relative and wrapped for a toast."""
    path, sep, detail = text.partition(" (")
    return wrap_path(relative(path), width) + (f" ({detail}" if sep else "")


def wrap_paths_in(message: str, width: int = TOAST_WIDTH) -> str:
    """`message` with every path longer than `width` broken at its slashes (other words wrap as usual)."""
    words = message.split(" ")
    return " ".join(wrap_path(word, width) if len(word) > width and "/" in word else word for word in words)
