"""Notifications: real runs and real processes send to a real local HTTP server (Apprise's json://
webhook), a URL's tokens never reach a run folder or the output, a webhook that is down or never
answers costs the run nothing, and the options are read from flags, a --config file and the environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.notify_targets import DEFAULT_ON, child_env, mask
from tests.conftest import tiny_config
from tui_gan.options import parse_options, without_notify_urls

ROOT = Path(__file__).resolve().parents[1]
SECRETS = (b"SECRET-PASSWORD", b"SECRET-TOKEN")
TINY = {"g_hidden": [32], "d_hidden": [32], "latent_dim": 8, "batch_size": 16, "num_samples": 16, "device": "cpu",
        "amp": "off", "quality_every": 0, "log_every_s": 0.0, "sample_every_s": 0.0}


class Webhook:
    """A real HTTP server on 127.0.0.1 (port 0): records each POST's JSON, answers `status`, or never (`hang`)."""

    def __init__(self, hang: bool = False) -> None:
        self.received: list[tuple[str, dict]] = []
        self.status = 200
        self.hang = hang
        self.answered = 0
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append((self.path, json.loads(body)))
                if hook.hang:
                    hook.release.wait(120)
                    return
                self.send_response(hook.status)
                self.end_headers()
                hook.answered += 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook", secret: bool = False) -> str:
        auth = "user:SECRET-PASSWORD@" if secret else ""
        query = "?token=SECRET-TOKEN" if secret else ""
        return f"json://{auth}127.0.0.1:{self.port}{path}{query}"

    def titles(self, path: str | None = None) -> list[str]:
        return [body["title"] for p, body in self.received if path is None or p == path]

    def bodies(self, path: str | None = None) -> list[str]:
        return [body["message"] for p, body in self.received if path is None or p == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def gan_tui(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GAN_TUI_NOTIFY")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tui_gan.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def tiny_config_file(folder: Path, **extra: object) -> Path:
    path = folder / "tiny.json"
    path.write_text(json.dumps({**TINY, **extra}))
    return path


def assert_no_secret_in(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert not any(s in data for s in SECRETS), path


# ------------------------------------------------------------ real processes
def test_a_finished_run_sends_one_message_per_url_and_no_token_reaches_the_folder_or_the_output(tmp_path, webhook):
    config = tiny_config_file(tmp_path, tensorboard=True, notify=[webhook.url("/from-config", secret=True)])
    env = {"GAN_TUI_NOTIFY": webhook.url("/from-env", secret=True)}
    result = gan_tui("--headless", "--config", str(config), "--dataset", "synthetic", "--preset", "mlp-small",
                     "--steps", "40", "--runs-dir", str(tmp_path / "runs"), "--run-name", "fin",
                     "--notify", webhook.url("/from-flag", secret=True), env=env)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "fin"
    for path in ("/from-flag", "/from-config", "/from-env"):
        assert webhook.titles(path) == ["fin finished"]
        (body,) = webhook.bodies(path)
        assert "finished at step 40/40" in body and str(run) in body and "--resume" in body and "export" in body
    assert any(run.glob("events.out.tfevents.*"))  # TensorBoard's files are searched too
    assert_no_secret_in(run)
    assert not any(s.decode() in result.stdout + result.stderr for s in SECRETS)
    # A resume gets the URL again from the environment alone.
    more = gan_tui("--headless", "--resume", str(run), "--steps", "60", env=env)
    assert more.returncode == 0, more.stderr
    assert webhook.titles("/from-env") == ["fin finished", "fin finished"]
    assert "finished at step 60/60" in webhook.bodies("/from-env")[-1]
    assert_no_secret_in(run)


def test_a_webhook_that_is_down_or_never_answers_leaves_the_run_and_its_exit_status_alone(tmp_path):
    hanging = Webhook(hang=True)
    try:
        down = f"json://127.0.0.1:{closed_port()}/hook"
        result = gan_tui("--headless", "--config", str(tiny_config_file(tmp_path)), "--dataset", "synthetic",
                         "--preset", "mlp-small", "--steps", "40", "--runs-dir", str(tmp_path / "runs"),
                         "--run-name", "slow", "--notify", down, "--notify", hanging.url())
        assert result.returncode == 0, result.stderr
        assert "finished at step 40" in result.stderr
        # The run finished while the server never answered: it got the message and is still holding it.
        assert hanging.received and hanging.answered == 0 and not hanging.release.is_set()
        assert result.stderr.count("are not getting through") == 1  # the closed port: one note, not one per try
        assert f"notifications to {mask(down)} are not getting through" in result.stderr
        assert "the run has ended, so nothing more is sent" in result.stderr  # no "training goes on" after the end
    finally:
        hanging.close()


def test_a_failed_run_sends_one_failed_message_with_its_name(tmp_path, webhook):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = gan_tui("--headless", "--config", str(tiny_config_file(tmp_path)), "--dataset", str(empty),
                     "--preset", "mlp-small", "--runs-dir", str(tmp_path / "runs"), "--run-name", "broken",
                     env={"GAN_TUI_NOTIFY": webhook.url()})
    assert result.returncode == 2  # a folder without images is the user's to fix (issue 25): exit status 2
    assert webhook.titles() == ["broken failed"]
    assert str(empty) in webhook.bodies()[0] and "before training started" in webhook.bodies()[0]


def test_a_detached_run_gets_the_url_in_its_environment_not_its_command_line(tmp_path, webhook):
    runs = tmp_path / "runs"
    result = gan_tui("--detach", "--config", str(tiny_config_file(tmp_path)), "--dataset", "synthetic",
                     "--preset", "mlp-small", "--steps", "100000000", "--runs-dir", str(runs), "--run-name", "bg",
                     "--notify", webhook.url(secret=True))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("(pid ")[1].split(")")[0])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"--headless" in cmdline and b"127.0.0.1" not in cmdline and not any(s in cmdline for s in SECRETS)
    deadline = time.monotonic() + 120
    while not (runs / "bg" / "metrics.jsonl").is_file() or not (runs / "bg" / "metrics.jsonl").stat().st_size:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while not webhook.received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert webhook.titles() == ["bg stopped by SIGTERM"]
    assert "Newest checkpoint: " in webhook.bodies()[0] and "--resume" in webhook.bodies()[0]
    assert_no_secret_in(runs / "bg")  # train.log holds the trainer's whole output


def test_notify_test_says_per_url_whether_it_was_delivered(webhook):
    down = f"json://127.0.0.1:{closed_port()}/x"
    ok = gan_tui("notify-test", webhook.url(secret=True))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{mask(webhook.url())}: sending... delivered"
    assert webhook.titles() == ["gan-tui test message"]
    assert not any(s.decode() in ok.stdout + ok.stderr for s in SECRETS)
    mixed = gan_tui("notify-test", webhook.url(), down)
    assert mixed.returncode == 1
    assert f"{mask(down)}: sending... NOT delivered (refused or unreachable; 3 tries)" in mixed.stdout
    bad = gan_tui("notify-test", "nosuchservice://SECRET-TOKEN/x")
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "SECRET-TOKEN" not in bad.stderr
    from_env = gan_tui("notify-test", env={"GAN_TUI_NOTIFY": webhook.url()})
    assert from_env.returncode == 0 and "delivered" in from_env.stdout


def test_bad_notify_options_are_one_line_and_exit_2_before_anything_starts(tmp_path):
    for args, env, needle in (
        (["--notify-on", "finished,sometimes"], {}, "notify-on: 'sometimes' is not allowed; use a comma list of "
                                                     "finished, failed, alarms, changes (or all)"),
        (["--notify", "nosuchservice://SECRET-TOKEN@example.com/x"], {}, "notify: 'nosuchservice://example.com' is not allowed"),
        ([], {"GAN_TUI_NOTIFY": "json://127.0.0.1:9/ok nosuchservice://SECRET-TOKEN/x"}, "Apprise cannot read this URL"),
        ([], {"GAN_TUI_NOTIFY_ON": "never"}, "GAN_TUI_NOTIFY_ON: 'never' is not allowed"),
        (["--notify-on", "finished"], {"GAN_TUI_NOTIFY": ""}, "with no URL to send to; add --notify URL"),
    ):
        result = gan_tui("--headless", "--dataset", "synthetic", "--runs-dir", str(tmp_path), *args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "SECRET" not in lines[0], lines
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ in-process runs
def served_run(tmp_path, synthetic_data, **changes):
    from engine.serve import ServedRun

    return ServedRun(tiny_config(steps=10**6, log_every=1, checkpoint_every=10, **changes), tmp_path / "runs", "live",
                     data=synthetic_data)


def run_to(runner, step):
    while runner.trainer.step < step and runner.tick():
        pass
    runner.settle()


def run_until_paused(runner):
    from engine import events as ev

    for _ in range(20):
        runner.tick()
        if runner.state == ev.RunState.PAUSED:
            break
    runner.settle()


def drive_to_end(served):
    from engine import commands as cmd

    served.runner.submit(cmd.Stop(save=True))
    while served.runner.tick():
        pass
    served.close()


def test_alarms_rollbacks_changes_and_a_stop_are_each_sent_once_by_category(tmp_path, synthetic_data, webhook):
    import torch

    from engine import commands as cmd
    from engine import events as ev
    from engine.notify import attach
    from engine.notify_sender import wait_idle

    served = served_run(tmp_path, synthetic_data)
    attach(served, [webhook.url("/default")], DEFAULT_ON)
    attach(served, [webhook.url("/changes")], {"changes"})
    runner = served.runner
    runner.setup()
    run_to(runner, 12)
    with torch.no_grad():
        next(runner.trainer.D.parameters()).view(-1)[0] = float("nan")
    run_until_paused(runner)
    assert runner.state == ev.RunState.PAUSED
    runner.submit(cmd.RollBack("last-good", lr_scale=0.5))
    runner.tick()
    assert wait_idle(60)  # the rollback's own change (its learning rates halved) went out
    for lr in (1e-4, 2e-4, 3e-4):
        runner.submit(cmd.SetHyperparams({"lr_d": lr}))
    runner.tick()
    runner.settle()
    drive_to_end(served)
    assert wait_idle(60)
    assert webhook.titles("/default") == ["live: alarm nonfinite", "live rolled back to step 10", "live stopped"]
    alarm, rollback, stopped = webhook.bodies("/default")
    assert "alarm nonfinite at step 13" in alarm and "NaN/inf" in alarm and "attach" in alarm
    assert "from step 13 to step 10 (step_00000010.pt); it goes on with lr_g 0.0001, lr_d 0.0004" in rollback
    assert "stopped from a dashboard" in stopped and "--resume" in stopped
    # The first change goes out at once; the rest wait out the minute and are summed up at the end.
    assert webhook.titles("/changes") == ["live: hyperparameters changed"] * 2
    first, rest = webhook.bodies("/changes")
    assert "1 change of its hyperparameters" in first and "lr_g 0.0002 -> 0.0001" in first
    assert "3 changes" in rest and "lr_d 0.0004 -> 0.0003" in rest


def test_a_webhook_going_down_and_coming_back_is_one_note_each_in_the_run_log(tmp_path, synthetic_data, webhook):
    import torch

    from engine import commands as cmd
    from engine import events as ev
    from engine.notify import attach
    from engine.notify_sender import wait_idle

    served = served_run(tmp_path, synthetic_data)
    events = []
    served.listen(events.append)
    attach(served, [webhook.url(secret=True)], {"changes", "alarms"})
    runner = served.runner
    runner.setup()
    webhook.status = 500
    runner.submit(cmd.SetHyperparams({"lr_g": 1e-4}))  # sent at once, and refused on every try
    run_to(runner, 3)
    assert wait_idle(60)
    webhook.status = 200
    with torch.no_grad():
        next(runner.trainer.D.parameters()).view(-1)[0] = float("nan")
    run_until_paused(runner)  # the nonfinite alarm goes out at once, and gets through
    assert wait_idle(60)
    for _ in range(3):
        runner.tick()  # the notes are written by the runner, on its own thread
    drive_to_end(served)
    assert webhook.titles() == ["live: hyperparameters changed"] * 3 + ["live: alarm nonfinite"]
    notes = [e.message for e in events if isinstance(e, ev.WarningRaised) and e.kind == "notify"]
    assert notes == [f"notifications to {mask(webhook.url())} are not getting through (the service answered "
                     "HTTP 500; 3 tries); training goes on, later messages are still tried, and a note says when "
                     "they get through again", f"notifications to {mask(webhook.url())} get through again"]
    log = (tmp_path / "runs" / "live" / "metrics.jsonl").read_text()
    assert log.count("are not getting through") == 1 and log.count(f"{mask(webhook.url())} get through again") == 1
    assert_no_secret_in(tmp_path / "runs" / "live")


def test_a_sweep_trial_notifies_with_the_drivers_settings_and_the_sweep_end_names_the_best_trial(
        tmp_path, synthetic_data, webhook, monkeypatch):
    from engine.notify import attach_trial, notify_sweep_end, trial_settings
    from engine.notify_sender import wait_idle
    from engine.serve import ServedRun
    from engine.sweep.spec import SweepSpec, SweepStatus

    spec = SweepSpec(name="sweep", sweep_dir=str(tmp_path / "sweep"), config=tiny_config().to_dict(), trials=2)
    monkeypatch.delenv("GAN_TUI_NOTIFY", raising=False)
    assert trial_settings()[0] == ()
    monkeypatch.setenv("GAN_TUI_NOTIFY", webhook.url(secret=True))
    monkeypatch.setenv("GAN_TUI_NOTIFY_ON", "finished,changes")
    settings = trial_settings()  # what the driver hands every trial through Ray's object store
    assert settings == ((webhook.url(secret=True),), ("changes", "finished"))
    monkeypatch.delenv("GAN_TUI_NOTIFY")  # a trial on another node: nothing in its environment
    served = ServedRun(tiny_config(steps=8), tmp_path / "sweep", "trial-001", data=synthetic_data)
    assert attach_trial(served, settings, sweep="sweep") is not None
    served.runner.setup()
    while served.runner.tick():
        pass
    served.close()
    status = SweepStatus(state="finished", trials={"trial-000": {"status": "TERMINATED"},
                                                   "trial-001": {"status": "TERMINATED"}},
                         best={"trial": "trial-001", "fd_ratio": 3.02, "step": 8,
                               "config": {"lr_g": 0.000412, "lr_d": 0.000187}})
    monkeypatch.setenv("GAN_TUI_NOTIFY", webhook.url(secret=True))  # the driver's own environment
    assert notify_sweep_end(spec, status)
    assert wait_idle(10)
    assert webhook.titles() == ["sweep/trial-001 finished", "sweep sweep finished"]
    end = webhook.bodies()[1]
    assert "2 trials (2 terminated)" in end and "best: trial-001 FD/floor 3.02x at step 8" in end
    assert str(tmp_path / "sweep") in end
    assert_no_secret_in(tmp_path / "sweep")


# --------------------------------------------------------------- parsing
def test_urls_come_from_flags_the_config_file_and_the_environment_each_once(tmp_path, monkeypatch):
    config = tiny_config_file(tmp_path, notify=["json://127.0.0.1:9/file", "json://127.0.0.1:9/both"])
    monkeypatch.setenv("GAN_TUI_NOTIFY", "json://127.0.0.1:9/env  json://127.0.0.1:9/both")
    monkeypatch.delenv("GAN_TUI_NOTIFY_ON", raising=False)
    opts = parse_options(["--config", str(config), "--notify", "json://127.0.0.1:9/flag", "--headless"])
    assert opts.notify == ("json://127.0.0.1:9/flag", "json://127.0.0.1:9/file", "json://127.0.0.1:9/both",
                           "json://127.0.0.1:9/env")
    assert opts.notify_on == DEFAULT_ON
    assert "notify" not in opts.config.to_dict() and "127.0.0.1" not in repr(opts)
    assert parse_options(["--notify-on", "all", "--headless"]).notify_on == {"finished", "failed", "alarms", "changes"}
    assert parse_options(["--notify-on", "Changes, failed", "--headless"]).notify_on == {"changes", "failed"}
    monkeypatch.setenv("GAN_TUI_NOTIFY_ON", "alarms")
    assert parse_options(["--headless"]).notify_on == {"alarms"}
    assert parse_options(["--notify-on", "finished", "--headless"]).notify_on == {"finished"}  # the flag wins
    (tmp_path / "bad.json").write_text(json.dumps({"notify": {"url": "json://SECRET-TOKEN@h/x"}}))
    with pytest.raises(ConfigError) as info:
        parse_options(["--config", str(tmp_path / "bad.json"), "--headless"])
    assert "SECRET" not in str(info.value) and "list of Apprise URLs" in str(info.value)


def test_a_child_gets_the_urls_in_its_environment_and_not_its_arguments():
    argv = ["--notify", "json://a/x", "--steps", "5", "--notify=json://b/y", "--notify-on", "all"]
    assert without_notify_urls(argv) == ["--steps", "5", "--notify-on", "all"]
    assert child_env(["json://a/x", "json://b/y"], {"alarms", "finished"}) == {
        "GAN_TUI_NOTIFY": "json://a/x json://b/y", "GAN_TUI_NOTIFY_ON": "finished,alarms"}
    assert child_env([], DEFAULT_ON) == {}


@pytest.mark.parametrize("url,shown", [
    ("json://user:SECRET-PASSWORD@127.0.0.1:8080/hook?token=SECRET-TOKEN", "json://127.0.0.1:8080"),
    ("mailto://me:SECRET-PASSWORD@gmail.com", "mailto://gmail.com"),
    ("https://hooks.slack.com/services/T0/B0/SECRET-TOKEN", "https://hooks.slack.com"),
    ("tgram://123456789:SECRET-TOKEN/chat", "tgram://1...9"),
    ("ntfy://SECRET-TOKEN", "ntfy://S...N"),
    ("SECRET-TOKEN", "(not a URL: it has no scheme://)"),
])
def test_a_url_is_shown_as_its_scheme_and_host_only(url, shown):
    assert mask(url) == shown
