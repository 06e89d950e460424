"""One check of the captured training step on a GPU: at most 5 minutes, a table, exit 1 on a wrong result.

    python bench/gpu_check.py --data-root DIR [--out results.json] [--budget-s 290]
    python bench/gpu_check.py --cpu-smoke [--out results.json]   # every size shrunk: the script end to end on a CPU

DIR holds the MNIST IDX files (t10k-images-idx3-ubyte[.gz] and its labels), directly or under
MNIST/raw. Imports nothing from tui_gan (the GPU machine has no textual). Sections:

  0  no host sync in an eager step on CUDA (torch.cuda.set_sync_debug_mode("error"), and engine/graph.OpCounter),
     and every preset records and replays its step (24 steps at batch 64, finite)
  1  captured and eager steps from the same seed agree after 200 steps, fp32 and bf16 (the default
     recipe, cond-mlp at batch 128): weights within a relative L2 distance of 1e-3 (fp32) or 2e-2
     (bf16), or of 4x what two eager runs differ by (atomics in index and embedding backward make
     eager runs differ on a GPU), whichever is larger; mean losses of the last 100 steps within
     2% (fp32) / 5% (bf16) or 4x the eager runs' difference; step counts, Adam's step counts and
     the batch RNG's state exactly equal (the graph's replays draw as the eager steps do)
  2  a learning-rate change during a captured run takes effect at the next step: lr_g set to 1e-12
     before a replay freezes G in it (max |change| < 1e-8) while D moves; set back, G moves again;
     the same tensor, no new capture
  3  a captured run's checkpoint resumes on the CPU (weights and Adam state equal, then CPU steps
     finite), and a CPU checkpoint resumes in a captured trainer (identities kept, replays go on)
  4  images/s of the bare trainer, the whole product (engine.runner.Runner with a sink, on its
     thread, as `gan-tui --headless` drives it) and the classic loop, graph on and off, for
     mlp-small and the default preset at batch 64 and 128 (the notebook's bce arithmetic, no
     DiffAugment, as bench/throughput.py); targets: product >= 150k img/s for mlp-small at 64 and
     >= 20x the classic loop, >= 100k for the default preset, product within 10% of the bare trainer
  5  training seconds until the default recipe's samples reach FD <= 2.5x its floor (judge on the
     GPU, FD over 1000 samples every ~second of training, the clock stopped while measuring);
     target <= 15 s; eager too when time is left

Statuses: ok, FAIL (a wrong result or an error: exit 1), met / missed (a speed target: reported,
exit 0 unless --strict-targets), skipped (no CUDA, or the time budget), info.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.config import TrainConfig  # noqa: E402
from engine.data import ImageData, load_dataset  # noqa: E402
from engine.trainer import Trainer  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "datasets"


@dataclasses.dataclass
class Row:
    """One line of the table."""

    section: str
    check: str
    value: str
    status: str


class Check:
    """The run's settings, its rows and its clock."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.smoke = args.cpu_smoke
        self.cuda = torch.cuda.is_available() and not self.smoke
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.graph = "on" if self.cuda else "off"
        self.rows: list[Row] = []
        self.start = time.perf_counter()
        self.budget = args.budget_s
        self.work = Path(tempfile.mkdtemp(prefix="gan-tui-gpu-check-"))
        self.data: ImageData | None = None
        self.steps = 24 if self.smoke else 200
        self.seconds = 0.6 if self.smoke else 2.5

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def add(self, section: str, check: str, value: str, status: str) -> None:
        self.rows.append(Row(section, check, value, status))
        print(f"  [{section}] {check}: {value} -> {status}", flush=True)

    def recipe(self, **changes: Any) -> TrainConfig:
        """The default recipe on this device (cond-mlp at batch 128 on MNIST), with changes."""
        assert self.data is not None
        fields: dict[str, Any] = {"dataset": "mnist", "data_root": self.args.data_root, "device": self.device.type,
                                  "seed": 0, "quality_every": 0, "tensorboard": False, "cuda_graph": self.graph}
        cfg = TrainConfig(**{**fields, **changes})
        return cfg.resolve_preset(self.data.num_classes)

    def run(self, section: str, fn: Callable[[Check], None], needs_s: float, needs_cuda: bool = False) -> None:
        """Run one section; an exception is a FAIL row, too little time a skipped one."""
        if self.left() < needs_s:
            self.add(section, "section", f"{self.left():.0f} s left, needs ~{needs_s:.0f} s", "skipped: time budget")
            return
        began = time.perf_counter()
        try:
            fn(self)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row; the other sections still run
            line = next((s for s in str(exc).strip().splitlines() if s.strip()), type(exc).__name__)
            self.add(section, "section raised", f"{type(exc).__name__}: {line[:160]}", "FAIL")
            traceback.print_exc()
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            print(f"  [{section}] took {time.perf_counter() - began:.1f} s", flush=True)

    def attempt(self, section: str, label: str, fn: Callable[[], Any]) -> Any:
        """fn()'s result, or None and a FAIL row: one failed measurement leaves the others standing."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - reported as a row, with the traceback above the table
            line = next((s for s in str(exc).strip().splitlines() if s.strip()), type(exc).__name__)
            self.add(section, f"{label} raised", f"{type(exc).__name__}: {line[:160]}", "FAIL")
            traceback.print_exc()
            return None

    def cuda_status(self, ok: bool) -> str:
        """ok/FAIL on CUDA; on the CPU the same code ran eagerly, which says nothing about capture."""
        if not self.cuda:
            return "skipped: no CUDA (ran eagerly: " + ("ok)" if ok else "wrong)")
        return "ok" if ok else "FAIL"


# ------------------------------------------------------------------ sections
def section0_syncs(c: Check) -> None:
    from engine.graph import OpCounter

    for preset in ("mlp-small", "cond-mlp"):
        trainer = Trainer(c.recipe(preset=preset, cuda_graph="off"), c.data, c.device)
        train(trainer, 8)
        if not c.cuda:
            c.add("0", f"{preset}: sync debug mode", "needs CUDA", "skipped: no CUDA")
            continue
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            with OpCounter() as counter:
                for _ in range(8):
                    trainer.train_step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        c.add("0", f"{preset}: host syncs in 8 eager CUDA steps", f"{sum(counter.syncs.values())} "
              f"({dict(counter.syncs) or 'none'}), none raised in sync debug mode", c.cuda_status(not counter.syncs))
    if not c.cuda:
        return
    from engine.config import PRESETS

    for preset in (p for p in PRESETS if p != "auto"):  # every preset records and replays (batch 64, defaults)
        def replays(preset: str = preset) -> None:
            trainer = Trainer(c.recipe(preset=preset, batch_size=64, cuda_graph="on"), c.data, c.device)
            train(trainer, 24)
            finite = bool(trainer.read_stats().finite)
            c.add("0", f"{preset}: 24 steps with --cuda-graph on", f"{trainer.graph_summary}, finite {finite}",
                  "ok" if trainer.capture.ready and finite else "FAIL")

        c.attempt("0", f"{preset} with --cuda-graph on", replays)


def section1_agreement(c: Check) -> None:
    for amp, tol_w, tol_l in (("off", 1e-3, 0.02), ("bf16", 2e-2, 0.05)):
        runs = {}
        for name, mode in (("captured", c.graph), ("eager", "off"), ("eager again", "off")):
            trainer = Trainer(c.recipe(amp=amp, cuda_graph=mode), c.data, c.device)
            runs[name] = (trainer, train_recording(trainer, c.steps))
        (cap, cap_l), (eag, eag_l), (again, again_l) = runs["captured"], runs["eager"], runs["eager again"]
        floor, diff = rel_diff(params(eag), params(again)), rel_diff(params(cap), params(eag))
        loss_floor, loss_diff = loss_gap(eag_l, again_l), loss_gap(cap_l, eag_l)
        name = "fp32" if amp == "off" else "bf16"
        w_ok = diff <= max(tol_w, 4 * floor)
        l_ok = loss_diff <= max(tol_l, 4 * loss_floor)
        c.add("1", f"{name}, {c.steps} steps: G and D weights, relative L2 distance",
              f"{diff:.2e} (eager vs eager {floor:.2e}; tolerance {tol_w:g} or 4x that)", c.cuda_status(w_ok))
        c.add("1", f"{name}: mean losses of the last half, largest relative gap",
              f"{loss_diff:.2e} (eager vs eager {loss_floor:.2e}; tolerance {tol_l:g} or 4x that)", c.cuda_status(l_ok))
        exact = (cap.step == eag.step == c.steps and torch.equal(cap.rng.get_state(), eag.rng.get_state())
                 and float(cap.step_counter) == c.steps and adam_steps(cap) == adam_steps(eag) == {float(c.steps)})
        replays = f"{cap.capture.captures} capture(s), {cap.graph_summary}; notes: {cap.take_notes() or 'none'}"
        c.add("1", f"{name}: steps, Adam step counts, batch RNG state equal", f"{exact}; {replays}",
              c.cuda_status(exact and (cap.capture.ready or not c.cuda)))


def section2_learning_rate(c: Check) -> None:
    trainer = Trainer(c.recipe(), c.data, c.device)
    train(trainer, 16)
    lr_tensor, captures = trainer.hyper.lr_g, trainer.capture.captures
    trainer.set_hyperparams(trainer.cfg.with_hyperparams(lr_g=1e-12))
    g0, d0 = params(trainer, "G"), params(trainer, "D")
    ran = trainer.train_steps(8)
    g_moved, d_moved = max_change(g0, params(trainer, "G")), max_change(d0, params(trainer, "D"))
    trainer.set_hyperparams(trainer.cfg.with_hyperparams(lr_g=2e-4))
    g1 = params(trainer, "G")
    trainer.train_steps(8)
    g_again = max_change(g1, params(trainer, "G"))
    ok = g_moved < 1e-8 and d_moved > 1e-5 and g_again > 1e-5 and trainer.hyper.lr_g is lr_tensor
    ok = ok and trainer.capture.captures == captures and (ran == 8 or not c.cuda)
    c.add("2", "lr_g 1e-12 from step 16: G's largest change in the next replay (8 steps), D's; "
               "then lr_g 2e-4: G's", f"{g_moved:.1e}, {d_moved:.1e}; {g_again:.1e} "
               f"(steps in the call: {ran}; captures {captures} -> {trainer.capture.captures})", c.cuda_status(ok))


def section3_checkpoints(c: Check) -> None:
    from engine.checkpoint import load_training_checkpoint, save_checkpoint

    cap = Trainer(c.recipe(), c.data, c.device)
    train(cap, 40)
    path = c.work / "captured.pt"
    save_checkpoint(path, {"config": cap.cfg.to_dict(), "trainer": cap.state_dict(), "hparam_history": []})
    payload, saved = load_training_checkpoint(path)
    cpu_data = c.data.to(torch.device("cpu"))
    on_cpu = Trainer(dataclasses.replace(saved, device="cpu", cuda_graph="auto"), cpu_data, torch.device("cpu"))
    notes = on_cpu.load_state_dict(payload["trainer"])
    same = rel_diff(params(on_cpu), params(cap)) == 0.0 and adam_steps(on_cpu) == {40.0} and on_cpu.step == 40
    train(on_cpu, 48)
    finite = bool(on_cpu.read_stats().finite)
    c.add("3", "captured run's checkpoint (step 40) on the CPU: weights and Adam equal, 8 CPU steps finite",
          f"{same}, {finite}; note: {notes[0][:60] + '...' if notes else 'none'}", c.cuda_status(same and finite))

    back = Trainer(c.recipe(), c.data, c.device)
    train(back, 16)
    before = {id(t): t.data_ptr() for t in [*back.G.parameters(), *back.D.parameters(), back.hyper.lr_g]}
    back.load_state_dict(on_cpu.state_dict())
    kept = {id(t): t.data_ptr() for t in [*back.G.parameters(), *back.D.parameters(), back.hyper.lr_g]} == before
    train(back, 48 + 16)
    finite = bool(back.read_stats().finite)
    ok = kept and finite and back.step == 64 and adam_steps(back) == {64.0}
    c.add("3", "CPU checkpoint (step 48) into a captured trainer: identities kept, 16 more steps finite",
          f"{kept}, {finite}, step {back.step}, captures {back.capture.captures}", c.cuda_status(ok))


def section4_throughput(c: Check) -> None:
    from bench.throughput import classic_runner, engine_runner

    if not c.smoke:
        from engine.judge import load_or_train

        load_or_train(c.data, c.device)  # trained once (section 5 did): the product's quality worker finds it ready
    results: dict[tuple[str, int], dict[str, float]] = {}
    for preset in ("mlp-small", "cond-mlp"):
        for batch in (64, 128):
            if c.left() < 25:
                c.add("4", f"{preset} batch {batch}", "time budget", "skipped: time budget")
                continue
            rates: dict[str, float] = {}
            for mode in ("on", "off") if c.cuda else ("off",):
                cfg = c.recipe(preset=preset, batch_size=batch, loss="bce", diff_augment=False, cuda_graph=mode)
                label = f"{preset} b{batch} graph {mode}"
                bare = c.attempt("4", f"{label}: bare", lambda: engine_runner(cfg, c.data, c.device)(c.seconds))
                product = c.attempt("4", f"{label}: product", lambda: product_rate(c, cfg))
                if bare is not None and product is not None:
                    rates[f"bare {mode}"], (rates[f"product {mode}"], note) = bare, product
                    c.add("4", f"{label}: bare / product", f"{bare:,.0f} / {product[0]:,.0f} img/s ({note})", "info")
            classic_cfg = c.recipe(preset=preset, batch_size=batch, loss="bce")
            classic = c.attempt("4", f"{preset} b{batch}: classic", lambda: classic_runner(classic_cfg, c.data, c.device)(c.seconds))
            if classic is not None:
                rates["classic"] = classic
                c.add("4", f"{preset} b{batch}: classic loop", f"{classic:,.0f} img/s", "info")
            results[(preset, batch)] = rates
    if not c.cuda:
        c.add("4", "targets", "need CUDA", "skipped: no CUDA")
        return
    for (preset, batch), rates in results.items():
        if not {"product on", "bare on", "classic"} <= set(rates):
            continue
        product, bare, classic = rates["product on"], rates["bare on"], rates["classic"]
        goal = 150_000 if preset == "mlp-small" else 100_000
        c.add("4", f"target {preset} b{batch}: product >= {goal:,} img/s", f"{product:,.0f}", target(product >= goal))
        c.add("4", f"target {preset} b{batch}: product within 10% of bare", f"{product / bare:.2f}x",
              target(product >= 0.9 * bare))
        if preset == "mlp-small" and batch == 64:
            c.add("4", "target mlp-small b64: product >= 20x classic", f"{product / classic:.1f}x", target(product >= 20 * classic))


def section5_time_to_fd(c: Check, modes: tuple[str, ...]) -> None:
    from engine.judge import load_or_train
    from engine.quality import QualityReference

    judge = load_or_train(c.data, c.device)  # the user's judge cache: trained there once per machine
    reference = QualityReference.build(judge, c.data, 1000)
    cap_s = 10.0 if c.smoke else 60.0
    for mode in modes:
        c.attempt("5", f"graph {mode}", lambda: time_to_fd(c, mode, reference, cap_s))


def time_to_fd(c: Check, mode: str, reference: Any, cap_s: float) -> None:
    """Train the default recipe until FD <= 2.5x its floor, measuring every ~second of training."""
    trainer = Trainer(c.recipe(cuda_graph=mode), c.data, c.device)
    noise = torch.randn(1000, trainer.cfg.latent_dim, generator=torch.Generator().manual_seed(1234))
    trained, ratio, measurements = 0.0, float("inf"), 0
    while trained < min(cap_s, c.left() - 10) and ratio > 2.5:
        began = time.perf_counter()
        while time.perf_counter() - began < (0.5 if trained < 5 else 1.0):
            trainer.train_steps(1 << 30)
        trainer.read_stats()  # the run's log read, and a sync: the clock sees the work done
        trained += time.perf_counter() - began
        images = torch.from_numpy(trainer.sample(noise)).to(c.device).float().div(127.5).sub(1).unsqueeze(1)
        q = reference.measure(trainer.step, images, trainer.labels_for(1000))
        ratio, measurements = q.fd / q.fd_floor, measurements + 1
    met = ratio <= 2.5
    value = (f"{trained:.1f} s, {trainer.step} steps, FD {ratio:.2f}x floor ({measurements} measurements; "
             f"{trainer.graph_summary})")
    c.add("5", f"{'graph' if mode == 'on' else 'eager'}: training seconds to FD <= 2.5x floor (target <= 15 s)",
          value if met else f"not within {trained:.0f} s: {value}",
          target(met and trained <= 15) if c.cuda and mode == "on" else "info")


# ------------------------------------------------------------------ helpers
def train(trainer: Trainer, until: int) -> None:
    """Train to step `until` through train_steps (replays where captured)."""
    while trainer.step < until:
        trainer.train_steps(until - trainer.step)


def train_recording(trainer: Trainer, steps: int) -> list[tuple[float, float]]:
    """Train `steps` steps, reading the mean losses every 8 steps (one replay's worth)."""
    out = []
    while trainer.step < steps:
        train(trainer, min(steps, trainer.step + 8 - trainer.step % 8))
        stats = trainer.read_stats()
        if stats is not None:
            out.append((stats.d_loss, stats.g_loss))
    return out


def loss_gap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Largest relative gap of the mean d and g losses over the last half of two records."""
    half = len(a) // 2
    gaps = []
    for k in (0, 1):
        x = sum(v[k] for v in a[half:]) / max(1, len(a) - half)
        y = sum(v[k] for v in b[half:]) / max(1, len(b) - half)
        gaps.append(abs(x - y) / max(abs(y), 1e-6))
    return max(gaps)


def params(trainer: Trainer, which: str = "GD") -> torch.Tensor:
    nets = [net for name, net in (("G", trainer.G), ("D", trainer.D)) if name in which]
    return torch.cat([p.detach().double().flatten().cpu() for net in nets for p in net.parameters()])


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def max_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def adam_steps(trainer: Trainer) -> set[float]:
    return {float(s["step"]) for opt in (trainer.opt_g, trainer.opt_d) for s in opt.state.values()}


def target(met: bool) -> str:
    return "met" if met else "missed"


def product_rate(c: Check, cfg: TrainConfig) -> tuple[float, str]:
    """The whole product's images/s: engine.runner.Runner on its thread with a sink, its metrics
    records over the training time they log (start-up excluded, side work included)."""
    from engine import commands as cmd
    from engine import events as ev
    from engine.runner import QueueSink, Runner

    sink = QueueSink()
    product_cfg = dataclasses.replace(cfg, steps=10**9, quality_every=0 if c.smoke else 1000, tensorboard=not c.smoke)
    runner = Runner(product_cfg, sink, runs_dir=c.work / "runs", run_name=f"p{len(c.rows)}", data=c.data)
    runner.start()
    deadline = time.monotonic() + 120
    while runner.trainer is None or runner.trainer.step < 50:
        if runner.done or time.monotonic() > deadline:
            raise RuntimeError(f"the product did not start: {[e for e in sink.drain() if 'Error' in type(e).__name__]}")
        time.sleep(0.05)
    time.sleep(c.seconds + 0.5)
    runner.submit(cmd.Stop(save=False))
    if not runner.join(120):
        raise RuntimeError("the product did not stop within 120 s")
    metrics = [e for e in sink.drain() if isinstance(e, ev.MetricsLogged)]
    first, last = metrics[1] if len(metrics) > 2 else metrics[0], metrics[-1]
    rate = (last.step - first.step) * cfg.batch_size * cfg.d_steps / max(1e-9, last.elapsed_s - first.elapsed_s)
    trainer = runner.trainer
    how = f"{len(metrics)} records; steps " + (trainer.graph_summary if trainer.capture.captures else
                                               "eager" + (" - the runner does not call train_steps yet" if cfg.cuda_graph == "on" and c.cuda else ""))
    return rate, how


def environment(c: Check) -> None:
    name = torch.cuda.get_device_name() if c.cuda else "CPU"
    cap = ".".join(map(str, torch.cuda.get_device_capability())) if c.cuda else "-"
    c.add("env", "device", f"{name} (capability {cap}), torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"python {platform.python_version()}", "info")
    assert c.data is not None
    c.add("env", "data", c.data.info.describe(), "info")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(DATA_ROOT), help="folder with the MNIST IDX files (or MNIST/raw under it)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON to this file")
    p.add_argument("--budget-s", type=float, default=290.0, help="wall-clock budget; sections past it are skipped")
    p.add_argument("--cpu-smoke", action="store_true", help="shrink every size and run on the CPU (sections that "
                   "need CUDA run eagerly and say 'skipped: no CUDA')")
    p.add_argument("--strict-targets", action="store_true", help="a missed speed target fails too")
    args = p.parse_args()
    c = Check(args)
    if not c.cuda:  # the product's thread count (engine/devices.training_threads): more spin in OpenMP barriers
        from engine.devices import training_threads

        torch.set_num_threads(training_threads(0))
    print(f"gpu_check: {c.device}, budget {c.budget:.0f} s, work folder {c.work}", flush=True)
    c.data = load_dataset("mnist", args.data_root).to(c.device)
    environment(c)
    c.run("0", section0_syncs, needs_s=20)
    c.run("1", section1_agreement, needs_s=30)
    c.run("2", section2_learning_rate, needs_s=10)
    c.run("3", section3_checkpoints, needs_s=15)
    c.run("5", lambda c: section5_time_to_fd(c, (c.graph,)), needs_s=40)
    c.run("4", section4_throughput, needs_s=30)
    if c.cuda:  # eager's time to the same quality (about 50 s on the H200 before): with the time that is left
        c.run("5", lambda c: section5_time_to_fd(c, ("off",)), needs_s=40)
    rows = sorted(c.rows, key=lambda r: -1 if r.section == "env" else int(r.section))  # stable: rows keep their order
    failed = [r for r in rows if r.status == "FAIL" or (args.strict_targets and r.status == "missed")]
    width, status_width = max(len(r.check) for r in rows), max(len(r.status) for r in rows)
    print(f"\n{'sec':4s} {'check':{width}s}  {'status':{status_width}s}  value")
    for r in rows:
        print(f"{r.section:4s} {r.check:{width}s}  {r.status:{status_width}s}  {r.value}")
    elapsed = time.perf_counter() - c.start
    print(f"\n{len(failed)} failed, {elapsed:.0f} s of the {c.budget:.0f} s budget", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"elapsed_s": elapsed, "failed": len(failed), "device": str(c.device),
                                        "smoke": c.smoke, "rows": [dataclasses.asdict(r) for r in rows]}, indent=1))
    from engine.serve import finish_process

    sys.exit(finish_process(1 if failed else 0))  # no interpreter teardown under a side thread still in torch


if __name__ == "__main__":
    main()
