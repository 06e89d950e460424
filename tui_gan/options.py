"""What the command line asked for (`Options`) and how it is parsed and checked.

A leaf module: it imports the engine's config and run-folder readers, never the dashboard, the
launcher or the subcommands, so `cli`, `app`, `commands`, `detach` and `headless` all import it
without a circle. Nothing here imports torch: every mistake is answered in a fraction of a second,
before anything starts.
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.config import LOSSES, NAMED_DATASETS, PRESETS, ConfigError, TrainConfig

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
    "cuda_graph": "cuda_graph",
    "deterministic": "deterministic",
    "threads": "threads",
    "quality_every": "quality_every",
    "tensorboard": "tensorboard",
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
    in_process: bool = False
    """Train inside the dashboard's own process (tests, debugging); the default is a trainer process."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the README's option table)."""
    p = Parser(
        prog="gan-tui",
        description="Train a GAN on MNIST-style digits and watch it in the terminal. The training runs in "
        "its own process: closing the terminal or losing SSH never stops it.",
        epilog="Flags override the --config file. Runs are written to RUNS_DIR/RUN_NAME/. "
        "Also: `gan-tui attach [RUN_DIR|latest]` opens the dashboard on a running run, "
        "`gan-tui ls` lists the runs, `gan-tui compare RUN RUN...` overlays runs, `gan-tui export RUN grid|gif|csv|samples` exports from one.",
    )
    p.add_argument("--config", metavar="FILE", help="JSON config file (a run's config.json works)")
    p.add_argument("--dataset", metavar="NAME|PATH", help="mnist, fashion-mnist, kmnist, synthetic, or a path to IDX files or images")
    p.add_argument("--data-root", metavar="DIR", help="folder holding datasets (default: ~/.cache/gan-tui/datasets)")
    p.add_argument("--preset", choices=PRESETS, help="architecture (default auto: cond-mlp for labelled data, mlp otherwise)")
    p.add_argument("--loss", choices=LOSSES, help="objective (default hinge)")
    p.add_argument("--steps", type=_int, metavar="N", help="training steps")
    p.add_argument("--epochs", type=_float, metavar="X", help="length in epochs (overrides --steps)")
    p.add_argument("--batch-size", type=_int, metavar="N")
    p.add_argument("--lr-g", type=_float, metavar="X", help="generator learning rate")
    p.add_argument("--lr-d", type=_float, metavar="X", help="discriminator learning rate")
    p.add_argument("--seed", type=_int, metavar="N")
    p.add_argument("--device", metavar="auto|cpu|cuda|cuda:N", help="auto picks CUDA when present; cuda:N the N-th GPU")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="bitwise-reproducible GPU kernels (slower; the CPU is reproducible without it)")
    p.add_argument("--threads", type=_int, metavar="N",
                   help="CPU threads for training on the CPU (default 0: all cores but one, so side work and the "
                        "dashboard keep a core)")
    p.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"),
                   help="mixed precision (auto: bf16 on GPUs of compute capability 8.0+, fp16 on 7.x; on the CPU bf16 "
                        "where it has bf16 instructions, else off)")
    p.add_argument("--cuda-graph", choices=("auto", "on", "off"),
                   help="record the training step in a CUDA graph and replay it 8 steps at a time (auto: on CUDA, "
                        "eager steps with a note where that fails or with fp16; on: refused without CUDA)")
    p.add_argument("--quality-every", type=_int, metavar="N",
                   help="steps between sample-quality measurements through the dataset's classifier (default 1000; 0: off)")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None,
                   help="do not write the run folder as a TensorBoard log dir")
    p.add_argument("--runs-dir", metavar="DIR", default="runs", help="where run folders go (default ./runs)")
    p.add_argument("--run-name", metavar="NAME", help="run folder name (default: date-dataset-preset)")
    p.add_argument("--resume", metavar="RUN_DIR|latest", help="continue a run from its last checkpoint")
    p.add_argument("--headless", action="store_true", help="train in this process with a progress line instead of the dashboard")
    p.add_argument("--detach", action="store_true",
                   help="start the training process and return at once; see `gan-tui attach` and `gan-tui ls`")
    p.add_argument("--serve", action="store_true", help="kept for old scripts: every training process serves viewers on its control socket")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # tests and debugging
    p.add_argument("--ascii", action="store_true", help="draw digits with an ASCII ramp instead of half-blocks")
    p.add_argument("--refresh", type=_float, metavar="HZ", default=10.0, help="dashboard redraws per second (default 10)")
    return p


def parse_options(argv: Sequence[str]) -> Options:
    """Parse and validate; ConfigError (one line) for any bad value, before anything starts."""
    args = build_parser().parse_args(argv)
    base = _base_config(args)
    overrides = {field: getattr(args, flag) for flag, field in _CONFIG_FLAGS.items() if getattr(args, flag) is not None}
    data: dict[str, Any] = {**base, **overrides}
    config = TrainConfig.from_dict(data)
    if not 0.5 <= args.refresh <= 60:
        raise ConfigError("refresh", args.refresh, "must be from 0.5 to 60 redraws per second")
    if args.dataset is not None or not args.resume:
        check_dataset(config.dataset, config.data_root)
    if args.resume:
        _check_resume_length(Path(args.runs_dir), args.resume, args.steps, args.epochs)
    return Options(
        config=config,
        runs_dir=Path(args.runs_dir),
        run_name=args.run_name,
        resume=args.resume,
        headless=args.headless,
        ascii=args.ascii,
        refresh_hz=args.refresh,
        detach=args.detach,
        in_process=args.in_process,
    )


def check_dataset(dataset: str, data_root: str | None) -> None:
    """A dataset name or path that cannot work, refused by name before torch loads."""
    if dataset in NAMED_DATASETS:
        if data_root is not None and not Path(data_root).expanduser().is_dir():
            raise ConfigError("data_root", data_root, "that folder does not exist")
        return
    path = Path(dataset).expanduser()
    if path.exists():
        return
    choices = ", ".join(NAMED_DATASETS)
    if "/" not in dataset and not path.suffix:
        close = difflib.get_close_matches(dataset.lower(), NAMED_DATASETS, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError("dataset", dataset, f"{hint}use one of {choices}, or a path to IDX files or images")
    raise ConfigError("dataset", dataset, f"that path does not exist; use an existing path or one of {choices}")


def _check_resume_length(runs_dir: Path, spec: str, steps: int | None, epochs: float | None) -> None:
    """Resuming a finished run trains on only when --steps says how far (more than where it stands)."""
    from engine.runs import RunError, resolve_run

    try:
        run = resolve_run(runs_dir, spec)
    except RunError:
        return  # _base_config has already said why
    record = run.read_state()
    done = record.get("step")
    if not isinstance(done, int) or epochs is not None:
        return
    if steps is not None and steps <= done:
        raise ConfigError("steps", steps, f"must be more than {done:,}, the step run {run.path} is at")
    if steps is None and record.get("state") == "finished":
        raise ConfigError("resume", spec, f"run {run.path} finished at step {done:,}; "
                                          f"pass --steps N (more than {done:,}) to train it further")


def _base_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config file, else the resumed run's own config, else the defaults."""
    if args.config:
        return TrainConfig.load(args.config, saved=False).to_dict()
    if args.resume:
        from engine.runs import RunError, resolve_run

        try:
            run = resolve_run(Path(args.runs_dir), args.resume)
            return TrainConfig.load(run.config_path).to_dict()
        except RunError as exc:
            raise ConfigError("resume", args.resume, str(exc)) from None
        except (OSError, ValueError) as exc:
            raise ConfigError("resume", args.resume, f"its config.json is unreadable ({exc})") from None
    return {}


SUBCOMMANDS = ("attach", "ls", "export", "compare", "sweep")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        extra = message.removeprefix("unrecognized arguments:").split()
        if message.startswith("unrecognized arguments:") and extra and extra[0] in SUBCOMMANDS:
            # `gan-tui --runs-dir X ls`: the subcommand came after an option of the training command.
            message = f"{extra[0]} is a subcommand and goes first: gan-tui {' '.join(extra)} followed by the options"
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


__all__ = ["Options", "Parser", "build_parser", "check_dataset", "parse_options"]
