"""The training process: where its run folder is, starting it in its own session, and what to say
when a viewer leaves it.

Every training run lives in a process of its own (`gan-tui --headless` started with
`start_new_session`): no controlling terminal, so a closed terminal, a dropped SSH session, a killed
tmux or a crashed viewer never reaches it. `gan-tui` opens the dashboard on it at once;
`gan-tui --detach` starts it and returns.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from engine.notify_targets import child_env
from engine import events as ev
from engine.runs import (RunDir, RunError, last_step, new_run_name, newest_log_records, resolve_run, run_state,
                         starting_line)
from tui_gan.describe import judge_unfinished_summary
from tui_gan.exits import USER_ERROR
from tui_gan.formatting import gan_tui_command
from tui_gan.options import Options, without_notify_urls
from tui_gan.process.socket_link import log_tail, socket_path, why_it_ended

_START_TIMEOUT_S = 300.0  # importing torch and loading a dataset on a cold machine
_FOLDER_ONLY = {"train.log", ".lock"}  # what a launcher leaves in a folder before its trainer starts


class Refused(Exception):
    """The run cannot start (a live owner, a taken name); the message is one line for the user."""


def plan_run_dir(options: Options, name_new_run: bool) -> Path | None:
    """The run folder this start will train in, refused (Refused) when another process trains it or
    a new run's name is taken. A new run without --run-name gets a fresh name when `name_new_run`
    (the launcher must know the folder to watch), else None (the trainer names it)."""
    if options.resume:
        try:
            run_dir = resolve_run(options.runs_dir, options.resume).path
        except RunError as exc:
            raise Refused(str(exc)) from None
        _refuse_live(run_dir)
        if not RunDir(run_dir).checkpoints():  # said here in one line, not by a trainer that fails to start
            raise Refused(f"run {run_dir} has no checkpoint to resume from: it ended before its first save; "
                          "start a new run")
        return run_dir
    name = options.run_name
    if name is not None and ("/" in name or name in ("", ".", "..")):
        raise Refused(f"run name {name!r} must be a plain folder name")
    if name is None:
        if not name_new_run:
            return None
        name = new_run_name(options.config)
        while (options.runs_dir / name).exists():  # two starts in the same second
            name += "-2"
    run_dir = options.runs_dir / name
    _refuse_live(run_dir)
    if run_dir.is_dir() and any(p.name not in _FOLDER_ONLY for p in run_dir.iterdir()):
        raise Refused(f"run folder {run_dir} already exists; pick another --run-name, "
                      f"or continue it with: {gan_tui_command('--resume', run_dir)}")
    return run_dir


def live_pid(run_dir: Path) -> int | None:
    """The pid of the process training `run_dir`, or None: its lock, else its state.json's live pid."""
    return run_state(RunDir(run_dir))[1] if run_dir.is_dir() else None


def spawn_trainer(options: Options, argv: Sequence[str], run_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `gan-tui --headless` (which serves viewers) on `run_dir` in a new session; (process, its log file)."""
    dropped = {"--detach", "--in-process", "--headless", "--serve"}
    child = [a for a in without_notify_urls(argv) if a not in dropped] + ["--headless"]
    # The launcher has settled the folder; the trainer must not pick another (`latest` could move).
    child += ["--resume", str(run_dir)] if options.resume else ["--run-name", run_dir.name]
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    with log_path.open("ab") as log:
        # A new session: no controlling terminal, so closing the SSH session sends it no SIGHUP.
        process = subprocess.Popen(
            [sys.executable, "-m", "tui_gan.cli", *child],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            # Notification URLs carry tokens: the environment, never the command line (`ps` shows it to all).
            env={**os.environ, **child_env(options.notify, options.notify_on)},
        )
        # Until the trainer holds the folder's lock (after importing torch), this line is how `ls`,
        # `attach` and a second start know that the run is starting and who starts it.
        log.write(starting_line(process.pid).encode())
    return process, log_path


def launch_detached(options: Options, argv: Sequence[str], run_dir: Path) -> int:
    """Start the trainer, wait until it serves (or say at once why it died), say how to reach it."""
    process, log_path = spawn_trainer(options, argv, run_dir)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not _serving(run_dir):
        if process.poll() is not None:
            said = why_it_ended(log_path, process.returncode) or ["(no output)"]
            if process.returncode == USER_ERROR:  # the trainer's own one line says what to fix
                print(f"gan-tui: {said[-1]}", file=sys.stderr)
                return USER_ERROR
            print(f"gan-tui: the training process ended at start-up (exit {process.returncode}):\n  "
                  + "\n  ".join(said), file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"gan-tui: still starting after {_START_TIMEOUT_S:.0f} s (pid {process.pid}); see {log_path}",
                  file=sys.stderr)
            return 1
        time.sleep(0.2)
    ls = gan_tui_command("ls", *([] if str(options.runs_dir) == "runs" else ["--runs-dir", options.runs_dir]))
    print(f"training in the background (pid {process.pid})")
    print(f"  run folder: {run_dir}")
    print(f"  attach:     {gan_tui_command('attach', run_dir)}")
    print(f"  list runs:  {ls}")
    print(f"  log:        {log_path}")
    sys.stdout.flush()
    os._exit(0)  # leave the child alone: no interpreter teardown that could signal it


def leave_message(run_dir: Path, runs_dir: Path | None = None, launched: int | None = None) -> list[str]:
    """What a viewer prints on leaving: the run folder, where the run stands, and the exact commands
    to attach, resume or export. `launched`: the pid of the trainer this viewer started, if it lives."""
    run = RunDir(run_dir)
    state, pid = run_state(run)
    step = last_step(run)
    pid = pid or live_pid(run_dir) or launched
    lines = [f"run folder: {run_dir}"]
    if not pid and not run.config_path.is_file():
        lines.append(f"the training process did not start; its log: {run_dir / 'train.log'}")
        lines.extend(f"  {line}" for line in log_tail(run_dir / "train.log", 2))
    elif pid:
        doing = f"step {step:,}" if state in ("running", "paused") else "starting"
        lines.append(f"still training (pid {pid}, {doing}); it keeps going without this terminal")
        lines.append(f"  attach:  {gan_tui_command('attach', run_dir)}")
        lines.append(f"  stop:    attach and press X, or: kill -TERM {pid} (saves a checkpoint first)")
    else:
        lines.append(f"{state} at step {step:,}")
        judge = _judge_unfinished(run)
        if judge is not None:
            lines.append(f"  {judge_unfinished_summary(judge)}")
        if not run.checkpoints():
            if step > 0:
                lines.append("  no checkpoint of this run is on disk: it cannot be resumed")
        elif state == "finished":
            lines.append(f"  train further: {gan_tui_command('--resume', run_dir, '--steps', max(2 * step, step + 1))}")
        else:
            lines.append(f"  resume:  {gan_tui_command('--resume', run_dir)}")
        if run.sample_grids():
            lines.append(f"  export:  {gan_tui_command('export', run_dir, 'grid')}  (or gif, csv, samples)")
    if runs_dir is not None:
        # The folder that holds this run (not the one this viewer was pointed at): the command must list it.
        holder = run_dir.parent
        extra = [] if holder.resolve() == Path("runs").resolve() else ["--runs-dir", holder]
        lines.append(f"  all runs: {gan_tui_command('ls', *extra)}")
    return lines


def _judge_unfinished(run: RunDir) -> ev.JudgeProgress | None:
    """The judge's progress when the run's log ends on a judge_unfinished record (no quality since)."""
    found = newest_log_records(run.metrics_path, ("quality", "judge_unfinished"))
    last = found[-1] if found else {}
    done, epochs = last.get("epochs_done"), last.get("epochs")
    if last.get("type") != "judge_unfinished" or not isinstance(done, int) or not isinstance(epochs, int):
        return None
    return ev.JudgeProgress(done + 1, epochs)  # the epoch under way when the run ended


def _refuse_live(run_dir: Path) -> None:
    pid = live_pid(run_dir) if run_dir.is_dir() else None
    if pid is not None and pid != os.getpid():  # the trainer a launcher started checks its own folder too
        who = f"process {pid}" if pid else "another process"
        raise Refused(f"run {run_dir} is being trained by {who}; attach to it with: {gan_tui_command('attach', run_dir)}")


def _serving(run_dir: Path) -> bool:
    """True once the trainer answers on its socket (a stale socket file from a killed run does not)."""
    path = socket_path(run_dir)
    if not path.exists():
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()
