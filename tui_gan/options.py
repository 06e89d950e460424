"""What the command line asked for (`Options`) and how it is parsed and checked.

A leaf module: it imports the engine's config and run-folder readers, never the dashboard, the
launcher or the subcommands, so `cli/`, `app` and `process/` all import it
without a circle. Nothing here imports torch: every mistake is answered in a fraction of a second,
before anything starts.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from engine.config import LOSSES, NAMED_DATASETS, PRESETS, ConfigError, TrainConfig
from engine.notify_targets import CATEGORIES, DEFAULT_ON, collect_urls, config_file_urls, env_on, env_urls, parse_on

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
    notify: tuple[str, ...] = field(default=(), repr=False)
    """Apprise URLs (--notify, the --config file's `notify`, GAN_TUI_NOTIFY). They carry tokens: kept out of
    TrainConfig (saved as config.json), out of reprs, and handed to a trainer process only in its environment."""
    notify_on: frozenset[str] = DEFAULT_ON
    """What is sent (engine/notify.py): finished, failed, alarms, changes."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the README's option table)."""
    p = Parser(
        prog="gan-tui",
        description="Train a GAN on MNIST-style digits and watch it in the terminal. The training runs in "
        "its own process: closing the terminal or losing SSH never stops it.",
        epilog="Flags override the --config file. Runs are written to RUNS_DIR/RUN_NAME/. "
        "Also: `gan-tui attach [RUN_DIR|latest]` opens the dashboard on a running run, "
        "`gan-tui ls` lists the runs (--json for scripts), `gan-tui show RUN` shows one, `gan-tui compare RUN RUN...` "
        "overlays runs, `gan-tui export RUN grid|gif|csv|samples` exports from one, `gan-tui sweep` runs many, "
        "`gan-tui notify-test URL` tries a notification.",
    )
    p.add_argument("--version", action="version", version=f"gan-tui {_version()}")
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
    where = p.add_mutually_exclusive_group()  # this terminal's progress line, or none at all: not both
    where.add_argument("--headless", action="store_true", help="train in this process with a progress line instead of the dashboard")
    where.add_argument("--detach", action="store_true",
                   help="start the training process and return at once; see `gan-tui attach` and `gan-tui ls`")
    p.add_argument("--serve", action="store_true", help="kept for old scripts: every training process serves viewers on its control socket")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # tests and debugging
    p.add_argument("--notify", action="append", metavar="URL",
                   help="send a message when the run finishes, fails or raises an alarm, to this Apprise URL (Slack, "
                        "Discord, ntfy, e-mail, json://host/path, ...; repeatable; also GAN_TUI_NOTIFY, space-separated, "
                        "which keeps it out of shell history)")
    p.add_argument("--notify-on", metavar="LIST",
                   help=f"what is sent: a comma list of {', '.join(CATEGORIES)}, or all (default: finished,failed,alarms)")
    p.add_argument("--ascii", action="store_true", help="draw digits with an ASCII ramp instead of half-blocks")
    p.add_argument("--refresh", type=_float, metavar="HZ", default=10.0, help="dashboard redraws per second (default 10)")
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gan-tui")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


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
    else:  # a new run: its folder must be nameable and makeable, said now rather than as a trainer's traceback
        if args.run_name is not None:
            check_folder_name("run_name", args.run_name, Path(args.runs_dir))
        check_writable_folder("runs_dir", Path(args.runs_dir))
    notify, notify_on = notify_options(args)
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
        notify=notify,
        notify_on=notify_on,
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


def check_folder_name(field: str, name: str, parent: Path) -> None:
    """A run or sweep folder name: one plain path component that the file system under `parent` can hold."""
    if "/" in name or "\0" in name or name in ("", ".", ".."):
        raise ConfigError(field, name, "must be a plain folder name (no /)")
    size, limit = len(os.fsencode(name)), _name_max(parent)
    if size > limit:
        shown = name if len(name) <= 40 else f"{name[:32]}...({len(name)} characters)"
        raise ConfigError(field, shown, f"it is {size} bytes long; a folder name there holds at most {limit}")


def check_writable_folder(field: str, folder: Path) -> None:
    """`folder` (or, where it does not exist yet, the nearest folder above it) can be written by this user."""
    probe = folder.expanduser().absolute()
    try:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(field, str(folder), f"{probe} is a file, not a folder")
    except OSError as exc:  # a path too long, a loop of symlinks
        raise ConfigError(field, str(folder), f"that path cannot be used ({exc.strerror})") from None
    if not os.access(probe, os.W_OK | os.X_OK):  # EROFS as well as permissions, for root too
        why = "it is on a read-only file system" if _read_only(probe) else "this user may not write there"
        raise ConfigError(field, str(folder), f"{probe} cannot be written ({why}); pick another --runs-dir")


def _name_max(parent: Path) -> int:
    probe = parent.expanduser().absolute()
    while probe != probe.parent:
        try:
            return int(os.pathconf(probe, "PC_NAME_MAX"))
        except (OSError, ValueError):
            probe = probe.parent
    return 255


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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
        return _config_file(args.config)[0]
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


# ------------------------------------------------------------ notifications
def notify_options(args: argparse.Namespace) -> tuple[tuple[str, ...], frozenset[str]]:
    """The URLs of --notify, the --config file and GAN_TUI_NOTIFY, each once and each read by Apprise
    (ConfigError naming a bad one masked), and the categories (--notify-on, else GAN_TUI_NOTIFY_ON)."""
    urls = collect_urls(args.notify or (), _config_file(args.config)[1] if args.config else (), env_urls(os.environ))
    on = parse_on(args.notify_on) if args.notify_on is not None else env_on(os.environ)
    if args.notify_on is not None and not urls:  # it would send nothing, and say nothing of it
        raise ConfigError("notify_on", args.notify_on, "with no URL to send to; add --notify URL (or set "
                          "GAN_TUI_NOTIFY)")
    if urls:
        from engine.notify_targets import read_targets  # imports Apprise (no numpy, no torch)

        read_targets(urls)
    return urls, on


def without_notify_urls(argv: Sequence[str]) -> list[str]:
    """`argv` less every `--notify URL` and `--notify=URL`: a child process gets them in its environment,
    because a command line is visible to every user of the machine (`ps`) and may be logged."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--notify":
            skip = True
        elif not arg.startswith("--notify="):
            out.append(arg)
    return out


def _config_file(path: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A --config file's settings, and its `notify` URLs taken out of them: a URL never reaches
    TrainConfig, whose config.json every run keeps. Files without them are read as before."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or "notify" not in data:
        return TrainConfig.load(path, saved=False).to_dict(), ()  # its own one-line errors
    urls = config_file_urls(data.pop("notify"))
    return TrainConfig.from_dict(data).to_dict(), urls


SUBCOMMANDS = ("attach", "ls", "show", "export", "compare", "sweep", "notify-test")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage block), exit status 2, with a "did you
    mean" for a near miss of one of this parser's own flags, choices or (for gan-tui itself) subcommands.
    Abbreviated flags are refused (a typo gets its did-you-mean): a script's `--lr 1e-3` that meant
    --lr-g today would become ambiguous, or mean another flag, once a flag is added."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        extra = message.removeprefix("unrecognized arguments:").split()
        if message.startswith("unrecognized arguments:") and extra:
            if extra[0] in SUBCOMMANDS:
                # `gan-tui --runs-dir X ls`: the subcommand came after an option of the training command.
                message = f"{extra[0]} is a subcommand and goes first: gan-tui {' '.join(extra)} followed by the options"
            else:
                message = self._near_misses(message, extra)
        else:
            choice = _INVALID_CHOICE.search(message)
            if choice is not None:
                options = [c.strip().strip("'") for c in choice.group(2).split(",")]
                message += did_you_mean(choice.group(1), options)
        self.exit(2, f"{self.prog}: {message} (see --help)\n")

    def _near_misses(self, message: str, extra: list[str]) -> str:
        """`--lr-gg`: did you mean --lr-g? `lss` as gan-tui's first word: did you mean gan-tui ls?"""
        flags = [s for s in self._option_string_actions if s.startswith("--")]
        for word in extra:
            if word.startswith("--"):
                name = word.split("=", 1)[0]
                hint = did_you_mean(name, flags)
                if hint:
                    return f"unrecognized argument {name}{hint}"
            elif self.prog == "gan-tui" and word == extra[0] and not word.startswith("-"):
                hint = did_you_mean(word, list(SUBCOMMANDS), prefix="gan-tui ")
                if hint:
                    return f"{word!r} is not a subcommand{hint}"
        return message


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def did_you_mean(word: str, options: list[str], prefix: str = "") -> str:
    """`; did you mean --lr-g?` for the closest of `options` ("" when none is close)."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


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


__all__ = ["Options", "Parser", "build_parser", "check_dataset", "check_folder_name", "check_writable_folder",
           "notify_options", "parse_options", "without_notify_urls"]
