"""How a run ends, whichever way: finished, stopped, or failed. Every end posts RunFinished last.

`finish` is the orderly end (the last metrics and grid, a final checkpoint, quality drained).
`fail` reports an error and ends the run; it never raises: each part that fails again (a full
disk, a broken device) becomes a warning and the rest still happens. `close` is the last act of
both: writes settled, state.json true (or said not to be), the folder's lock released.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from engine import events as ev
from engine.checkpoint import CheckpointError
from engine.config import ConfigError
from engine.data import DatasetError
from engine.devices import describe_failure, is_sticky_device_error
from engine.journal import append_text, describe_error
from engine.lock import RunLocked
from engine.runs import RunError

if TYPE_CHECKING:
    from engine.runner import Runner

#: Errors the user can fix (a wrong path, a damaged checkpoint): their message reads best without a type name.
USER_ERRORS = (ConfigError, DatasetError, CheckpointError, RunError, RunLocked)
_END_FLUSH_S = 30.0  # at the end of a run, how long to wait for the disk to take the queued writes


def finish(runner: Runner, state: ev.RunState, reason: str, save: bool) -> None:
    """The orderly end: the last metrics and grid, a checkpoint when `save`, then close."""
    if runner.journal is not None:
        runner.journal.ending()
    if runner.trainer is not None:
        runner.log_metrics_now()
        if runner.saver.last_grid_step != runner.trainer.step:  # grids go by time: the last one shows where it ended
            _quietly(runner, "drawing the last samples", runner.saver.post_grid)
        if save:
            runner.saver.save("final" if state == ev.RunState.FINISHED else "stop")
    runner.settle()  # the final checkpoint is on disk (or its failure known) before the run says so
    runner.monitor.close(wait=save)
    runner.set_state(state, reason)
    close(runner, state)


def fail(runner: Runner, exc: BaseException, save: bool) -> None:
    """Report a failure and end the run. Never raises."""
    step, trainer, run = runner.step, runner.trainer, runner.run
    # A poisoned CUDA context raises again on any device call: no save, no finiteness check. A
    # failure inside a step (out of memory after D's update, say) leaves nets, optimizers and
    # RNG part-way through it: saved, that state would pass for step `step` and resume wrong.
    torn = trainer is not None and trainer.mid_step
    save = save and not is_sticky_device_error(exc) and not torn
    if runner.journal is not None:
        runner.journal.ending()
    newest = None
    if torn and run is not None:
        _quietly(runner, "writing the run folder", runner.settle)  # a checkpoint on its way counts
        newest = run.latest_checkpoint()
    explained = ""
    try:
        explained = describe_failure(exc, runner.cfg.batch_size, resumable=not torn or newest is not None) or ""
    except Exception:  # noqa: BLE001 - the plain message below still says what happened
        pass
    if explained and torn and newest is not None:
        explained += f" (it failed inside step {step + 1}, so the newest checkpoint, {newest.name}, is where it resumes from)"
    if explained and save and trainer is not None:
        # Out of memory: the weights are fine, so the checkpoint comes first and the message says where.
        runner.saver.save_after_failure()
        _quietly(runner, "writing the checkpoint", runner.settle)  # on disk before the message says so
        saved = run is not None and run.checkpoint_path(step).is_file()
        save = False
        explained += f" (checkpoint at step {step} saved)" if saved else " (no checkpoint could be saved)"
    text = "".join(traceback.format_exception(exc))
    where = ""
    if run is not None and runner.owns_folder:  # never write into a folder this runner does not own
        try:
            append_text(run.error_path, f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} step {step}\n{text}\n")
            where = str(run.error_path)
        except Exception:  # noqa: BLE001 - the traceback still goes out in the event
            pass
    user_error = isinstance(exc, USER_ERRORS)
    message = str(exc) if user_error else f"{type(exc).__name__}: {exc}"
    runner.emit(ev.ErrorRaised(step, explained or message, text, where, user_error=user_error))
    if save and trainer is not None:
        runner.saver.save_after_failure()
    _quietly(runner, "writing the run folder", runner.settle)
    _quietly(runner, "stopping the quality worker", lambda: runner.monitor.close(wait=False))
    _quietly(runner, "recording the failure", lambda: runner.set_state(ev.RunState.FAILED, str(exc)))
    close(runner, ev.RunState.FAILED)


def close(runner: Runner, state: ev.RunState) -> None:
    """The last act of every run: writes settled, state.json true (or said not to be), TensorBoard
    closed, the folder released, RunFinished posted. Never raises."""
    step, record, run = runner.step, runner.record, runner.run
    try:
        runner.settle(_END_FLUSH_S)
        if record.journal is not None and "state" in record.journal.failing and run is not None:
            try:
                run.write_state(state.value, step)  # one last try, so `ls` tells the truth
            except Exception as exc:  # noqa: BLE001 - said in the event stream instead
                runner.emit(ev.WarningRaised(step, f"state.json could not be written ({describe_error(exc)}); "
                                                   f"`gan-tui ls` may show this run as interrupted, it is {state.value}",
                                             "disk:state"))
        if record.journal is not None and not record.journal.close(timeout=_END_FLUSH_S):
            runner.emit(ev.WarningRaised(step, f"the disk did not take the run's last writes within {_END_FLUSH_S:.0f} s; "
                                               "they may be missing", "disk:end"))
    except Exception:  # noqa: BLE001 - nothing may stop the final event
        traceback.print_exc()
    finally:
        newest = _newest_checkpoint(runner, step)
        finished = ev.RunFinished(step, state, str(run.path) if run else "", str(newest or ""))
        if record.tensorboard is not None:
            try:  # its last writes land while the folder is still this run's
                record.tensorboard(finished)
                record.tensorboard.close()
            except Exception:  # noqa: BLE001 - nothing may stop the final event
                traceback.print_exc()
        runner.release_folder()
        runner.emit(finished)  # the closed TensorBoard logger ignores it


def _newest_checkpoint(runner: Runner, step: int) -> Path | None:
    """The newest checkpoint on disk; a run that trained without leaving one says why it cannot be resumed."""
    run, journal = runner.run, runner.record.journal
    try:
        newest = run.latest_checkpoint() if run is not None else None
    except OSError:
        newest = None
    if newest is None and run is not None and step > 0:
        why = journal.failing.get("checkpoint") if journal is not None else None
        runner.emit(ev.WarningRaised(step, "no checkpoint of this run is on disk"
                                     + (f" (the disk said: {why})" if why else "")
                                     + ", so it cannot be resumed; its metrics and samples are kept", "checkpoint"))
    return newest


def _quietly(runner: Runner, what: str, action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - the failure path goes on whatever fails inside it
        runner.emit(ev.WarningRaised(runner.step, f"{what} failed too: {describe_error(exc)}", "error"))
