"""Where a sweep's trials run, checked before anything starts: this machine, or the Ray cluster at --address.

    cpus, gpus = local_resources()                  # no Ray, no torch: os and /proc
    check_fits(spec, cpus, gpus, "this machine")    # SweepError: trials that could never be scheduled
    info = probe_cluster(address, marker)            # a short-lived Ray client in a subprocess (~30 s at most)

A local sweep starts a Ray of its own, bound to 127.0.0.1 (LOCAL_RAY_ENV, set before Ray is imported:
with it Ray takes the loopback address as the node's, and its GCS, raylet, workers and agents listen
there only) and never joins a cluster the machine knows of (`ray.init(address="local")` ignores
RAY_ADDRESS and /tmp/ray/ray_current_cluster). A sweep on a cluster (--address) is probed in a
subprocess first, so a wrong address, a missing token or a node that cannot see the runs folder is
one line before the sweep folder or the driver exist:

    python -m engine.sweep.cluster ADDRESS [MARKER_FILE]   # one JSON line on stdout

It connects like the driver will (same environment: RAY_AUTH_MODE, RAY_AUTH_TOKEN[_PATH]), reads
every alive node's CPUs and GPUs and, with a marker, runs one task pinned to each node that reads the
marker file (its path and a random content): a node that cannot see the sweep folder is named.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.sweep.spec import SweepError, SweepSpec

#: The environment a local sweep's driver imports Ray with: loopback only (Ray's own switch; on Linux
#: it is on by default and makes every service listen on all interfaces).
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PROBE_TIMEOUT_S = 30.0
TOKEN_HELP = ("the cluster uses Ray's token authentication: export RAY_AUTH_MODE=token and give this machine "
              "the head's token (~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH=FILE, or RAY_AUTH_TOKEN=TOKEN; "
              "`ray get-auth-token` prints it on the head)")
_NODE_CHECK_TIMEOUT_S = 60.0
_PROBE_ENV = {"RAY_NUM_REDIS_GET_RETRIES": "8", "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
              "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


@dataclass(frozen=True)
class ClusterInfo:
    """What the probe found: each alive node's name, CPUs and GPUs, and the nodes that cannot see the marker."""

    nodes: tuple[tuple[str, float, float], ...]
    blind: tuple[str, ...] = ()

    @property
    def max_cpus(self) -> float:
        return max((cpus for _, cpus, _ in self.nodes), default=0.0)

    @property
    def max_gpus(self) -> float:
        return max((gpus for _, _, gpus in self.nodes), default=0.0)


def local_resources() -> tuple[int, int | None]:
    """(CPUs, GPUs) of this machine as the sweep's own Ray is given them. GPUs: NVIDIA cards the driver
    lists (/proc/driver/nvidia/gpus, else /dev/nvidiaN) narrowed by CUDA_VISIBLE_DEVICES; None when a
    GPU of another kind may be there (ROCm's /dev/kfd): then Ray counts them itself."""
    cpus = os.cpu_count() or 1
    found = _nvidia_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for part in visible.split(","):
            if not part.strip() or part.strip().startswith("-"):
                break  # CUDA stops at the first invalid entry
            ids.append(part)
        found = min(found, len(ids)) if found else 0
    if not found and Path("/dev/kfd").exists():
        return cpus, None
    return cpus, found


def check_fits(spec: SweepSpec, cpus: float, gpus: float | None, where: str) -> None:
    """SweepError when one trial needs more than a single node (`where`) has: Ray would keep it pending for good."""
    if spec.cpus_per_trial > cpus:
        raise SweepError(f"--cpus-per-trial {spec.cpus_per_trial:g} but {where} has {cpus:g} CPUs: "
                         "no trial could ever start")
    if gpus is not None and spec.gpus_per_trial > gpus:
        has = f"{gpus:g} GPUs" if gpus else "no GPU"
        raise SweepError(f"--gpus-per-trial {spec.gpus_per_trial:g} but {where} has {has}: no trial could ever "
                         f"start" + ("" if gpus else " (leave --gpus-per-trial out to train on the CPUs)"))


def probe_cluster(address: str, marker: Path | None = None, timeout: float = PROBE_TIMEOUT_S) -> ClusterInfo:
    """Connect to the cluster at `address` as the driver will (in a subprocess), within `timeout`
    seconds; SweepError (one line, naming the fix) when it cannot be reached, refuses this client's
    token, or, with `marker`, has a node that cannot read that file."""
    argv = [sys.executable, "-m", "engine.sweep.cluster", address] + ([str(marker)] if marker else [])
    env = {**os.environ, **_PROBE_ENV}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + _NODE_CHECK_TIMEOUT_S * bool(marker),
                              env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SweepError(f"--address {address}: the Ray cluster did not answer within {timeout:.0f} s; check the "
                         "address (`ray status` on the head prints it) and that this machine can reach it") from None
    found = _last_json(done.stdout)
    if found is None:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SweepError(f"--address {address}: the cluster could not be checked: {tail[:300]}")
    if not found.get("ok"):
        raise SweepError(f"--address {address}: {found.get('message', 'the cluster could not be reached')}")
    info = ClusterInfo(tuple((n["name"], float(n["cpus"]), float(n["gpus"])) for n in found["nodes"]),
                       tuple(found.get("blind", ())))
    if info.blind:
        raise SweepError(f"{info.blind[0]} cannot see the sweep folder {marker.parent if marker else ''}: put the "
                         "runs folder on a file system every node mounts at the same path (--runs-dir)")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    """The probe's subprocess: one JSON line on stdout, whatever happens."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = _probe(args[0], Path(args[1]) if len(args) > 1 else None)
    except Exception as exc:  # noqa: BLE001 - the answer is a line the command turns into its message
        result = {"ok": False, "message": _explain(exc)}
    print(json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------ helpers
def _probe(address: str, marker: Path | None) -> dict[str, Any]:
    import socket

    host, _, port = address.rpartition(":")
    try:  # a plain TCP connection first: an address nobody answers is said in seconds, not after Ray's retries
        if "://" not in address:  # ray://HOST:PORT (Ray Client) is left to Ray
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
    except ValueError:
        return {"ok": False, "message": "use HOST:PORT, the head's address (`ray status` on the head prints it)"}
    except OSError as exc:
        return {"ok": False, "message": f"nothing answers there ({exc.strerror or exc}); start the head with "
                                        "`ray start --head --port=PORT`, or fix the address"}
    import ray

    ray.init(address=address, log_to_driver=False, include_dashboard=False)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        out = [{"name": _node_name(n), "cpus": n["Resources"].get("CPU", 0.0), "gpus": n["Resources"].get("GPU", 0.0)}
               for n in nodes]
        blind = _blind_nodes(nodes, marker) if marker is not None else []
    finally:
        ray.shutdown()
    return {"ok": True, "nodes": out, "blind": blind}


def _blind_nodes(nodes: list[dict[str, Any]], marker: Path) -> list[str]:
    """The nodes (by name) whose task does not read the marker's exact content at its path."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    expected = marker.read_text()
    reader = ray.remote(num_cpus=0)(_read_marker)
    refs = [reader.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(marker))
            for n in nodes]
    blind = []
    for node, ref in zip(nodes, refs):
        try:
            seen = ray.get(ref, timeout=_NODE_CHECK_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a node that cannot run the check cannot run trials either
            blind.append(f"node {_node_name(node)} (its check failed: {_explain(exc)})")
            continue
        if seen != expected:
            blind.append(f"node {_node_name(node)}")
    return blind


def _read_marker(path: str) -> str:
    """Runs on one node: the marker's content as that node sees it ("" when it cannot)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _node_name(node: dict[str, Any]) -> str:
    return f"{node.get('NodeManagerHostname') or node.get('NodeManagerAddress', '?')} " \
           f"({node.get('NodeManagerAddress', '?')}, id {str(node.get('NodeID', ''))[:8]})"


def _explain(exc: BaseException) -> str:
    """One line for a failed connection; a refused token (Ray says only "Failed to connect") is named."""
    text = f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}"
    if type(exc).__name__ == "AuthenticationError" or re.search(r"Unauthenticated|InvalidAuthToken|authentication token",
                                                                 text, re.I):
        return TOKEN_HELP
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {first[:300]}"


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            found = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(found, dict):
            return found
    return None


def _nvidia_gpus() -> int:
    listed = Path("/proc/driver/nvidia/gpus")
    if listed.is_dir():
        return sum(1 for _ in listed.iterdir())
    return sum(1 for p in Path("/dev").glob("nvidia*") if p.name[6:].isdigit())


if __name__ == "__main__":
    raise SystemExit(main())
