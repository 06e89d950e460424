"""The README's cluster recipe on a real two-node Ray cluster on this machine, with Ray's token
authentication: the head from `ray start --head`, a second node joining it, both on 127.0.0.1.

The second node runs in a mount namespace of its own with a tmpfs over one folder, so that folder is
a runs folder it cannot see (as on a worker whose NFS mount is missing). `ray start --address` refuses
to start a node with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with it =1 Ray moves the node off
127.0.0.1 onto every interface; so the second node is started through Ray's own Node class (as
ray.cluster_utils does), loopback only. Needs Ray, `unshare -m` and mount (root in a container).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.tune")

from engine.sweep.spec import SweepStatus  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402
from tests.test_sweep_faults import cache_untrained_judge, records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RAY = str(Path(sys.executable).parent / "ray")
SECOND_NODE = """
import sys, time
from ray._private.node import Node
from ray._private.parameter import RayParams
params = RayParams(gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=1, num_gpus=0,
                   include_log_monitor=False, node_manager_port=0, dashboard_agent_listen_port=None,
                   object_store_memory=100 * 1024 * 1024)
node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
print("node", node.node_id, flush=True)
while True:
    time.sleep(3600)
"""


def _can_unshare() -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(shutil.which("unshare") is None or not _can_unshare(),
                                reason="needs `unshare -m` and mount to give one node a folder it cannot see")


@pytest.fixture
def cluster(tmp_path):
    """A head and a second node with token authentication, both on 127.0.0.1; the second cannot see `hidden`."""
    token = tmp_path / "token"
    token.write_text("gan-tui-test-token-" + os.urandom(8).hex())
    ray_tmp = Path(tempfile.mkdtemp(prefix="gc", dir="/tmp"))  # short: Ray's socket paths must fit AF_UNIX
    home = tmp_path / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNE_"))}
    base.update(PYTHONPATH=str(ROOT), HOME=str(home), RAY_TMPDIR=str(ray_tmp), XDG_CACHE_HOME=str(tmp_path / "cache"),
                RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
                RAY_worker_niceness="0")
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    hidden, visible = tmp_path / "hidden", tmp_path / "visible"
    hidden.mkdir()
    visible.mkdir()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    logs = [open(tmp_path / name, "wb") for name in ("head.log", "node.log")]
    nodes = [subprocess.Popen([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                               "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", "--block"],
                              env={**base, **auth}, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        _wait_for_port(port, nodes[0], tmp_path / "head.log")
        nodes.append(subprocess.Popen(
            ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$1" -c "$2" "$3"',
             str(hidden), PYTHON, SECOND_NODE, address],
            env={**base, **auth}, stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 120
        while len(_probe(address, {**base, **auth}).get("nodes", [])) < 2:
            assert nodes[1].poll() is None, (tmp_path / "node.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the second node did not join"
            time.sleep(1)
        second = (tmp_path / "node.log").read_text().split("node ", 1)[1].split()[0]
        yield {"address": address, "client": base, "auth": auth, "hidden": hidden, "visible": visible, "second": second}
    finally:
        for node in reversed(nodes):  # `ray start --block` and Node stop their processes on SIGTERM
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
        for log in logs:
            log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_cluster_recipe_with_token_authentication_and_a_node_that_cannot_see_the_runs_folder(cluster, tmp_path):
    config = tmp_path / "tiny.json"
    tiny_config(steps=20, quality_every=10, quality_samples=100, checkpoint_every=0).save(config)
    cache_untrained_judge(Path(cluster["client"]["XDG_CACHE_HOME"]))

    def sweep(runs: Path, env: dict[str, str], name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "tui_gan.cli", "sweep", "--config", str(config), "--runs-dir", str(runs), "--trials", "2",
             "--parallel", "2", "--lr-d", "2e-4", "--address", cluster["address"], "--sweep-name", name, "--headless"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)

    # Without the token: one line that names the fix.
    done = sweep(cluster["visible"] / "runs", cluster["client"], "no-token")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "RAY_AUTH_MODE=token" in done.stderr and "auth_token" in done.stderr
    assert not (cluster["visible"] / "runs" / "no-token").exists()

    # With it, on a runs folder the second node cannot see: refused, naming that node.
    with_token = {**cluster["client"], **cluster["auth"]}
    done = sweep(cluster["hidden"] / "runs", with_token, "blind")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot see the sweep folder" in done.stderr and cluster["second"][:8] in done.stderr
    assert not (cluster["hidden"] / "runs" / "blind").exists()  # no stray folder

    # As the README says it: a shared folder and the token: two trials, one on each node's CPU.
    done = sweep(cluster["visible"] / "runs", with_token, "both")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    sweep_dir = cluster["visible"] / "runs" / "both"
    assert SweepStatus.load(sweep_dir).state == "finished"
    for trial in ("trial-000", "trial-001"):
        assert json.loads((sweep_dir / trial / "state.json").read_text())["state"] == "finished"
        assert any(r.get("type") == "quality" for r in records(sweep_dir / trial))


# ------------------------------------------------------------------ helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the head did not start"
            time.sleep(0.5)


def _probe(address: str, env: dict[str, str]) -> dict:
    done = subprocess.run([PYTHON, "-m", "engine.sweep.cluster", address], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}
