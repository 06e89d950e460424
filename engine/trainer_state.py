"""The trainer's part of a checkpoint: written in the format it always had, loaded into the live tensors.

A restore (resume, rollback, a PBT exploit, and the undo of a restore that failed halfway) copies
into the parameters, buffers and optimizer state the trainer already holds, so none of them
changes identity: a CUDA graph recorded with those tensors stays valid, and the same checkpoint
loads on any device (a captured run's on the CPU, a CPU run's into a captured one).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from engine.trainer import Trainer

_CPU_RNG_BYTES = 5056  # size of a CPU torch.Generator state (a CUDA one is 16 bytes)


def trainer_state_dict(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to continue exactly; tensors and plain data only (weights_only loadable)."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "batches": trainer.rng.get_state(),
                           "batches_device": trainer.device.type}
    if trainer.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    if trainer.G_ema is not None:
        trainer.refresh_ema_norms()  # exports load generator_ema as saved: its statistics must fit
    cfg = trainer.cfg
    return {
        "generator": trainer.G.state_dict(),
        "generator_ema": trainer.G_ema.state_dict() if trainer.G_ema is not None else {},
        "discriminator": trainer.D.state_dict(),
        "opt_g": optimizer_state_dict(trainer.opt_g, cfg.lr_g, (cfg.beta1, cfg.beta2)),
        "opt_d": optimizer_state_dict(trainer.opt_d, cfg.lr_d, (cfg.beta1, cfg.beta2)),
        "scaler": trainer.scaler.state_dict(),
        "step": trainer.step,
        "images_seen": trainer.images_seen,
        "fixed_noise": trainer.fixed_noise.cpu(),
        "rng": rng,
    }


def load_trainer_state(trainer: Trainer, state: dict[str, Any]) -> list[str]:
    """Restore `trainer` from trainer_state_dict() output, in place; the config must already match.

    All or nothing: if any part fails to load, everything is put back as it was and the error is
    raised. Returns notes for the user (a checkpoint from another device type, whose batch RNG
    cannot be restored here, continues with batches reseeded deterministically).
    """
    batch_rng, notes = _batch_rng_for(trainer, state)
    before = copy.deepcopy(trainer_state_dict(trainer))
    try:
        _restore(trainer, state, batch_rng)
    except Exception:
        _restore(trainer, before, before["rng"]["batches"])
        raise
    return notes


def optimizer_state_dict(opt: torch.optim.Optimizer, lr: float, betas: tuple[float, float]) -> dict[str, Any]:
    """`opt.state_dict()` as a plain fused Adam's reads: the learning rate and betas as numbers (they
    live in device tensors here) and `capturable` off, so any gan-tui, on any device, loads it."""
    packed = opt.state_dict()
    groups = [{**group, "lr": lr, "betas": betas, "capturable": False} for group in packed["param_groups"]]
    return {"state": packed["state"], "param_groups": groups}


def load_optimizer_state(opt: torch.optim.Optimizer, saved: Any) -> None:
    """Copy a saved optimizer state into `opt`'s existing state tensors, which keep their identities.

    Everything is checked before anything is copied. A parameter the saved state has no entry for
    (a checkpoint from before its first update) starts over at zeros, as Adam starts. The saved
    groups' settings are not taken: the learning rates and betas come from the config. Any device
    and dtype of Adam's `step` (a CPU tensor, a device float32 one, a number) is accepted.
    Raises ValueError naming what does not fit.
    """
    saved_groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(saved_groups, list) or len(saved_groups) != len(opt.param_groups):
        count = len(saved_groups) if isinstance(saved_groups, list) else "no"
        raise ValueError(f"the saved optimizer has {count} parameter groups and this one {len(opt.param_groups)}")
    pairs: list[tuple[Any, torch.Tensor]] = []
    for group, saved_group in zip(opt.param_groups, saved_groups):
        ids = saved_group.get("params", []) if isinstance(saved_group, dict) else []
        if len(ids) != len(group["params"]):
            raise ValueError(f"a saved parameter group holds {len(ids)} parameters and this one {len(group['params'])}")
        pairs += list(zip(ids, group["params"]))
    saved_state = saved.get("state") or {}
    plan: list[tuple[dict[str, torch.Tensor], dict[str, Any] | None]] = []
    for saved_id, param in pairs:
        live, source = opt.state[param], saved_state.get(saved_id)
        if source is not None:
            for key, tensor in live.items():
                if key not in source:
                    raise ValueError(f"the saved state of parameter {saved_id} has no {key}")
                shape = torch.as_tensor(source[key]).shape
                if shape != tensor.shape:
                    raise ValueError(f"the saved {key} of parameter {saved_id} has shape {tuple(shape)}, "
                                     f"expected {tuple(tensor.shape)}")
        plan.append((live, source))
    with torch.no_grad():
        for live, source in plan:
            for key, tensor in live.items():
                if source is None:
                    tensor.zero_()
                else:
                    tensor.copy_(torch.as_tensor(source[key]))


# ------------------------------------------------------------------ helpers
def _batch_rng_for(trainer: Trainer, state: dict[str, Any]) -> tuple[torch.Tensor | int, list[str]]:
    """The saved batch-RNG state if this device's generator can take it, else a seed and a note."""
    saved = state["rng"]["batches"]
    saved_type = state["rng"].get("batches_device") or ("cpu" if saved.numel() == _CPU_RNG_BYTES else "cuda")
    device_type = trainer.device.type
    if saved_type == device_type and saved.numel() == trainer.rng.get_state().numel():
        return saved, []
    step = int(state["step"])
    # Derived from the run's seed and the step only: resuming the same checkpoint twice draws the same batches.
    seed = (trainer.cfg.seed * 1_000_003 + step) % 2**63
    note = (f"the checkpoint at step {step} was written on {saved_type} and this run trains on {device_type}: "
            f"its batch random-number state does not carry over, so batches were reseeded (seed {seed}) and "
            "differ from the original run's from here on")
    return seed, [note]


def _restore(trainer: Trainer, state: dict[str, Any], batch_rng: torch.Tensor | int) -> None:
    t = trainer
    # Module.load_state_dict copies into the existing parameters and buffers (identities kept).
    t.G.load_state_dict(state["generator"])
    if t.G_ema is not None:
        t.G_ema.load_state_dict(state.get("generator_ema") or state["generator"])
    t.D.load_state_dict(state["discriminator"])
    load_optimizer_state(t.opt_g, state["opt_g"])
    load_optimizer_state(t.opt_d, state["opt_d"])
    if state.get("scaler"):
        t.scaler.load_state_dict(state["scaler"])
    t.set_hyperparams(t.cfg)
    t.step = int(state["step"])
    t.images_seen = int(state["images_seen"])
    t.step_counter.fill_(t.step)
    noise = state["fixed_noise"]
    if noise.shape == t.fixed_noise.shape:
        t.fixed_noise.copy_(noise)
    else:
        t.fixed_noise = noise.to(t.device)
    t.forget_ema_norms()
    torch.set_rng_state(state["rng"]["torch"])
    # In place (the generator object a graph registered stays the one that draws).
    if isinstance(batch_rng, int):
        t.rng.manual_seed(batch_rng)
    else:
        t.rng.set_state(batch_rng)
    if t.device.type == "cuda":
        if "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], t.device)
        else:  # saved on the CPU: dropout masks on this GPU start from the run's seed
            torch.cuda.manual_seed(t.cfg.seed)
    t.discard_stats()
    t.mid_step = False
