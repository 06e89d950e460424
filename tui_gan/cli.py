"""`gan-tui`: command line -> TrainConfig -> the dashboard or headless training.

Parsing imports nothing heavy (no torch), so `--help` and a bad flag answer at once, and the
dashboard can draw its first frame before torch has loaded.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.config import DEVICES, LOSSES, PRESETS, ConfigError, TrainConfig

# flag dest -> TrainConfig field, for the flags that map one to one
_CONFIG_FLAGS = {
    "dataset": "dataset",
    "data_root": "data_root",
    "preset": "preset",
    "loss": "loss",
    "steps": "steps",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr_g": "lr_g",
    "lr_d": "lr_d",
    "seed": "seed",
    "device": "device",
    "amp": "amp",
    "quality_every": "quality_every",
}


@dataclass(frozen=True)
class Options:
    """What the command line asked for, validated."""

    config: TrainConfig
    runs_dir: Path
    run_name: str | None
    resume: str | None
    headless: bool
    ascii: bool
    refresh_hz: float
    detach: bool = False
    serve: bool = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gan-tui` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("attach", "ls", "export"):
        from tui_gan.commands import run_subcommand

        return run_subcommand(args[0], args[1:])
    try:
        options = parse_options(args)
    except ConfigError as exc:
        print(f"gan-tui: {exc}", file=sys.stderr)
        return 2
    if options.detach:
        from tui_gan.detach import launch_detached

        return launch_detached(options, args)
    if options.headless:
        from tui_gan.headless import run_headless

        return run_headless(options)
    from tui_gan.app import GanApp

    app = GanApp(options)
    app.run()
    return app.return_code if app.return_code is not None else app.exit_status


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the README's option table)."""
    p = _Parser(
        prog="gan-tui",
        description="Train a GAN on MNIST-style digits and watch it in the terminal.",
        epilog="Flags override the --config file. Runs are written to RUNS_DIR/RUN_NAME/. "
        "Also: `gan-tui attach [RUN_DIR|latest]` opens the dashboard on a detached run, "
        "`gan-tui ls` lists the runs, `gan-tui export RUN grid|gif|csv|samples` exports from one.",
    )
    p.add_argument("--config", metavar="FILE", help="JSON config file (a run's config.json works)")
    p.add_argument("--dataset", metavar="NAME|PATH", help="mnist, fashion-mnist, kmnist, synthetic, or a path to IDX files or images")
    p.add_argument("--data-root", metavar="DIR", help="folder holding datasets (default: ~/.cache/gan-tui/datasets)")
    p.add_argument("--preset", choices=PRESETS, help="architecture (default auto: cond-mlp for labelled data, mlp otherwise)")
    p.add_argument("--loss", choices=LOSSES, help="objective (default bce)")
    p.add_argument("--steps", type=_int, metavar="N", help="training steps")
    p.add_argument("--epochs", type=_float, metavar="X", help="length in epochs (overrides --steps)")
    p.add_argument("--batch-size", type=_int, metavar="N")
    p.add_argument("--lr-g", type=_float, metavar="X", help="generator learning rate")
    p.add_argument("--lr-d", type=_float, metavar="X", help="discriminator learning rate")
    p.add_argument("--seed", type=_int, metavar="N")
    p.add_argument("--device", choices=DEVICES, help="auto picks CUDA when present")
    p.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), help="mixed precision (auto: bf16 on CUDA, off on CPU)")
    p.add_argument("--quality-every", type=_int, metavar="N",
                   help="steps between sample-quality measurements through the dataset's classifier (default 1000; 0: off)")
    p.add_argument("--runs-dir", metavar="DIR", default="runs", help="where run folders go (default ./runs)")
    p.add_argument("--run-name", metavar="NAME", help="run folder name (default: date-dataset-preset)")
    p.add_argument("--resume", metavar="RUN_DIR|latest", help="continue a run from its last checkpoint")
    p.add_argument("--headless", action="store_true", help="train with a progress line instead of the dashboard")
    p.add_argument("--detach", action="store_true",
                   help="train in a background process that outlives the terminal; see `gan-tui attach` and `gan-tui ls`")
    p.add_argument("--serve", action="store_true", help="with --headless: serve viewers on the run's control socket")
    p.add_argument("--ascii", action="store_true", help="draw digits with an ASCII ramp instead of half-blocks")
    p.add_argument("--refresh", type=_float, metavar="HZ", default=10.0, help="dashboard redraws per second (default 10)")
    return p


def parse_options(argv: Sequence[str]) -> Options:
    """Parse and validate; ConfigError (one line) for any bad value, before anything starts."""
    parser = build_parser()
    args = parser.parse_args(argv)
    base = _base_config(args)
    overrides = {field: getattr(args, flag) for flag, field in _CONFIG_FLAGS.items() if getattr(args, flag) is not None}
    data: dict[str, Any] = {**base, **overrides}
    config = TrainConfig.from_dict(data)
    if not 0.5 <= args.refresh <= 60:
        raise ConfigError("refresh", args.refresh, "must be from 0.5 to 60 redraws per second")
    return Options(
        config=config,
        runs_dir=Path(args.runs_dir),
        run_name=args.run_name,
        resume=args.resume,
        headless=args.headless,
        ascii=args.ascii,
        refresh_hz=args.refresh,
        detach=args.detach,
        serve=args.serve,
    )


def _base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config file, else the resumed run's own config, else the defaults."""
    if args.config:
        return TrainConfig.load(args.config).to_dict()
    if args.resume:
        from engine.runs import RunError, resolve_run

        try:
            run = resolve_run(Path(args.runs_dir), args.resume)
        except RunError as exc:
            raise ConfigError("resume", args.resume, str(exc)) from None
        return TrainConfig.load(run.config_path).to_dict()
    return {}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


if __name__ == "__main__":
    raise SystemExit(main())
