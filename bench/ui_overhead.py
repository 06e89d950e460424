"""What the dashboard costs: training images/second with the dashboard against --headless.

    uv run python bench/ui_overhead.py [--seconds 30] [--rounds 2]

Runs the real `gan-tui` command both ways with the same config (default preset on the MNIST t10k
files), alternately. The dashboard runs in a real pseudo-terminal of 120x40 and this script reads
everything the app writes, so it also prints the bytes per second sent to the terminal at the
default refresh rate and the time from process start to the first frame. Training speed is read
from each run's own metrics.jsonl.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "datasets"
COLS, ROWS = 120, 40


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="wall time per run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data-root", default=str(DATA_ROOT))
    p.add_argument("--refresh", type=float, default=None, help="pass --refresh to the dashboard")
    args = p.parse_args()
    common = ["--dataset", "mnist", "--data-root", args.data_root, "--steps", "100000000", "--seed", "1"]
    runs_dir = Path(tempfile.mkdtemp(prefix="gan-tui-ui-bench-"))
    headless, dashboard, byte_rates, first_frames = [], [], [], []
    try:
        for r in range(args.rounds):
            headless.append(_headless(common, runs_dir / f"h{r}", args.seconds))
            extra = ["--refresh", str(args.refresh)] if args.refresh else []
            rate, bytes_per_s, first = _dashboard(common + extra, runs_dir / f"d{r}", args.seconds)
            dashboard.append(rate)
            byte_rates.append(bytes_per_s)
            first_frames.append(first)
            print(f"round {r + 1}: headless {headless[-1]:,.0f} img/s, dashboard {rate:,.0f} img/s, "
                  f"{bytes_per_s / 1024:.1f} KiB/s to the terminal, first frame after {first:.2f} s", flush=True)
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
    h, d = statistics.median(headless), statistics.median(dashboard)
    # This machine's speed drifts by tens of percent over minutes; each round's two runs are
    # back to back, so the median of the per-round ratios is the figure that drift least disturbs.
    paired = statistics.median(1 - dr / hr for hr, dr in zip(headless, dashboard))
    print(f"\nheadless  {h:,.0f} img/s, dashboard {d:,.0f} img/s (medians of {args.rounds} rounds)")
    print(f"dashboard overhead: {paired:+.1%} (median of the per-round pairs; target at most 5%)")
    print(f"terminal output at {COLS}x{ROWS}: {statistics.median(byte_rates) / 1024:.1f} KiB/s (target at most 30 KiB/s)")
    print(f"time to first frame: {statistics.median(first_frames):.2f} s (target at most 1 s)")


def _headless(common: list[str], runs_dir: Path, seconds: float) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "tui_gan.cli", "--headless", *common, "--runs-dir", str(runs_dir),
                             "--run-name", "r"], cwd=ROOT, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _wait_for_training(runs_dir / "r" / "metrics.jsonl", proc)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    return _training_rate(runs_dir / "r" / "metrics.jsonl")


def _dashboard(common: list[str], runs_dir: Path, seconds: float) -> tuple[float, float, float]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "COLUMNS": str(COLS), "LINES": str(ROWS)}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "tui_gan.cli", *common, "--runs-dir", str(runs_dir), "--run-name", "r"],
                            cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    metrics = runs_dir / "r" / "metrics.jsonl"
    first_frame = None
    counted, count_from = 0, None
    deadline = None
    quit_sent = False
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            if first_frame is None and b"LOADING" in chunk or first_frame is None and b"RUNNING" in chunk:
                first_frame = time.monotonic() - start
            if count_from is not None and not quit_sent:
                counted += len(chunk)
        if count_from is None and metrics.exists() and metrics.stat().st_size > 0:
            count_from = time.monotonic()  # steady state: training is running and drawn
            deadline = count_from + seconds
        if deadline is not None and not quit_sent and time.monotonic() >= deadline:
            window = time.monotonic() - count_from
            os.write(master, b"q")
            quit_sent = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=120)
    os.close(master)
    return _training_rate(metrics), counted / window, first_frame if first_frame is not None else float("nan")


def _wait_for_training(metrics: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.stat().st_size > 0):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("gan-tui did not start training")
        time.sleep(0.1)


def _training_rate(metrics: Path) -> float:
    """Images over training seconds from the run's own log, skipping the first records (warm-up)."""
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    rates = [r["images_per_s"] for r in records if r.get("type") == "metrics" and r.get("images_per_s")][3:]
    return statistics.median(rates) if rates else float("nan")


if __name__ == "__main__":
    main()
