"""Wall time of `gan-tui export RUN grid|gif|csv` as a user runs it (a fresh process each time).

    uv run python bench/export_time.py [RUN_DIR]

Without RUN_DIR it first trains a tiny run (synthetic digits, 400 steps, a grid every 20 steps) into
a temporary folder. Prints the median of 3 runs of each export; the target is 3 s or less (no torch).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(sys.argv[1]) if len(sys.argv) > 1 else _tiny_run(Path(tmp))
        for what in ("grid", "gif", "csv"):
            times = []
            for i in range(3):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "tui_gan.cli", "export", str(run), what, "--out",
                                f"{tmp}/out{i}.{what}"], cwd=ROOT, check=True, capture_output=True)
                times.append(time.perf_counter() - start)
            print(f"export {what:4}: median {statistics.median(times):.2f} s of 3 ({', '.join(f'{t:.2f}' for t in times)})")


def _tiny_run(tmp: Path) -> Path:
    config = tmp / "tiny.json"
    config.write_text(json.dumps({"dataset": "synthetic", "preset": "mlp-small", "steps": 400, "sample_every": 20,
                                  "log_every": 10, "quality_every": 0, "device": "cpu"}))
    subprocess.run([sys.executable, "-m", "tui_gan.cli", "--headless", "--config", str(config),
                    "--runs-dir", str(tmp / "runs"), "--run-name", "bench"], cwd=ROOT, check=True, capture_output=True)
    return tmp / "runs" / "bench"


if __name__ == "__main__":
    main()
