"""The command line: one-line refusals, headless runs, signals that save before exiting."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_gan.cli import parse_options

ROOT = Path(__file__).resolve().parents[1]


def gan_tui(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tui_gan.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs
    )


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "mlp", "lr_g": 0.01, "steps": 50}))
    opts = parse_options(["--config", str(path), "--lr-g", "0.0002", "--dataset", "fashion-mnist", "--headless"])
    assert (opts.config.preset, opts.config.lr_g, opts.config.steps) == ("mlp", 0.0002, 50)
    assert opts.config.dataset == "fashion-mnist" and opts.headless


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr-g", "-1"], "lr_g: -1.0 is not allowed"),
        (["--steps", "abc"], "--steps: 'abc' is not a whole number"),
        (["--preset", "vgg"], "invalid choice: 'vgg'"),
        (["--batch-size", "0"], "batch_size: 0 is not allowed"),
        (["--resume", "latest", "--runs-dir", "/nonexistent-runs"], "no runs in /nonexistent-runs"),
    ],
)
def test_bad_values_exit_non_zero_with_one_line(args, needle):
    result = gan_tui(*args, "--headless")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_bad_dataset_path_fails_before_training(tmp_path):
    result = gan_tui("--headless", "--dataset", str(tmp_path / "missing"), "--runs-dir", str(tmp_path))
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "step 1/" not in result.stderr


def test_headless_run_writes_the_run_folder(tmp_path, mnist_root):
    result = gan_tui(
        "--headless", "--dataset", "mnist", "--data-root", str(mnist_root), "--preset", "mlp-small",
        "--steps", "60", "--batch-size", "32", "--runs-dir", str(tmp_path), "--run-name", "r1",
    )
    assert result.returncode == 0, result.stderr
    run = tmp_path / "r1"
    assert "t10k" in result.stderr and str(run) in result.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 60 and all({"step", "d_loss", "g_loss", "images_per_s"} <= set(r) for r in records)
    assert (run / "config.json").is_file() and (run / "fixed_noise.pt").is_file()
    assert (run / "checkpoints" / "step_00000060.pt").is_file()
    assert any((run / "samples").glob("step_*.png"))
    # --resume latest with more steps continues from 60.
    more = gan_tui("--headless", "--resume", "latest", "--steps", "80", "--runs-dir", str(tmp_path))
    assert more.returncode == 0, more.stderr
    assert "resuming at step 60" in more.stderr
    assert (run / "checkpoints" / "step_00000080.pt").is_file()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_save_a_checkpoint_before_exiting(tmp_path, sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_gan.cli", "--headless", "--dataset", "synthetic", "--preset", "mlp-small",
         "--steps", "100000000", "--runs-dir", str(tmp_path), "--run-name", "s"],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    metrics = tmp_path / "s" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.stat().st_size > 0):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    checkpoints = list((tmp_path / "s" / "checkpoints").glob("step_*.pt"))
    assert checkpoints and "stopped at step" in err


def test_engine_never_imports_textual():
    code = (
        "import sys, engine.runner, engine.data, engine.checkpoint, engine.runs, engine.trainer\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'tui_gan', 'rich', 'textual_plotext')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
    for path in (ROOT / "engine").glob("*.py"):
        assert "textual" not in path.read_text() or path.name == "__init__.py", path


def test_ls_shows_the_last_quality_figures(tmp_path):
    from engine.config import TrainConfig
    from engine.runs import RunDir
    from tui_gan.runs_list import format_table, list_runs

    run = RunDir.create(tmp_path, "judged", TrainConfig())
    run.append_log({"type": "quality", "step": 500, "fd": 25.0, "fd_floor": 10.0, "classes_covered": 9, "class_hist": [0.1] * 10})
    (row,) = list_runs(tmp_path)
    assert row["quality"] == "2.5x 9/10"
    assert "2.5x 9/10" in format_table([row])
