"""The command line: one-line refusals, headless runs, signals that save before exiting."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_gan.cli import parse_options
from tui_gan.formatting import gan_tui_command

ROOT = Path(__file__).resolve().parents[1]


def gan_tui(*args, timeout=300, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "tui_gan.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs
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
        (["--runs-dir", "/tmp", "ls"], "ls is a subcommand and goes first: gan-tui ls"),
    ],
)
def test_bad_values_exit_non_zero_with_one_line(args, needle):
    result = gan_tui(*args, "--headless")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--dataset", "mnsit"], ["dataset: 'mnsit'", "did you mean mnist?", "mnist, fashion-mnist, kmnist, synthetic"]),
        (["--dataset", "/nonexistent/digits"], ["that path does not exist"]),
        (["--data-root", "/nonexistent/data"], ["data_root", "does not exist"]),
    ],
)
def test_a_dataset_that_cannot_work_is_refused_before_anything_starts(tmp_path, args, needles):
    result = gan_tui(*args, "--headless", "--runs-dir", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in needles), result.stderr
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_mistakes_are_answered_without_importing_torch():
    code = (
        "import sys\n"
        "from tui_gan.cli import main\n"
        "assert main(['--dataset', 'mnsit']) == 2\n"
        "assert main(['--lr-g', '-1']) == 2\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def _fake_run(runs: Path, name: str, state: str, step: int, pid: int = 1) -> Path:
    from engine.config import TrainConfig

    folder = runs / name
    folder.mkdir(parents=True)
    TrainConfig(dataset="synthetic", steps=step).save(folder / "config.json")
    (folder / "state.json").write_text(json.dumps({"state": state, "step": step, "pid": pid}))
    return folder


def test_resuming_a_finished_run_asks_for_more_steps(tmp_path):
    run = _fake_run(tmp_path, "done", "finished", 500)
    result = gan_tui("--headless", "--resume", str(run))
    assert result.returncode == 2 and "pass --steps N (more than 500)" in result.stderr, result.stderr
    result = gan_tui("--headless", "--resume", str(run), "--steps", "400")
    assert result.returncode == 2 and "must be more than 500" in result.stderr, result.stderr


@pytest.mark.parametrize("how", [["--resume", "{run}"], ["--detach", "--run-name", "live"], ["--run-name", "live"],
                                 ["--headless", "--run-name", "live"]])
def test_a_second_trainer_on_a_live_run_is_refused_and_touches_nothing(tmp_path, how):
    from engine.lock import RunLock

    run = _fake_run(tmp_path, "live", "running", 70, pid=os.getpid())
    (run / "control.sock").write_text("")  # stands for the live trainer's socket: it must survive
    lock = RunLock.acquire(run)  # this test process plays the live trainer
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    try:
        args = [a.format(run=run) for a in how]
        result = gan_tui(*args, "--dataset", "synthetic", "--runs-dir", str(tmp_path), timeout=60)
    finally:
        lock.release()
    assert result.returncode == 2, result.stderr
    line, = result.stderr.strip().splitlines()
    assert f"process {os.getpid()}" in line and gan_tui_command("attach", run) in line
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_without_a_terminal_the_dashboards_refuse_in_one_line_and_start_nothing(tmp_path):
    """stdin from /dev/null and stderr (where Textual draws) into a pipe (nohup, cron): no app that would spin unseen."""
    run = _fake_run(tmp_path, "done", "finished", 500)
    for argv, needle in ((["--dataset", "synthetic", "--runs-dir", str(tmp_path / "new")], "add --headless"),
                         (["compare", str(run)], "gan-tui compare: stdin and stderr are not a terminal")):
        result = gan_tui(*argv, stdin=subprocess.DEVNULL, timeout=60)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
        assert result.stdout == ""  # no escape codes
    assert not (tmp_path / "new").exists()


def test_the_terminal_check_names_what_is_missing():
    import io

    from tui_gan.terminal import no_terminal

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert no_terminal("gan-tui", "x", stdin=Tty(), stderr=Tty()) is None
    assert no_terminal("gan-tui", "use --headless", stdin=Tty(), stderr=io.StringIO()) == (
        "gan-tui: stderr is not a terminal, and the dashboard needs one; use --headless")


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
    assert "resumed at step 60" in more.stderr
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
    from tui_gan.cli.ls import format_table, list_runs

    run = RunDir.create(tmp_path, "judged", TrainConfig())
    run.append_log({"type": "quality", "step": 500, "fd": 25.0, "fd_floor": 10.0, "classes_covered": 9, "class_hist": [0.1] * 10})
    (row,) = list_runs(tmp_path)
    assert row["quality"] == "2.5x 9/10"
    assert "2.5x 9/10" in format_table([row])


def test_commands_to_paste_name_the_script_that_was_typed(monkeypatch, tmp_path):
    from tui_gan import formatting

    script = tmp_path / "venv" / "bin" / "gan-tui"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("UV_RUN_RECURSION_DEPTH", raising=False)
    monkeypatch.setattr(sys, "argv", [str(script), "--detach"])
    assert formatting.gan_tui_command("attach", "runs/x") == f"{script} attach runs/x"
    monkeypatch.setattr(sys, "argv", ["/somewhere/tui_gan/cli.py"])
    assert formatting.gan_tui_command("ls") == f"{sys.executable} -m tui_gan.cli ls"
