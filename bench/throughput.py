"""Training images/second: the bare engine, the whole product and the classic MNIST-notebook loop.

    uv run python bench/throughput.py [--seconds 6] [--rounds 3] [--device cpu|cuda] [--quick] [--threads N]
                                      [--cuda-graph auto|on|off]
    uv run python bench/throughput.py --kernels       # ATen ops and host syncs per training step only

Three loops train the same preset at batch 64 on the MNIST t10k digits, alternated round by round
(so drift on a shared machine hits all alike), and the median of the rounds is reported. On the
CPU all three use the product's thread count (engine/devices.training_threads: all cores but one,
unless --threads), so the figures compare the machinery, not thread counts. cond-mlp is the
default preset (what `auto` picks for labelled data); its classic loop is the conditional
notebook's (G(z, y), D(x, y)).

- bare trainer: `Trainer.train_steps()` in a loop with a stats read per log interval, nothing else
  (on CUDA with `--cuda-graph auto|on` that replays 8 captured steps at a time; on the CPU, and
  with `off`, each call is one eager step);
- whole product: a real `gan-tui --headless` process with its defaults (metrics records, sample
  grids, checkpoints, quality measurements through the judge, the progress line); its images/s is
  read from the run's metrics.jsonl over the training time it logs (start-up excluded, every piece
  of side work included);
- classic loop: what MNIST GAN notebooks do: torchvision's MNIST Dataset with ToTensor + Normalize
  (one PIL image at a time), a shuffled DataLoader, one fake batch shared by the D and G updates,
  and `.item()` on both losses every step.

Unless --quick, the engine's batch-1024 figure is also set against the machine's measured matmul
rate (FLOPs counted by torch's FlopCounterMode over one real step).

`--kernels` ends with one line a preset, `PRESET: N compute ops, S host syncs per step`, counted
with a TorchDispatchMode (engine/graph.OpCounter) over one graph's worth of eager steps. S must be
0 for every preset: a step that makes the host wait cannot be captured in a CUDA graph.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from engine.config import TrainConfig  # noqa: E402
from engine.data import ImageData, load_dataset  # noqa: E402
from engine.devices import cpu_has_bf16, training_threads  # noqa: E402
from engine.graph import STEPS_PER_REPLAY, OpCounter  # noqa: E402
from engine.models import build_models, discriminate, generate  # noqa: E402
from engine.trainer import Trainer  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "datasets"
PRESETS = ("mlp-small", "mlp", "cond-mlp")  # cond-mlp is the default preset on labelled data
ALL_PRESETS = tuple(p for p in __import__("engine.config").config.PRESETS if p != "auto")  # what --kernels counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per loop per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root", default=str(DATA_ROOT))
    p.add_argument("--presets", default=None,
                   help=f"comma-separated presets (default {','.join(PRESETS)}; with --kernels every preset)")
    p.add_argument("--quick", action="store_true", help="2 rounds of 4 s, no batch-1024 figure")
    p.add_argument("--kernels", action="store_true", help="only count ATen ops and host syncs per training step")
    p.add_argument("--cuda-graph", choices=("auto", "on", "off"), default="auto",
                   help="the trainer's and the product's cuda_graph setting (matters on CUDA only)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for every loop (default 0: the product's own choice)")
    p.add_argument("--quality-every", type=int, default=100,
                   help="the product's quality step bound (default 100, below the product's 1000, so short runs "
                        "measure too; the 5%% share still limits it)")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.seconds = 2, min(args.seconds, 4.0)
    device = torch.device(args.device)
    presets = [name for name in (args.presets or ",".join(ALL_PRESETS if args.kernels else PRESETS)).split(",") if name]
    if device.type == "cpu":
        torch.set_num_threads(training_threads(args.threads))
    data = load_dataset("mnist", args.data_root)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()} of {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"data: {data.info.describe()}")
    if args.kernels:
        print()
        print_kernel_counts(presets, data, device)
        return

    from engine.judge import load_or_train

    judge = load_or_train(data, torch.device("cpu"))  # the product's judge: trained once, then cached
    print(f"judge: {judge.source} ({judge.accuracy:.1%}); product runs with --quality-every {args.quality_every}\n")
    print(f"{'preset':12s} {'bare trainer':>13s} {'whole product':>14s} {'classic loop':>13s}   "
          f"{'product/bare':>12s} {'product/classic':>15s} {'bare/classic':>12s}")
    for preset in presets:
        # The notebook's arithmetic in all three loops (bce, no DiffAugment), so the ratios compare
        # the machinery, not the recipe; the product gets the same settings through a --config file.
        cfg = TrainConfig(preset=preset, batch_size=64, device=device.type, amp="off" if device.type == "cpu" else "auto",
                          loss="bce", diff_augment=False, cuda_graph=args.cuda_graph).resolve_preset(data.num_classes)
        product = _product_runner(cfg, args)
        rates = _median_rates(args, {
            "bare": engine_runner(cfg, data, device),
            "product": product,
            "classic": classic_runner(cfg, data, device),
        })
        bare, whole, classic = rates["bare"], rates["product"], rates["classic"]
        print(f"{preset:12s} {bare:>9,.0f} img/s {whole:>9,.0f} img/s {classic:>9,.0f} img/s   "
              f"{whole / bare:>11.2f}x {whole / classic:>14.2f}x {bare / classic:>11.2f}x", flush=True)
        print(f"{'':12s} product runs: {product.describe()}", flush=True)
        shutil.rmtree(product.folder, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if args.quick:
        return

    print()
    for amp in ("off", "bf16") if device.type == "cuda" or cpu_has_bf16() else ("off",):
        cfg = TrainConfig(preset="mlp", batch_size=1024, device=device.type, amp=amp)
        dtype = torch.bfloat16 if amp == "bf16" else torch.float32
        peak = matmul_rate(device, dtype)
        flops = step_flops(cfg, data, device)
        rate = _median_rates(args, {"engine": engine_runner(cfg, data, device)})["engine"]
        achieved = flops * rate / cfg.batch_size
        print(f"mlp batch 1024 ({'fp32' if amp == 'off' else 'bf16 autocast'}): {rate:,.0f} img/s, "
              f"{flops / 1e9:.2f} GFLOP/step -> {achieved / 1e9:,.0f} GFLOP/s; "
              f"matmul peak {peak / 1e9:,.0f} GFLOP/s ({dtype}); {achieved / peak:.0%} of it")


# --------------------------------------------------------------------- loops
Runner = Callable[[float], float]


def engine_runner(cfg: TrainConfig, data: ImageData, device: torch.device) -> Runner:
    """The bare trainer: `run(seconds)` trains that long (after a warm-up) and returns images/s."""
    trainer = Trainer(cfg, data, device)

    def run(seconds: float) -> float:
        train_for(trainer, 3 * STEPS_PER_REPLAY)  # warm-up, and the capture on CUDA
        _sync(device)
        start, first = time.perf_counter(), trainer.images_seen
        while time.perf_counter() - start < seconds:
            train_for(trainer, cfg.log_every)
        return (trainer.images_seen - first) / (time.perf_counter() - start)

    return run


def train_for(trainer: Trainer, steps: int) -> None:
    """At least `steps` steps through `train_steps` (replays where captured), then the stats read:
    the engine's one host sync per log interval."""
    done = 0
    while done < steps:
        done += trainer.train_steps(1 << 30)  # the runner passes the steps left in the run
    trainer.read_stats()


def classic_runner(cfg: TrainConfig, data: ImageData, device: torch.device) -> Runner:
    """The classic notebook loop (DataLoader, PIL per image, two `.item()` a step): `run(seconds)` -> images/s."""
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
            for real, y in loader:
                real, y = real.to(device), y.to(device)
                b = real.size(0)
                # The conditional notebook asks for random classes and tells D the class of each image.
                fake_y = torch.randint(cfg.num_classes, (b,), device=device) if cfg.conditional else None
                fake = generate(G, torch.randn(b, cfg.latent_dim, device=device), fake_y)
                d_real, d_fake = discriminate(D, real, y), discriminate(D, fake.detach(), fake_y)
                loss_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
                    F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
                out = discriminate(D, fake, fake_y)
                loss_g = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
                opt_g.zero_grad()
                loss_g.backward()
                opt_g.step()
                losses.append((loss_d.item(), loss_g.item()))
                images += b
                if time.perf_counter() - start >= seconds:
                    return images / (time.perf_counter() - start)

    return run


_PRODUCT_ROUND = 3  # product runs train 3x the round's seconds: one-time start-up work (the judge's reference) is part of them


class _product_runner:
    """Runs a real `gan-tui --headless` process; images/s from its metrics.jsonl (training time, side work in)."""

    def __init__(self, cfg: TrainConfig, args: argparse.Namespace) -> None:
        self.cfg, self.args = cfg, args
        self.folder = Path(tempfile.mkdtemp(prefix="gan-tui-bench-"))
        self.steps = 300  # set after the first run to fill _PRODUCT_ROUND x the round's seconds
        self.runs: list[str] = []

    def __call__(self, seconds: float) -> float:
        name = f"r{len(self.runs)}"
        config = self.folder / "bench-config.json"
        # The loops' arithmetic too: amp auto would pick bf16 on a CPU with bf16 instructions.
        config.write_text(json.dumps({"loss": self.cfg.loss, "diff_augment": self.cfg.diff_augment, "amp": self.cfg.amp,
                                      "cuda_graph": self.cfg.cuda_graph}))
        cmd = [sys.executable, "-m", "tui_gan.cli", "--headless", "--config", str(config),
               "--dataset", "mnist", "--data-root", self.args.data_root,
               "--preset", self.cfg.preset, "--batch-size", str(self.cfg.batch_size), "--steps", str(self.steps),
               "--device", self.args.device, "--runs-dir", str(self.folder), "--run-name", name,
               "--quality-every", str(self.args.quality_every), "--threads", str(self.args.threads)]
        # Byte-code caching on: start-up is not timed, but without it every run recompiles torch's sources.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        start = time.perf_counter()
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"gan-tui failed ({result.returncode}): {result.stderr[-2000:]}")
        records = [json.loads(line) for line in (self.folder / name / "metrics.jsonl").read_text().splitlines()]
        metrics = [r for r in records if r.get("type") == "metrics"]
        quality = sum(1 for r in records if r.get("type") == "quality")
        first, last = metrics[0], metrics[-1]
        train_s = last["elapsed_s"] - first["elapsed_s"]
        rate = (last["step"] - first["step"]) * self.cfg.batch_size * self.cfg.d_steps / train_s
        grids = len(list((self.folder / name / "samples").glob("*.png")))
        self.runs.append(f"{self.steps} steps, {wall:.1f} s wall, {len(metrics)} records, {grids} grids, {quality} quality")
        self.steps = max(300, int(rate * seconds * _PRODUCT_ROUND / self.cfg.batch_size))
        return rate

    def describe(self) -> str:
        return "; ".join(self.runs)


def aten_ops_per_step(cfg: TrainConfig, data: ImageData, device: torch.device) -> tuple[Counter[str], Counter[str]]:
    """ATen ops dispatched by one training step (after warm-up), and the host syncs among them, by
    name, averaged over one graph's worth of steps (its EMA updates included): each op is a kernel
    launch or more on a GPU, each sync a wait for the device."""
    trainer = Trainer(cfg, data, device)
    for _ in range(STEPS_PER_REPLAY):
        trainer.train_step()
    with OpCounter() as counter:
        for _ in range(STEPS_PER_REPLAY):
            trainer.train_step()
    return (Counter({name: n / STEPS_PER_REPLAY for name, n in counter.ops.items()}),
            Counter({name: n / STEPS_PER_REPLAY for name, n in counter.syncs.items()}))


# Ops that only make a new view or record metadata: they launch no kernel on a GPU.
_NO_KERNEL = {"detach", "t", "view", "_unsafe_view", "expand", "as_strided", "transpose", "permute", "slice",
              "select", "unsqueeze", "squeeze", "alias", "split", "split_with_sizes", "unbind", "empty", "empty_like",
              "empty_strided", "_record_function_enter_new", "_record_function_exit", "_to_copy_noop", "lift_fresh",
              "_reshape_alias", "reshape", "numpy_T", "_local_scalar_dense", "is_nonzero", "chunk", "narrow"}


def print_kernel_counts(presets: list[str], data: ImageData, device: torch.device) -> None:
    """The per-step ATen op count of each preset at batch 64 (the CPU dispatcher as the proxy for GPU
    launches), then one summary line a preset: `PRESET: N compute ops, S host syncs per step`."""
    summary = []
    for preset in presets:
        cfg = TrainConfig(preset=preset, batch_size=64, device=device.type, amp="off").resolve_preset(data.num_classes)
        counts, syncs = aten_ops_per_step(cfg, data, device)
        total = sum(counts.values())
        launching = Counter({k: v for k, v in counts.items() if k not in _NO_KERNEL})
        top = ", ".join(f"{name} {n:g}" for name, n in launching.most_common(10))
        waits = ", ".join(f"{name} {n:g}" for name, n in syncs.most_common()) or "none"
        print(f"{preset:12s} {total:6.1f} ATen ops per step, {sum(launching.values()):5.1f} of them compute "
              f"(views and metadata left out); most: {top}; host syncs: {waits}", flush=True)
        summary.append(f"{preset}: {sum(launching.values()):g} compute ops, {sum(syncs.values()):g} host syncs per step")
    print()
    print("\n".join(summary))


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
