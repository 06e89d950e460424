"""`gan-tui --detach`: start the run in a background process that outlives the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Sequence

from engine.runs import RunError, new_run_name, resolve_run
from engine.server import SOCKET_NAME

if TYPE_CHECKING:
    from tui_gan.cli import Options

_START_TIMEOUT_S = 300.0  # importing torch and loading a dataset on a cold machine


def launch_detached(options: Options, argv: Sequence[str]) -> int:
    """Spawn `gan-tui --headless --serve` in its own session, wait until it serves, say how to attach."""
    child = [a for a in argv if a != "--detach"] + ["--headless", "--serve"]
    if options.resume:
        try:
            run_dir = resolve_run(options.runs_dir, options.resume).path
        except RunError as exc:
            print(f"gan-tui: {exc}", file=sys.stderr)
            return 2
    else:
        name = options.run_name or new_run_name(options.config)
        run_dir = options.runs_dir / name
        if not options.run_name:
            child += ["--run-name", name]
    run_dir.mkdir(parents=True, exist_ok=True)
    socket_path = run_dir / SOCKET_NAME
    socket_path.unlink(missing_ok=True)
    log_path = run_dir / "train.log"
    with log_path.open("ab") as log:
        # A new session: no controlling terminal, so closing the SSH session sends it no SIGHUP.
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui_gan.cli", *child],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not socket_path.exists():
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            print("gan-tui: the training process ended at start-up:\n  " + "\n  ".join(tail), file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"gan-tui: still starting after {_START_TIMEOUT_S:.0f} s; see {log_path}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"training in the background (pid {proc.pid})")
    print(f"  run folder: {run_dir}")
    print(f"  attach:     gan-tui attach {run_dir}")
    print(f"  list runs:  gan-tui ls{'' if str(options.runs_dir) == 'runs' else ' --runs-dir ' + str(options.runs_dir)}")
    print(f"  log:        {log_path}")
    os._exit(0)  # leave the child alone: no interpreter teardown that could signal it
