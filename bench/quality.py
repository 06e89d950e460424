"""Train the default preset on the MNIST t10k files for a wall-clock budget; save samples to judge.

    uv run python bench/quality.py --seconds 180 --out bench_out/quality

Writes DIR/samples.npy (1000 generated images, float32, 1000x28x28, in [0, 1]) and DIR/grid.png
(the first 100), and prints the steps done, the training images/second, and the project's own
quality figures for those samples (engine/quality.py, through the dataset's judge) beside the
targets: all classes covered, KL from uniform <= 0.05, mean confidence >= 0.93, Frechet distance
<= 3x its real-vs-real floor. The judge is readied (trained once, then cached) before the clock starts.
`--steps N` trains a fixed number of steps instead (to compare settings on a busy machine),
`--set FIELD=JSON` overrides a config field, `--device cuda` runs on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.config import TrainConfig  # noqa: E402
from engine.data import load_dataset  # noqa: E402
from engine.judge import load_or_train  # noqa: E402
from engine.quality import QualityReference  # noqa: E402
from engine.runs import write_grid_png  # noqa: E402
from engine.trainer import Trainer  # noqa: E402

DEFAULT_DATA_ROOT = ROOT.parent / "shared" / "datasets"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0, help="training wall-clock budget")
    p.add_argument("--steps", type=int, default=0, help="train this many steps instead of a time budget")
    p.add_argument("--device", default="cpu", help="cpu (the target's machine) or cuda")
    p.add_argument("--out", type=Path, default=ROOT / "bench_out" / "quality")
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="override a config field, e.g. lr_g=1e-3")
    args = p.parse_args()

    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = TrainConfig(dataset="mnist", data_root=args.data_root, device=args.device, **overrides)
    device = torch.device(args.device)
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.seed)
    print(f"data: {data.info.describe()}")
    print(f"config: preset={cfg.preset} loss={cfg.loss} lr_g={cfg.lr_g} lr_d={cfg.lr_d} "
          f"betas=({cfg.beta1}, {cfg.beta2}) batch={cfg.batch_size} latent={cfg.latent_dim} threads={torch.get_num_threads()}")
    judge = load_or_train(data, device)
    reference = QualityReference.build(judge, data, 1000)
    print(f"judge: {judge.accuracy:.2%} on {len(judge.split.held_out):,} held-out images ({judge.source}); "
          f"Frechet floor at n={reference.n}: {reference.fd_floor:.2f}")
    trainer = Trainer(cfg, data, device)

    start = time.perf_counter()
    while (trainer.step < args.steps) if args.steps else (time.perf_counter() - start < args.seconds):
        for _ in range(cfg.log_every):
            trainer.train_step()
        stats = trainer.read_stats()
        if stats is not None and not stats.finite:
            raise SystemExit(f"non-finite loss at step {trainer.step}")
    elapsed = time.perf_counter() - start

    noise = torch.randn(1000, cfg.latent_dim, generator=torch.Generator().manual_seed(1234))
    images = trainer.sample(noise)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "samples.npy", images.astype(np.float32) / 255.0)
    write_grid_png(args.out / "grid.png", images[:100])
    print(f"steps: {trainer.step} in {elapsed:.1f} s")
    print(f"images/second: {trainer.images_seen / elapsed:,.0f}")
    print(f"wrote {args.out / 'samples.npy'} and {args.out / 'grid.png'}")

    q = reference.measure(trainer.step, torch.from_numpy(images).to(device).float().div(127.5).sub(1).unsqueeze(1))
    k = len(q.class_hist)
    checks = [
        ("classes covered", f"{q.classes_covered}/{k}", q.classes_covered == k, f"= {k}"),
        ("KL from uniform", f"{q.kl_uniform:.4f}", q.kl_uniform <= 0.05, "<= 0.05"),
        ("mean confidence", f"{q.confidence:.3f}", q.confidence >= 0.93, ">= 0.93"),
        ("Frechet distance", f"{q.fd:.2f} ({q.fd / q.fd_floor:.2f}x floor {q.fd_floor:.2f})", q.fd <= 3 * q.fd_floor, "<= 3x floor"),
        ("diversity vs real", f"{q.diversity:.3f}", True, "(about 1)"),
    ]
    print("class histogram: " + " ".join(f"{c}:{p:.3f}" for c, p in enumerate(q.class_hist)))
    for name, value, ok, target in checks:
        print(f"{name:18} {value:34} target {target:12} {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
