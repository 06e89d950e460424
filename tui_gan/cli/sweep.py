"""`gan-tui sweep`: parse, check Ray is there, start the Ray driver detached, then watch it.

    gan-tui sweep [training options] --trials N [--search random|grid|pbt] [--lr-g LO:HI]
                  [--lr-d LO:HI] [--batch-size A,B,...] [--parallel K] [--gpus-per-trial F]
                  [--address RAY_ADDRESS] [--sweep-name NAME] [--headless]

Before anything starts, settings that cannot be satisfied are refused (exit 2, one line): a trial
needing more CPUs or GPUs than this machine (or the largest node of the --address cluster) has, an
--address that does not answer or refuses this machine's token (probed within ~30 s), a cluster node
that cannot see the sweep folder, a sweep folder another sweep holds (claimed atomically). The driver
runs in its own session (like `gan-tui --detach`), so the sweep outlives the terminal; the view or the
headless table only read the sweep folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

from engine.config import NAMED_DATASETS, ConfigError
from engine.notify_targets import child_env
from engine.sweep.cluster import check_fits, local_resources, probe_cluster
from engine.sweep.spec import (LOG_NAME, MARKER_NAME, SEARCHES, Range, SweepError, SweepSpec, SweepStatus,
                               claim_sweep_dir, parse_batch_sizes, release_sweep_dir, request_stop)
from tui_gan.formatting import gan_tui_command
from tui_gan.gpu_probe import check_device
from tui_gan.options import Parser, check_folder_name, did_you_mean, parse_options
from tui_gan.options import build_parser as build_training_parser
from tui_gan.terminal import refused_without_terminal

INSTALL_HINT = "gan-tui sweep needs Ray Tune: pip install 'gan-tui[sweep]' (or, in a clone: uv sync --extra sweep)"
_TRAINING_ONLY = ("--resume", "--detach", "--serve", "--run-name")
_DONE = ("finished", "stopped", "failed", "interrupted")
_START_TIMEOUT_S = 60.0
_TTY_REFRESH_S = 2.0
_PLAIN_REFRESH_S = 15.0  # without a terminal, a table every this many seconds keeps logs readable


def main(argv: Sequence[str]) -> int:
    """`gan-tui sweep ...`; the exit status (2 for a usage mistake or a missing Ray)."""
    try:
        spec, headless = parse_sweep(argv)
        if spec.address is None:  # a cluster's nodes may have the GPUs this machine lacks
            check_device(str(spec.config.get("device", "auto")))
    except (SweepError, ConfigError) as exc:
        print(f"gan-tui sweep: {exc}", file=sys.stderr)
        return 2
    if not ray_installed():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    if not headless and refused_without_terminal("gan-tui sweep", "add --headless for a refreshing table"):
        return 2
    try:
        prepare(spec)
    except SweepError as exc:
        print(f"gan-tui sweep: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gan-tui sweep: interrupted before the sweep started; nothing was left behind", file=sys.stderr)
        return 130
    try:
        launch_driver(spec)
    except SweepError as exc:
        print(f"gan-tui sweep: {exc}", file=sys.stderr)
        return 1
    if headless:
        return watch_headless(spec.path, sys.stdout)
    from tui_gan.screens.sweep import SweepApp

    SweepApp(spec.path).run()
    print(left_sweep_line(spec.path))
    return 0


def left_sweep_line(sweep_dir: Path) -> str:
    """What the terminal says as the sweep view closes: the sweep goes on, or how it ended."""
    state = SweepStatus.load(sweep_dir).effective_state()
    if state in _DONE:
        return f"the sweep {state}; its trials: {gan_tui_command('ls', '--runs-dir', sweep_dir)}"
    return f"the sweep goes on in the background; watch it again with: {gan_tui_command('attach', sweep_dir)}"


def build_parser() -> argparse.ArgumentParser:
    """The sweep's own flags; every other flag is a training option of plain `gan-tui`."""
    p = Parser(
        prog="gan-tui sweep",
        description="Train a population of GANs on Ray Tune and watch them side by side. "
        "Any training option of gan-tui (--dataset, --steps, --quality-every, ...) applies to every trial.",
        epilog="Trials are run folders RUNS_DIR/SWEEP_NAME/trial-NNN/ (gan-tui attach, ls --runs-dir, export "
        "work on them). Trials are ranked by their Frechet distance over its floor, measured every "
        "--quality-every steps (lower is better).",
    )
    p.add_argument("--trials", type=int, required=True, metavar="N", help="trials (the population, for pbt)")
    p.add_argument("--search", choices=SEARCHES, default="random", help="random (default), grid, or pbt")
    p.add_argument("--lr-g", default="1e-4:2e-3", metavar="LO:HI", help="generator learning rates (log scale), or one value")
    p.add_argument("--lr-d", default="1e-4:2e-3", metavar="LO:HI", help="discriminator learning rates, or one value")
    p.add_argument("--batch-size", metavar="A,B,...", help="batch sizes to try (default: the training option's)")
    p.add_argument("--parallel", type=int, default=0, metavar="K", help="trials at once (default: as many as fit)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="F", help="GPU share per trial (0.25: four per GPU)")
    p.add_argument("--cpus-per-trial", type=float, default=0.0, metavar="F", help="CPU share per trial (default: CPUs / parallel)")
    p.add_argument("--address", metavar="RAY_ADDRESS", help="an existing Ray cluster (e.g. HEAD_IP:6379) instead of a local Ray")
    p.add_argument("--sweep-name", metavar="NAME", help="sweep folder name under RUNS_DIR (default: sweep-DATE-SEARCH)")
    p.add_argument("--perturbation-interval", type=int, default=1, metavar="N", help="pbt: quality reports between perturbations")
    p.add_argument("--headless", action="store_true", help="print a refreshing table instead of the sweep view")
    return p


def parse_sweep(argv: Sequence[str]) -> tuple[SweepSpec, bool]:
    """(the validated spec, headless); SweepError or ConfigError (one line) for bad input."""
    parser = build_parser()
    args, rest = parser.parse_known_args(list(argv))
    training_flags = [f for f in build_training_parser()._option_string_actions if f.startswith("--")]
    for flag in rest:
        name = flag.split("=", 1)[0]
        if name in _TRAINING_ONLY:
            raise SweepError(f"{name} does not apply to a sweep (each trial is its own run folder)")
        if name.startswith("--") and name not in training_flags:  # neither the sweep's flag nor a trial's
            sweep_flags = [f for f in parser._option_string_actions if f.startswith("--")]
            raise SweepError(f"unrecognized argument {name}{did_you_mean(name, sweep_flags + training_flags)} (see --help)")
    lr_g, lr_d = Range.parse("--lr-g", args.lr_g), Range.parse("--lr-d", args.lr_d)
    sizes = parse_batch_sizes(args.batch_size) if args.batch_size else ()
    training = list(rest) + ["--lr-g", str(lr_g.lo), "--lr-d", str(lr_d.lo)]
    if sizes:
        training += ["--batch-size", str(sizes[0])]
    options = parse_options(training)  # a bad flag: argparse's one line and exit 2
    # --notify URLs reach the driver (and through Ray's runtime_env its trials) in the environment it
    # inherits: never in sweep_spec.json, never on a command line.
    os.environ.update(child_env(options.notify, options.notify_on))
    config = options.config.to_dict()
    # Trials run with Ray's working folder, not ours: every path they read must be absolute.
    if config.get("data_root"):
        config["data_root"] = os.path.abspath(os.path.expanduser(config["data_root"]))
    if config["dataset"] not in NAMED_DATASETS:
        config["dataset"] = os.path.abspath(os.path.expanduser(config["dataset"]))
    name = args.sweep_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{args.search}"
    if "/" in name or name in ("", ".", ".."):
        raise SweepError(f"--sweep-name {name!r} must be a plain folder name")
    check_folder_name("sweep_name", name, options.runs_dir)
    sweep_dir = (options.runs_dir / name).resolve()
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise SweepError(f"{sweep_dir} already exists; pick another --sweep-name (watch that one with {gan_tui_command('attach', sweep_dir)})")
    spec = SweepSpec(
        name=name, sweep_dir=str(sweep_dir), config=config, trials=args.trials, search=args.search,
        lr_g=(lr_g.lo, lr_g.hi), lr_d=(lr_d.lo, lr_d.hi), batch_sizes=sizes, parallel=args.parallel,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial, address=args.address,
        perturbation_interval=args.perturbation_interval, seed=int(config["seed"]),
    )
    spec.validate()
    return spec, args.headless


def ray_installed() -> bool:
    """Ray Tune can be imported (checked without importing it: that takes seconds)."""
    try:
        return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.tune") is not None
    except (ImportError, ValueError):
        return False


def prepare(spec: SweepSpec) -> None:
    """Everything checked before the driver starts; the sweep folder claimed (atomically) and its spec
    written. SweepError (one line) when the sweep cannot run as asked; then nothing is left behind."""
    if not spec.address:
        cpus, gpus = local_resources()
        check_fits(spec, cpus, gpus, "this machine")
    made = claim_sweep_dir(spec.path)
    try:
        spec.save()
        if spec.address:
            # One probe: the address answers, takes this machine's token, and every node reads the marker.
            marker = spec.path / MARKER_NAME
            marker.write_text(secrets.token_hex(16))
            info = probe_cluster(spec.address, marker)
            check_fits(spec, info.max_cpus, info.max_gpus, "the largest node of the cluster")
            marker.unlink()
    except BaseException:
        release_sweep_dir(spec.path, made)
        raise


def launch_driver(spec: SweepSpec) -> int:
    """Start `python -m engine.sweep.driver` on the prepared sweep folder in its own session; its pid."""
    log_path = spec.path / LOG_NAME
    with log_path.open("ab") as log:
        # A new session: no controlling terminal, so a closed SSH session sends it no SIGHUP.
        proc = subprocess.Popen([sys.executable, "-m", "engine.sweep.driver", str(spec.path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while SweepStatus.load(spec.path).pid != proc.pid:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise SweepError(f"the sweep driver ended at start-up: {tail[0]} (see {log_path})")
        if time.monotonic() > deadline:
            raise SweepError(f"the sweep driver did not start within {_START_TIMEOUT_S:.0f} s; see {log_path}")
        time.sleep(0.1)
    print(f"sweep {spec.name}: driver pid {proc.pid}, folder {spec.path}")
    return proc.pid


def watch_headless(sweep_dir: Path, out: TextIO) -> int:
    """Print the trials table until the sweep ends, then the best trial and its config.
    Ctrl-C asks for a stop (every trial saves a checkpoint); a second Ctrl-C leaves it running."""
    from engine.sweep.rows import describe_best, format_table, read_trials, sort_rows

    interrupted: list[int] = []

    def on_sigint(_signum: int, _frame: object) -> None:
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(1)
        request_stop(sweep_dir)
        print("stopping the sweep: every trial saves a checkpoint (Ctrl-C again to stop watching)", file=out, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    tty = out.isatty()
    last = 0.0
    try:
        while True:
            status = SweepStatus.load(sweep_dir)
            finished = status.effective_state() in _DONE  # "interrupted": its driver is gone
            if finished or time.monotonic() - last >= (_TTY_REFRESH_S if tty else _PLAIN_REFRESH_S):
                rows = read_trials(sweep_dir, status)
                table = format_table(sort_rows(rows, "fd"), status)
                out.write(("\x1b[H\x1b[J" if tty else "") + table + "\n")
                out.flush()
                last = time.monotonic()
            if finished:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print(f"\nno longer watching; the sweep goes on: {gan_tui_command('attach', sweep_dir)}", file=out)
        return 0
    finally:
        signal.signal(signal.SIGINT, previous)
    print(describe_best(status, rows), file=out)
    if status.state == "failed":
        print(f"gan-tui sweep: the sweep failed: {status.message} (see {sweep_dir / LOG_NAME})", file=sys.stderr)
        return 1
    if status.effective_state() == "interrupted":
        print(f"gan-tui sweep: the sweep's driver (pid {status.pid}) is gone; its trials resume with "
              f"gan-tui --resume TRIAL_DIR (see {sweep_dir / LOG_NAME})", file=sys.stderr)
        return 1
    return 0


