"""Small text helpers shared by the headless progress line, the status bar and `gan-tui ls`."""

from __future__ import annotations

from pathlib import Path


def format_duration(seconds: float) -> str:
    """4:05, 1:02:03."""
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(step: int, total: int, elapsed_s: float) -> float | None:
    """Seconds left at the run's average pace so far, or None when there is no pace or nothing left."""
    if step <= 0 or elapsed_s <= 0 or total <= step:
        return None
    return (total - step) * elapsed_s / step


def format_age(seconds: float) -> str:
    """How long ago, humanely: `now`, `45s`, `5m`, `2h`, `3d`."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds >= 1 else "now"


def gan_tui_command(*args: object) -> str:
    """A `gan-tui ...` command line the user can paste: `uv run gan-tui ...` when gan-tui is not on
    their PATH (launched through `uv run`, which puts the project's .venv/bin on PATH only for its
    child), the script's own path when it was typed as one (`.venv/bin/gan-tui`), `python -m
    tui_gan.cli ...` when none of these works."""
    import shlex

    return " ".join([*_gan_tui_prefix(), *(shlex.quote(str(a)) for a in args)])


NO_CHECKPOINT = "it saved no checkpoint, so nothing of it can be resumed; start a new run"


def how_to_go_on(run_dir: object, finished_at: int | None = None) -> str:
    """The command that trains a run on: `--resume` (with `--steps` past `finished_at` for a finished
    run), or, when it saved no checkpoint, that it cannot be resumed. Reads the run folder."""
    from engine.runs import RunDir  # a folder listing; the engine's modules load only when asked

    if not RunDir(Path(str(run_dir))).checkpoints():
        return NO_CHECKPOINT
    if finished_at is not None:
        return f"train it further with: {gan_tui_command('--resume', run_dir, '--steps', max(2 * finished_at, finished_at + 1))}"
    return f"resume it with: {gan_tui_command('--resume', run_dir)}"


def _gan_tui_prefix() -> list[str]:
    import os
    import shlex
    import shutil
    import sys

    path = os.environ.get("PATH", "")
    venv = os.environ.get("VIRTUAL_ENV")
    under_uv = "UV_RUN_RECURSION_DEPTH" in os.environ
    if under_uv and venv:
        # uv run prepended the venv's bin folder; the user's own shell does not have it.
        venv_bin = os.path.join(venv, "bin")
        path = os.pathsep.join(p for p in path.split(os.pathsep) if os.path.abspath(p) != os.path.abspath(venv_bin))
    if shutil.which("gan-tui", path=path):
        return ["gan-tui"]
    if under_uv:
        return ["uv", "run", "gan-tui"]
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "gan-tui" and os.access(script, os.X_OK):
        return [shlex.quote(os.path.abspath(script))]
    return [shlex.quote(sys.executable), "-m", "tui_gan.cli"]
