"""The training device: which one, what precision it does well, what it holds, and what its errors mean.

Pure decisions (`amp_dtype_for`, `parse_device`) take plain values so they can be tested on any
machine; the functions that ask torch about a real GPU are thin wrappers around them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from engine.config import DEVICE_FORMAT, ConfigError

# Compute capabilities: bf16 tensor cores arrived with Ampere (8.0); fp16 ones with Volta (7.0).
# Older cards emulate bf16 slowly and have slow fp16, so there full precision is the faster choice.
_BF16_FROM = (8, 0)
_FP16_FROM = (7, 0)
# The amp settings that name a dtype, and the words viewers and benchmarks show for them.
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Phrases of CUDA errors after which the context is unusable: every later CUDA call fails too.
_STICKY = ("illegal memory access", "device-side assert", "illegal instruction", "unspecified launch failure",
           "misaligned address", "an illegal", "CUDA error: unknown error", "uncorrectable ECC")


@dataclass(frozen=True)
class MemoryReading:
    """GPU memory in MiB: what tensors hold, what the caching allocator reserved, the card's total."""

    allocated_mb: float
    reserved_mb: float
    total_mb: float
    peak_mb: float


# ------------------------------------------------------------------ choice
def resolve_device(name: str) -> torch.device:
    """The torch device for a config value: 'auto' picks CUDA when present; a missing GPU is a ConfigError."""
    if not DEVICE_FORMAT.match(name):
        raise ConfigError("device", name, "use auto, cpu, cuda or cuda:N (N a GPU index)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError("device", name, "torch sees no CUDA GPU here; use cpu or auto")
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= count:
        seen = ", ".join(f"cuda:{i}" for i in range(count))
        raise ConfigError("device", name, f"torch sees {count} CUDA GPU{'s' if count > 1 else ''} here ({seen})")
    return torch.device("cuda", index)


def amp_dtype_for(amp: str, device_type: str, capability: tuple[int, int] | None,
                  cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype for an amp setting on a device (None: full precision). Pure.

    auto: bf16 on CUDA GPUs of compute capability 8.0 and up, fp16 on 7.x, off on older ones; on the
    CPU bf16 where it has bf16 instructions (`cpu_bf16`, see cpu_has_bf16), else off. An explicit
    bf16 or fp16 is honoured as asked.
    """
    if amp == "off":
        return None
    if amp in _AMP_DTYPES:
        return _AMP_DTYPES[amp]
    if device_type == "cpu":
        return torch.bfloat16 if cpu_bf16 else None
    if device_type != "cuda" or capability is None:
        return None
    if capability >= _BF16_FROM:
        return torch.bfloat16
    if capability >= _FP16_FROM:
        return torch.float16
    return None


def cpu_has_bf16(capabilities: Mapping[str, object] | None = None) -> bool:
    """Whether this x86 CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX): there bf16 autocast
    trained cond-mlp 1.3-1.5x faster and drew better digits in the same minutes (bench/quality.py's
    notes); without them bf16 is emulated and slower than fp32."""
    if capabilities is None:
        try:
            capabilities = torch.cpu.get_capabilities()
        except (AttributeError, RuntimeError):  # a torch without the query: assume not
            return False
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def capability(device: torch.device) -> tuple[int, int] | None:
    """The chosen GPU's compute capability (not the current device's); None off CUDA."""
    if device.type != "cuda":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return (major, minor)


def precision_name(amp_dtype: torch.dtype | None) -> str:
    """'bf16' or 'fp16' for an autocast dtype (the amp setting's word), 'fp32' for full precision."""
    return next((name for name, dtype in _AMP_DTYPES.items() if dtype == amp_dtype), "fp32")


def device_name(device: torch.device, precision: torch.dtype | None = None) -> str:
    """'NVIDIA H100 80GB HBM3', or 'CPU'; with an autocast `precision`: 'CPU, bf16'."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return name if precision is None else f"{name}, {precision_name(precision)}"


def training_threads(requested: int, cores: int | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """CPU threads for the training step: `requested`; for 0 (auto) what OMP_NUM_THREADS says when a
    launcher set it (Ray gives each trial its share that way), else all usable cores but one, at least 1.

    The spare core is for the run's side work (the quality worker, the writers, the control socket)
    and the dashboard's process: when they run on the cores torch's thread team also uses, the team's
    spinning barriers stall every op of the step (measured on the 2-core CPU: dcgan-small from 50 ms a
    step to 260-700 ms with a second process busy on one core; one training thread stayed at 50 ms).
    """
    if requested > 0:
        return requested
    told = environ.get("OMP_NUM_THREADS", "").strip()
    if told.isdigit() and int(told) > 0:
        return int(told)
    return max(1, (cores if cores is not None else usable_cores()) - 1)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow), else the count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure_determinism(enabled: bool) -> None:
    """Bitwise-reproducible kernels (opt-in: some are slower, and ops without one raise at once)."""
    if not enabled:
        return
    # cuBLAS needs a fixed workspace to reduce in a fixed order; it reads this when it starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


# ---------------------------------------------------------------- readings
def memory_reading(device: torch.device) -> MemoryReading | None:
    """The GPU's memory now, or None off CUDA (no host sync: these are the allocator's counters)."""
    if device.type != "cuda":
        return None
    mib = 1024.0 * 1024.0
    total = torch.cuda.get_device_properties(device).total_memory
    return MemoryReading(
        allocated_mb=torch.cuda.memory_allocated(device) / mib,
        reserved_mb=torch.cuda.memory_reserved(device) / mib,
        total_mb=total / mib,
        peak_mb=torch.cuda.max_memory_allocated(device) / mib,
    )


# ------------------------------------------------------------------ errors
def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or other accelerator) allocation failure."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def is_sticky_device_error(exc: BaseException) -> bool:
    """A CUDA error that poisons the context: saving or sampling afterwards would raise again.
    Running out of memory is not one ("CUDA error: out of memory" included): the context stays usable."""
    if is_out_of_memory(exc):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("CUDA error" in text or ("CUDA" in text and any(p in text for p in _STICKY)))


def describe_failure(exc: BaseException, batch_size: int, resumable: bool = True) -> str | None:
    """A one-line explanation for device failures a user can act on, or None for other errors.
    `resumable`: a checkpoint exists to resume from (else the advice is to start again)."""
    if is_out_of_memory(exc):
        then = "then --resume to continue this run" if resumable else "then start the run again (nothing was saved to resume from)"
        return (f"training ran out of memory at batch size {batch_size}; try --batch-size {max(1, batch_size // 2)} "
                f"(or a smaller preset), {then}")
    if is_sticky_device_error(exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"the GPU reported an unrecoverable error ({first[:160]}); this process cannot use it any more. "
                "Resume from the last checkpoint in a new process (--resume)")
    return None
