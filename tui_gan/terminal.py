"""Whether this process can show a full-screen app: Textual reads keys from stdin and draws on stderr.

Without a terminal there (a cron job, `nohup ... &`, `</dev/null`, `2>log`) the app would write
escape codes into a file and spin forever with nobody to see or quit it, so every dashboard
refuses up front instead. stdout is free: only the leave note goes there (`gan-tui | tee` works).
"""

from __future__ import annotations

import sys
from typing import TextIO


def no_terminal(command: str, instead: str, stdin: TextIO | None = None, stderr: TextIO | None = None) -> str | None:
    """The one-line refusal of `command` when stdin or stderr is not a terminal (`instead`: what to do), else None."""
    streams = (("stdin", stdin or sys.__stdin__), ("stderr", stderr or sys.__stderr__))
    missing = [name for name, stream in streams if stream is None or not stream.isatty()]
    if not missing:
        return None
    return f"{command}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a terminal, and the dashboard needs one; {instead}"


def refused_without_terminal(command: str, instead: str) -> bool:
    """Print `no_terminal`'s refusal on stderr and say True when there is one (the caller exits 2)."""
    refusal = no_terminal(command, instead)
    if refusal:
        print(refusal, file=sys.stderr)
    return refusal is not None
