"""What makes a training step capturable in a CUDA graph, and what it needs on every device.

A CUDA graph replays its kernels with the arguments they were recorded with: a Python number
handed to a kernel (a learning rate, the weight average's decay) is frozen into the graph. So
every value that changes while a run goes on lives in a device tensor the step reads, and a
change writes into that same tensor (`fill_`), never replaces it. The step also never waits for
the device (no `.item()`, no branch on a tensor's value, no copy to the host, no shape that
depends on data): the trainer's statistics stay on the device until a log read.

The same code runs eagerly on the CPU. There the hyperparameters are float64 tensors, so the
fused Adam kernel (which reads a CPU learning-rate tensor as a double) and the decay computed
from the device step counter give the same bits that Python numbers gave.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from engine.config import TrainConfig

EMA_EVERY = 4  # steps between updates of the generator's weight average
R1_EVERY = 16  # lazy R1 (StyleGAN2): the penalty every this many steps, weighted up to match


@dataclass(frozen=True)
class StepStats:
    """Means over the steps since the last read, plus a flag for non-finite values."""

    d_loss: float
    g_loss: float
    d_real: float
    d_fake: float
    grad_norm_d: float
    grad_norm_g: float
    steps: int
    finite: bool
    skipped: int = 0
    """Steps in which the fp16 GradScaler skipped an update (overflowed gradients; left out of the norms)."""


class LiveHyperparams:
    """The live hyperparameters as 0-d device tensors, changed in place by `fill`.

    `lr_g`, `lr_d`, `beta1`, `beta2` and `label_smoothing` hold the config's values; `real_target`
    is 1 - label_smoothing, the bce loss's target for real images. A captured graph reads these
    tensors at every replay, so a change takes effect at the next step with no re-capture. The
    betas reach Adam as these tensors only where torch's fused kernel takes tensor betas
    (`fused_adam_takes_tensor_betas`); elsewhere Adam gets numbers and a change of betas
    re-captures the graph (engine/graph.graph_key).
    """

    NAMES = ("lr_g", "lr_d", "beta1", "beta2", "label_smoothing")

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        # float64 where the kernels read the value on the host (the CPU: bit for bit as a Python
        # float); float32 on CUDA, whose fused Adam kernel reads the learning rate as a float.
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        self.lr_g = torch.zeros((), dtype=dtype, device=device)
        self.lr_d = torch.zeros((), dtype=dtype, device=device)
        self.beta1 = torch.zeros((), dtype=dtype, device=device)
        self.beta2 = torch.zeros((), dtype=dtype, device=device)
        self.label_smoothing = torch.zeros((), dtype=dtype, device=device)
        self.real_target = torch.zeros((), dtype=torch.float32, device=device)
        self.fill(cfg)

    def fill(self, cfg: TrainConfig) -> None:
        """Write `cfg`'s values into the same tensors (a kernel launch each, no host sync)."""
        for name in self.NAMES:
            getattr(self, name).fill_(getattr(cfg, name))
        # From the double, as torch.full_like(x, 1.0 - s) did: the same float32 target bit for bit.
        self.real_target.fill_(1.0 - cfg.label_smoothing)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor by name (the ones a graph reads)."""
        return {name: getattr(self, name) for name in (*self.NAMES, "real_target")}


def make_adam(module: nn.Module, lr: torch.Tensor, hyper: LiveHyperparams, cfg: TrainConfig,
              capturable: bool) -> torch.optim.Adam:
    """Fused Adam reading its learning rate from `lr` (a LiveHyperparams tensor), its state made at once.

    fused: one kernel for the whole update (about 20% faster a step than foreach on the 2-core CPU,
    one launch instead of a dozen on a GPU). capturable: the step counts and bias corrections stay
    on the device, which torch requires of an optimizer stepped inside a CUDA graph. The state
    exists from the start (zeros, as Adam's lazy start makes it) so its tensors never change
    identity: a graph and a restore (engine/trainer_state.py) both hold on to them.
    """
    betas: tuple[float, float] | tuple[torch.Tensor, torch.Tensor]
    betas = (hyper.beta1, hyper.beta2) if fused_adam_takes_tensor_betas() else (cfg.beta1, cfg.beta2)
    opt = torch.optim.Adam(module.parameters(), lr=lr, betas=betas, fused=True, capturable=capturable)
    # Eager steps of a capturable optimizer are intended here (warm-up, alignment, single steps).
    opt._warned_capturable_if_run_uncaptured = True  # type: ignore[attr-defined]
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return opt


def set_adam_betas(opt: torch.optim.Optimizer, beta1: float, beta2: float) -> None:
    """Adam's betas as numbers, where its fused kernel cannot read tensors (a no-op where it can)."""
    if fused_adam_takes_tensor_betas():
        return  # the groups hold the LiveHyperparams tensors, already filled
    for group in opt.param_groups:
        group["betas"] = (beta1, beta2)


@functools.cache
def fused_adam_takes_tensor_betas() -> bool:
    """Whether this torch's fused Adam kernel takes betas as tensors.

    torch 2.11 to 2.15 take a tensor learning rate (`_fused_adam_.tensor_lr`) but betas only as
    doubles: Adam accepts tensor betas, and `_fused_adam` hands them to the kernel, which reads
    them with `.item()`, a host sync in every step that breaks a capture. So the betas stay numbers
    unless a later torch's kernel has a Tensor beta1 overload.
    """
    packet = getattr(torch.ops.aten, "_fused_adam_", None)
    if packet is None:
        return False
    for name in packet.overloads():
        schema = getattr(packet, name)._schema
        if any(arg.name == "beta1" and str(arg.type) == "Tensor" for arg in schema.arguments):
            return True
    return False


def ema_weight(step: torch.Tensor, g_ema: float) -> torch.Tensor:
    """1 - decay of the weight average's update at device step count `step` (float64), as float32.

    decay = min(g_ema ** EMA_EVERY, (1 + step) / (10 + step)): every EMA_EVERY steps with the decay
    compounded to match, and early on an average over the steps so far rather than towards the
    random init. Computed on the device from the step counter, so a graph's replays see the step
    they run at; in float64, so the value is the one Python's float arithmetic gave.
    """
    ratio = (step + 1.0) / (step + 10.0)
    decay = torch.clamp(ratio, max=g_ema**EMA_EVERY)
    return (1.0 - decay).float()


def skip_if_nonfinite(opt: torch.optim.Optimizer, grad_norm: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
    """Make the fused Adam step a no-op when the gradients are not finite, without a host sync.

    The fused kernel reads `found_inf` (the hook GradScaler uses), so NaN never reaches the weights
    or Adam's moments: the runner sees the non-finite statistics at the next log read, pauses, and
    the nets it pauses with are the last finite ones. With fp16 the scaler does this itself.
    """
    if not scaler.is_enabled():
        opt.found_inf = (~torch.isfinite(grad_norm)).float()  # type: ignore[attr-defined]


def count_skips(
    amp_sums: torch.Tensor, grad_d: torch.Tensor, grad_g: torch.Tensor, d_ok: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add a step's skip bookkeeping to `amp_sums` (on the device); the norms with skipped ones zeroed."""
    g_ok = torch.isfinite(grad_g)
    amp_sums += torch.stack([d_ok.float(), g_ok.float(), (~(d_ok & g_ok)).float()])
    return torch.where(d_ok, grad_d, 0.0), torch.where(g_ok, grad_g, 0.0)


def grad_norm(module: nn.Module) -> torch.Tensor:
    """Total L2 norm of a module's gradients, as a device tensor (no sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(module.parameters()).device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
