"""What the TensorBoard log costs: the training thread's share and the logger thread's CPU per event.

    uv run python bench/tensorboard_cost.py [--records 300] [--grids 30]

The training thread only queues each event (first figure). The logger's thread builds the
summaries and appends their records through its journal; that is Python, so its CPU time competes
for the interpreter lock with training. The pure-Python CRC32C that `tensorboard` computes over
every record makes an image grid the costliest event. Prints per-event CPU time and, at the default
cadence (a metrics record every 20 steps, a grid every 200), the CPU per 200 training steps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from engine import events as ev  # noqa: E402
from engine.tensorboard import TensorBoardLogger  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=300)
    p.add_argument("--grids", type=int, default=30)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    # Digit-like grids: mostly black with bright strokes, so the PNG is as large as a real one.
    grid = np.where(rng.random((64, 28, 28)) < 0.15, rng.integers(128, 256, (64, 28, 28)), 0).astype(np.uint8)
    metrics = [ev.MetricsLogged(s, 1.0, 0.5, 0.7, 0.6, 0.4, 1.0, 1.0, 1e-3, 1e-3, 1000.0, 1.0) for s in range(1, args.records + 1)]
    started = ev.RunStarted("", {"lr_g": 1e-3}, "cpu", "CPU", "bench", "", 0, 10**6, False)

    folder = Path(tempfile.mkdtemp(prefix="gan-tui-tb-"))
    queued = TensorBoardLogger(folder / "queued")
    queued(started)
    t = time.perf_counter()
    for m in metrics:
        queued(m)
    put_us = (time.perf_counter() - t) / len(metrics) * 1e6
    queued.close(60)

    direct = TensorBoardLogger(folder / "direct")
    direct.close()  # its thread ends at once; events are written here, on one thread, to time them
    direct._encode(started)
    t = time.process_time()
    for m in metrics:
        direct._encode(m)
    direct._write_pending()
    metrics_ms = (time.process_time() - t) / len(metrics) * 1e3
    t = time.process_time()
    for i in range(args.grids):
        direct._encode(ev.SamplesGenerated(10**6 + i, grid))
    direct._write_pending()
    grid_ms = (time.process_time() - t) / args.grids * 1e3
    direct._write_pending()

    print(f"training thread, queueing one event:      {put_us:8.1f} us")
    print(f"logger CPU per metrics record (11 scalars): {metrics_ms:6.2f} ms")
    print(f"logger CPU per 64-digit sample grid:        {grid_ms:6.2f} ms")
    print(f"CPU per 200 steps at the default cadence:   {10 * metrics_ms + grid_ms:6.2f} ms "
          f"({(10 * metrics_ms + grid_ms) / 200:.3f} ms per step)")


if __name__ == "__main__":
    main()
