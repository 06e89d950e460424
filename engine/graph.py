"""Several training steps captured in one CUDA graph and replayed: the GPU's fast path.

Eager PyTorch launches a step op by op from Python: ~300 kernels and ~8 ms of host time a step for
the default preset on an H200 whose arithmetic for it takes under 1 ms (../shared/gpu). A CUDA graph
records the kernels once and replays them all with one host call, and `STEPS_PER_REPLAY` steps in
one graph share that call. What the step must be for this is in engine/step.py.

Positions inside a graph are fixed: a replay starts only at a step that is a multiple of its
length, so the every-4th-step EMA update and the every-16th-step lazy R1 penalty fall where they
fell when the graph was recorded. (Masks instead of fixed positions would run the R1 penalty's
double backward and the EMA update in every step, to multiply them by zero in most.) Steps before
the first aligned step, single steps and the last steps of a run are eager: the same code,
launched op by op. A change of the step's shape (`d_steps`, the batch size, and the betas where
Adam takes them as numbers) records the graph again, once.

`CapturePlan` decides (pure bookkeeping, tested on any machine); `StepGraph` does the CUDA work.
`OpCounter` counts a step's ATen ops and the ones among them that make the host wait for the
device, which a captured step must not contain.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from engine.config import ConfigError, TrainConfig
from engine.step import EMA_EVERY, R1_EVERY, fused_adam_takes_tensor_betas

STEPS_PER_REPLAY = 8  # the probe's figure (../shared/gpu/probe.py: 9x eager at batch 64); two EMA updates in each
WARMUP_STEPS = 2  # eager steps on the capture stream before a capture (lazy state, cuBLAS workspaces)
# ATen ops that wait for the device: a value read to the host, or an output whose size depends on data.
SYNC_OPS = frozenset({"_local_scalar_dense", "item", "is_nonzero", "nonzero", "argwhere", "equal", "allclose",
                      "masked_select", "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive",
                      "unique_dim_consecutive", "bincount", "tolist"})

assert STEPS_PER_REPLAY % EMA_EVERY == 0 and R1_EVERY % EMA_EVERY == 0  # fixed EMA positions in a replay


class CaptureError(RuntimeError):
    """Recording the step into a CUDA graph failed; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def resolve_graph_mode(cfg: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None) -> tuple[bool, str]:
    """Whether this run's steps are captured, and a one-line note when `auto` decided against it.

    `on` where a graph cannot be had (no CUDA, fp16) is a ConfigError: the user asked for it.
    """
    mode = cfg.cuda_graph
    if mode == "off":
        return False, ""
    if device.type != "cuda":
        if mode == "on":
            raise ConfigError("cuda_graph", mode, f"a CUDA graph needs CUDA and this run trains on {device.type}; "
                              "use auto or off")
        return False, ""  # the CPU trains eagerly, as it always did: nothing to say
    why = _cannot_capture(amp_dtype)
    if why:
        if mode == "on":
            raise ConfigError("cuda_graph", mode, f"{why}; use auto (eager steps then) or off")
        return False, f"training with eager steps, not a CUDA graph: {why}"
    return True, ""


def steps_per_replay(cfg: TrainConfig) -> int:
    """Steps in one graph: a multiple of every periodic part of the step (EMA; R1 when it is on)."""
    return R1_EVERY if cfg.r1_gamma else STEPS_PER_REPLAY


def graph_key(cfg: TrainConfig) -> tuple[Any, ...]:
    """What fixes a recorded step: a change of any of these needs a new capture."""
    key: tuple[Any, ...] = (cfg.d_steps, cfg.batch_size)
    return key if fused_adam_takes_tensor_betas() else (*key, cfg.beta1, cfg.beta2)


class CapturePlan:
    """When the trainer steps eagerly, captures or replays. Pure bookkeeping: StepGraph does the CUDA work."""

    def __init__(self, enabled: bool, steps: int, key: tuple[Any, ...], warmup: int = WARMUP_STEPS) -> None:
        self.enabled = enabled
        self.steps = steps
        self.key = key
        self.ready = False  # a graph of `key` is recorded
        self.captures = 0  # graphs recorded so far: the first, then one per change of the step's shape
        self._warmup = warmup
        self.warmup_left = warmup if enabled else 0

    @property
    def warming(self) -> bool:
        """Eager steps now go to the capture stream (they prepare a capture)."""
        return self.enabled and self.warmup_left > 0

    def action(self, step: int, limit: int) -> str:
        """'replay', 'capture' or 'eager' for a call that may run up to `limit` steps from `step`."""
        if not self.enabled or self.warmup_left > 0 or limit < self.steps or step % self.steps:
            return "eager"
        return "replay" if self.ready else "capture"

    def retarget(self, key: tuple[Any, ...]) -> bool:
        """The step's shape from now on; True when it changed, so a capture is owed (after a warm-up step)."""
        if key == self.key:
            return False
        self.key = key
        self.ready = False
        if self.enabled:
            self.warmup_left = max(self.warmup_left, 1)
        return True

    def stepped_eagerly(self) -> None:
        """An eager step ran."""
        self.warmup_left = max(0, self.warmup_left - 1)

    def captured(self) -> None:
        """A graph of the current key was recorded."""
        self.ready = True
        self.captures += 1

    def disable(self) -> None:
        """Eager steps from now on (a capture failed under `auto`)."""
        self.enabled = False
        self.ready = False
        self.warmup_left = 0


class StepGraph:
    """The CUDA side of a captured step: its stream, the recorded graph, its replay and clean-up."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        # Warm-up steps and the capture share one side stream: what the first kernels on a stream
        # set up lazily (cuBLAS workspaces) is then in place before recording starts.
        self.stream = torch.cuda.Stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None

    def run_eager(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the capture stream, ordered after and before the current stream's work."""
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            fn()
        current.wait_stream(self.stream)

    def capture(self, body: Callable[[], None], generators: list[torch.Generator]) -> None:
        """Record `body` into a new graph (the old one released), drawing from `generators` at each replay.

        Nothing runs while recording. On failure the generators get fresh states with the same seed
        and offset (a capture that ends in an error can leave a generator counting its draws as if
        inside one: eager steps would then repeat their random numbers) and CaptureError says why;
        a device error that outlives the capture is raised as it is.
        """
        self.release()
        graph = torch.cuda.CUDAGraph()
        saved = [(g, g.get_state()) for g in [*generators, _default_generator(self.device)]]
        failure: BaseException | None = None
        try:
            for generator in generators:
                graph.register_generator_state(generator)
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            # thread_local: the quality worker and the writers may use CUDA meanwhile without breaking the capture.
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                try:
                    body()
                except Exception as exc:  # noqa: BLE001 - kept: capture_end below may raise a vaguer one
                    failure = exc
        except Exception as exc:  # noqa: BLE001 - any failure to record means: no graph
            failure = failure or exc
        if failure is None:
            self.graph = graph
            return
        for generator, state in saved:
            fresh = torch.Generator(device=generator.device)
            fresh.set_state(state)
            generator.graphsafe_set_state(fresh)
        del graph
        torch.cuda.synchronize(self.device)  # a poisoned context raises here, as the device error it is
        raise CaptureError(_one_line(failure)) from failure

    def replay(self) -> None:
        """Run the recorded steps on the current stream."""
        assert self.graph is not None, "replay before capture"
        self.graph.replay()

    def release(self) -> None:
        """Free the recorded graph and its memory pool."""
        if self.graph is not None:
            self.graph.reset()
            self.graph = None


class OpCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched below autograd, and apart the host syncs among them (SYNC_OPS
    and copies from a device to the host). On the CPU a `.cpu()` or `.tolist()` of a CPU tensor
    dispatches nothing and is not seen: on CUDA, capture refuses every sync."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.syncs: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = str(func.overloadpacket.__name__)
        self.ops[name] += 1
        if is_host_sync(name, args, kwargs):
            self.syncs[name] += 1
        return func(*args, **kwargs)


def is_host_sync(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether an ATen op (by overload packet name and arguments) makes the host wait for the device."""
    if name in SYNC_OPS:
        return True
    if name == "repeat_interleave":  # the overload with a tensor of repeats and no output_size: the size is data's
        return len(args) == 1 and isinstance(args[0], torch.Tensor) and kwargs.get("output_size") is None
    if name in ("index", "index_put", "index_put_", "_index_put_impl_") and len(args) > 1:
        # A boolean mask as an index: the result's size is the mask's count (a nonzero inside the kernel).
        return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] or ())
    if name == "_to_copy" and args and isinstance(args[0], torch.Tensor):
        target = kwargs.get("device")
        return args[0].device.type != "cpu" and target is not None and torch.device(target).type == "cpu"
    if name == "copy_" and len(args) > 1 and isinstance(args[1], torch.Tensor):
        return args[0].device.type == "cpu" and args[1].device.type != "cpu"
    return False


# ------------------------------------------------------------------ helpers
def _cannot_capture(amp_dtype: torch.dtype | None) -> str:
    if amp_dtype == torch.float16:
        return "fp16's GradScaler cannot be captured (bf16 and --amp off can)"
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state") or not hasattr(torch.Generator, "graphsafe_set_state"):
        return f"torch {torch.__version__} cannot register the trainer's random generator with a graph (2.5 or later can)"
    return ""


def _default_generator(device: torch.device) -> torch.Generator:
    # The one dropout draws from; capture registers it by itself.
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.default_generators[index]


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
