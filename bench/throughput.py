"""Training images/second: the engine against the classic MNIST-notebook loop, same model and batch.

    uv run python bench/throughput.py [--seconds 8] [--rounds 3] [--device cpu|cuda]

The classic loop is what MNIST GAN notebooks do: torchvision's MNIST Dataset with
ToTensor + Normalize (one PIL image at a time), a shuffled DataLoader, one fake batch shared by
the D and G updates, and `.item()` on both losses every step for the loss lists. Both loops train
the same preset at the same batch size on the MNIST t10k digits; they are timed alternately, a few
rounds each, and the median is reported. The engine's batch-1024 figure is set against the
machine's measured matmul rate (FLOPs counted by torch's FlopCounterMode over one real step).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from engine.config import TrainConfig  # noqa: E402
from engine.data import ImageData, load_dataset  # noqa: E402
from engine.models import build_models  # noqa: E402
from engine.trainer import Trainer  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "datasets"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per loop per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root", default=str(DATA_ROOT))
    args = p.parse_args()
    device = torch.device(args.device)
    data = load_dataset("mnist", args.data_root)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"data: {data.info.describe()}\n")

    for preset in ("mlp-small", "mlp"):
        cfg = TrainConfig(preset=preset, batch_size=64, device=device.type, amp="off")
        engine = _median_rates(args, {
            "engine": _engine_runner(cfg, data, device),
            "classic": _classic_runner(cfg, data, device),
        })
        ratio = engine["engine"] / engine["classic"]
        print(f"{preset:10s} batch 64  engine {engine['engine']:>9,.0f} img/s   classic loop {engine['classic']:>9,.0f} img/s   "
              f"ratio {ratio:5.2f}x")
        if preset == "mlp" and device.type == "cpu" and _cpu_has_bf16():
            bf16 = TrainConfig(preset=preset, batch_size=64, device="cpu", amp="bf16")
            rate = _median_rates(args, {"engine": _engine_runner(bf16, data, device)})["engine"]
            print(f"{preset:10s} batch 64  engine, bf16 autocast {rate:>9,.0f} img/s   ratio {rate / engine['classic']:5.2f}x")

    print()
    for amp in ("off", "bf16") if device.type == "cuda" or _cpu_has_bf16() else ("off",):
        cfg = TrainConfig(preset="mlp", batch_size=1024, device=device.type, amp=amp)
        dtype = torch.bfloat16 if amp == "bf16" else torch.float32
        peak = matmul_rate(device, dtype)
        flops = step_flops(cfg, data, device)
        rate = _median_rates(args, {"engine": _engine_runner(cfg, data, device)})["engine"]
        achieved = flops * rate / cfg.batch_size
        print(f"mlp batch 1024 ({'fp32' if amp == 'off' else 'bf16 autocast'}): {rate:,.0f} img/s, "
              f"{flops / 1e9:.2f} GFLOP/step -> {achieved / 1e9:,.0f} GFLOP/s; "
              f"matmul peak {peak / 1e9:,.0f} GFLOP/s ({dtype}); {achieved / peak:.0%} of it")


# --------------------------------------------------------------------- loops
Runner = Callable[[float], float]


def _engine_runner(cfg: TrainConfig, data: ImageData, device: torch.device) -> Runner:
    trainer = Trainer(cfg, data, device)

    def run(seconds: float) -> float:
        for _ in range(5):
            trainer.train_step()
        trainer.read_stats()
        _sync(device)
        start, images = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            for _ in range(cfg.log_every):
                trainer.train_step()
            trainer.read_stats()  # the engine's one host sync per log interval
            images += cfg.log_every * cfg.batch_size
        return images / (time.perf_counter() - start)

    return run


def _classic_runner(cfg: TrainConfig, data: ImageData, device: torch.device) -> Runner:
    from torchvision import datasets, transforms

    # torchvision's own MNIST class and __getitem__ (PIL image -> ToTensor -> Normalize) over the t10k
    # digits: its constructor insists on all four files, which only the test split is here.
    ds = datasets.MNIST.__new__(datasets.MNIST)
    datasets.VisionDataset.__init__(ds, str(ROOT), transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    ds.train, ds.data, ds.targets = False, data.images.cpu(), data.labels.cpu()
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    torch.manual_seed(0)
    G, D = (m.to(device) for m in build_models(cfg))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    losses: list[tuple[float, float]] = []

    def run(seconds: float) -> float:
        start, images = time.perf_counter(), 0
        while True:
            for real, _ in loader:
                real = real.to(device)
                b = real.size(0)
                fake = G(torch.randn(b, cfg.latent_dim, device=device))
                d_real, d_fake = D(real), D(fake.detach())
                loss_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
                    F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
                out = D(fake)
                loss_g = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
                opt_g.zero_grad()
                loss_g.backward()
                opt_g.step()
                losses.append((loss_d.item(), loss_g.item()))
                images += b
                if time.perf_counter() - start >= seconds:
                    return images / (time.perf_counter() - start)

    return run


def _median_rates(args: argparse.Namespace, runners: dict[str, Runner]) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():  # alternate, so drift on a shared machine hits both alike
            rates[name].append(run(args.seconds))
    return {name: statistics.median(values) for name, values in rates.items()}


# -------------------------------------------------------------------- figures
def step_flops(cfg: TrainConfig, data: ImageData, device: torch.device) -> float:
    """FLOPs of one real engine training step, counted by torch."""
    trainer = Trainer(cfg, data, device)
    trainer.train_step()
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step()
    return float(counter.get_total_flops())


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    """Best-of-several FLOP/s of an n x n matmul on this machine."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * n**3 / best


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
