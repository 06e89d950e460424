"""The exit statuses of every gan-tui command, and which one a run's end makes (the README's table).

0: done (trained to the end, stopped with a checkpoint, detached, listed, exported, left a viewer);
1: something broke that is not the user's input (a crash, a damaged file, a trainer that died, a run
   that ended with no checkpoint on disk);
2: a mistake the user can fix, said in one line (a flag, a value, a path, a device, a run's state);
130: a second Ctrl-C quit without waiting for the checkpoint.
"""

from __future__ import annotations

from engine import events as ev

OK = 0
FAILED = 1
USER_ERROR = 2
INTERRUPTED = 130


def run_exit_status(final: ev.RunFinished | None, error: ev.ErrorRaised | None) -> int:
    """The status of a process whose run ended with `final` (None: its thread died without one) after
    `error` (the run's ErrorRaised, if any): 2 when the failure was a mistake of the user's, 1 for a run
    that trained but left no checkpoint on disk (a full disk: it cannot be resumed, which is not done)."""
    if final is not None and final.state != ev.RunState.FAILED:
        return FAILED if lost_its_weights(final) else OK
    return USER_ERROR if error is not None and error.user_error else FAILED


def lost_its_weights(final: ev.RunFinished) -> bool:
    """The run trained (or resumed and trained) and no checkpoint of it is on disk: nothing to resume."""
    ended = final.state in (ev.RunState.FINISHED, ev.RunState.STOPPED)  # a viewer's "interrupted" knows no files
    return ended and final.step > 0 and not final.checkpoint
