"""Whether this process can show a full-screen app: Textual needs a terminal on stdin and stdout.

Without one (a cron job, `nohup ... &`, `</dev/null`, a pipe) the app would write escape codes into
a file and spin forever with nobody to see or quit it, so every dashboard refuses up front instead.
"""

from __future__ import annotations

import sys
from typing import TextIO


def no_terminal(command: str, instead: str, stdin: TextIO | None = None, stdout: TextIO | None = None) -> str | None:
    """The one-line refusal of `command` when stdin or stdout is not a terminal (`instead`: what to do), else None."""
    missing = [name for name, stream in (("stdin", stdin or sys.stdin), ("stdout", stdout or sys.stdout))
               if stream is None or not stream.isatty()]
    if not missing:
        return None
    return f"{command}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a terminal, and the dashboard needs one; {instead}"
