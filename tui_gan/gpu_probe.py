"""Can `--device cuda[:N]` work on this machine? Answered before torch is imported (which takes seconds,
and then the data loads), from what the system shows: the NVIDIA driver's device files and its /proc
entries, CUDA_VISIBLE_DEVICES, and other GPU stacks torch may drive through its `cuda` API.

Only a certain "no" refuses. Anything the probe cannot judge (a ROCm or WSL GPU, GPUs named by UUID or
MIG instance, a non-Linux system) is left to torch, whose own refusal comes later and also exits 2.

    check_device("cuda:3")   # ConfigError: device: 'cuda:3' is not allowed; this machine has 2 NVIDIA GPUs (cuda:0, cuda:1); ...
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from engine.config import ConfigError

_DEVICE = re.compile(r"^cuda(?::(\d+))?$")
_NVIDIA_NODE = re.compile(r"^nvidia(\d+)$")  # /dev/nvidia0 ...; not nvidiactl, nvidia-uvm, nvidia-caps
# Where torch's `cuda` may reach a GPU without an NVIDIA device node: ROCm (/dev/kfd), WSL2 (/dev/dxg),
# Jetson boards (/dev/nvhost-*, /dev/nvmap). The probe does not count those: torch decides.
_OTHER_STACKS = ("kfd", "dxg", "nvmap", "nvhost-ctrl", "nvhost-ctrl-gpu")
_SMI_TIMEOUT_S = 3.0
_HINT = "use --device cpu, or auto (the GPU when there is one, else the CPU)"


def cuda_refusal(device: str, root: Path = Path("/"), env: Mapping[str, str] | None = None,
                 smi: bool = True) -> str | None:
    """Why `device` (a config's device value) cannot work here, as the end of a ConfigError line; None
    when it may (also for cpu and auto, and whenever the probe cannot be sure). `root` and `env` stand
    for the machine's / and environment (tests); `smi`: ask `nvidia-smi -L` when the driver's files are
    there but its GPU list is not (a container that mounts /dev but not /proc/driver/nvidia)."""
    found = _DEVICE.match(device)
    if found is None or not sys.platform.startswith("linux"):
        return None
    env = os.environ if env is None else env
    index = int(found.group(1) or 0)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU from this process; unset it, or {_HINT}"
    if any((root / "dev" / name).exists() for name in _OTHER_STACKS):
        return None
    count = _nvidia_count(root, smi)
    if count is None:
        return None
    if count == 0:
        return f"this machine has no NVIDIA GPU (no /dev/nvidia0, no driver); {_HINT}"
    seen = _visible_count(visible, count)
    if seen is None or index < seen:
        return None
    names = ", ".join(f"cuda:{i}" for i in range(seen)) or "none"
    where = f"CUDA_VISIBLE_DEVICES={visible!r} leaves {seen}" if visible is not None else f"this machine has {seen}"
    return f"{where} NVIDIA GPU{'' if seen == 1 else 's'} ({names}); pick one of them, or {_HINT}"


def check_device(device: str) -> None:
    """ConfigError (one line, exit status 2) when `device` certainly cannot work on this machine."""
    refusal = cuda_refusal(device)
    if refusal is not None:
        raise ConfigError("device", device, refusal)


# ------------------------------------------------------------------ helpers
def _nvidia_count(root: Path, smi: bool) -> int | None:
    """How many NVIDIA GPUs this machine (or container) holds; 0 when there is certainly none, None
    when that cannot be told without the driver."""
    gpus = root / "proc" / "driver" / "nvidia" / "gpus"
    try:
        listed = [p for p in gpus.iterdir() if p.is_dir()]
    except OSError:
        listed = []
    try:
        nodes = [p for p in (root / "dev").iterdir() if _NVIDIA_NODE.match(p.name)]
    except OSError:
        return None  # a /dev that cannot be read tells nothing
    if listed or nodes:
        # A container gets only its own GPUs' nodes (and, with the NVIDIA toolkit, /proc entries); a host
        # may create the nodes only at the first CUDA call. The larger count: a refusal must be certain.
        return max(len(listed), len(nodes))
    if (root / "dev" / "nvidiactl").exists():  # the driver, but no GPU node: ask it
        return _smi_count() if smi else None
    return 0


def _smi_count() -> int | None:
    """`nvidia-smi -L`'s GPU lines, within a few seconds; None when it is not there or says nothing usable."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    try:
        out = subprocess.run([program, "-L"], capture_output=True, text=True, timeout=_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _visible_count(visible: str | None, count: int) -> int | None:
    """The GPUs CUDA enumerates under CUDA_VISIBLE_DEVICES (None: not told by index, e.g. UUIDs or MIG)."""
    if visible is None:
        return count
    seen: list[int] = []
    for entry in visible.split(","):
        entry = entry.strip()
        if not entry.isdigit():
            # CUDA stops at the first entry it cannot use; a UUID (GPU-..., MIG-...) is one it can.
            return None if entry[:4] in ("GPU-", "MIG-") else len(seen)
        if int(entry) >= count or int(entry) in seen:
            return len(seen)  # an index past the GPUs (or a repeat) ends the list, as CUDA reads it
        seen.append(int(entry))
    return len(seen)
