"""`gan-tui show RUN [--json]`: one run in full, for a person (a labelled summary) or a script (one JSON
object: the run's `ls --json` record and the sections of engine/runs/details.py).

Reads only the folder (no torch). A damaged run is shown as far as it can be read, with what is
damaged named, and exits 0 (the command worked); a run that is not there is one line and exit 2.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Sequence

from engine.runs import RunError, format_lr, format_lr_pair, is_run_folder, resolve_run
from engine.runs.details import run_details
from engine.sweep.spec import is_sweep
from tui_gan.formatting import format_age, format_duration, gan_tui_command
from tui_gan.options import Parser

_LABEL = 13  # the label column: "checkpoints  "
_GLUE = "\u00a0"  # a space textwrap does not break at (it splits at ASCII whitespace only)


def main(argv: Sequence[str]) -> int:
    """`gan-tui show RUN|latest [--runs-dir DIR] [--json]`; exit status 2 for a run that is not there."""
    p = Parser(prog="gan-tui show", description="Show one run: config, state, progress, last metrics, quality, "
               "checkpoints and hyperparameter history.")
    p.add_argument("run", nargs="?", default="latest", metavar="RUN|latest",
                   help="a run folder, a run's name in --runs-dir, or latest (default)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    args = p.parse_args(argv)
    try:
        path = find_run(Path(args.runs_dir), args.run)
    except RunError as exc:
        print(f"gan-tui show: {exc}", file=sys.stderr)
        return 2
    details = run_details(path)
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100
    text = json.dumps(details, indent=2, allow_nan=False) if args.json else format_details(details, width)
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `gan-tui show RUN | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def find_run(runs_dir: Path, spec: str) -> Path:
    """The folder `spec` names: `latest` (the newest run in runs_dir), a path, or a run's name in
    runs_dir. RunError, in one line, for anything that is not a run folder."""
    if spec == "latest":
        try:
            return resolve_run(runs_dir, "latest").path
        except RunError:
            raise RunError(f"no runs in {runs_dir}") from None
    path = Path(spec).expanduser()
    if not path.exists() and (runs_dir / spec).exists():
        path = runs_dir / spec
    if not path.is_dir():
        raise RunError(f"there is no run {spec}" + (f" (nor {runs_dir / spec})" if runs_dir / spec != path else ""))
    if is_sweep(path):
        raise RunError(f"{path} is a sweep; list its trials with: {gan_tui_command('ls', '--runs-dir', path)}")
    try:
        if not is_run_folder(path):
            raise RunError(f"{path} is not a gan-tui run (no config.json, state.json, metrics.jsonl or train.log)")
    except OSError:
        pass  # a folder that cannot be read: shown as damaged, with the reason
    return path


def format_details(d: dict[str, Any], width: int = 100) -> str:
    """The labelled summary `gan-tui show` prints, at most `width` columns wide."""
    state = f"{d['state']} (pid {d['pid']})" if d["pid"] else str(d["state"])
    lines = [_line("run", [f"{d['name']}  {d['path']}"], width), _line("state", [state], width)]
    if d["damage"]:
        lines.append(_line("damaged", d["damage"], width, sep="; "))
    lines.append(_line("progress", [_progress(d["progress"])], width))
    lines.append(_line("updated", [_updated(d["updated"])], width))
    if d["metrics"]:
        lines.append(_line("metrics", [_metrics(d["metrics"])], width))
    lines.append(_line("quality", _quality(d["quality"]), width, each_line=True))
    lines.append(_line("checkpoints", _checkpoints(d["checkpoints"]), width, sep=", "))
    lines.append(_line("hyperparams", _history(d["hyperparams"]), width, each_line=True))
    lines.append(_line("config", _config(d), width, each_line=True))
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def _line(label: str, parts: list[str], width: int, sep: str = ", ", each_line: bool = False) -> str:
    """`label` then the parts, wrapped under the label column (one part per line when each_line); a short
    part of a list is never split across lines (`step 20,000 (latest, 5.7 MB)`)."""
    if not each_line and len(parts) > 1:
        parts = [p.replace(" ", _GLUE) if len(p) < 40 else p for p in parts]
    texts = parts if each_line else [sep.join(parts)]
    out = []
    for i, text in enumerate(texts):
        first = label.ljust(_LABEL - 1) + " " if i == 0 else " " * _LABEL
        out.append(textwrap.fill(text, max(40, width), initial_indent=first, subsequent_indent=" " * _LABEL,
                                 break_on_hyphens=False, break_long_words=False).replace(_GLUE, " "))
    return "\n".join(out)


def _progress(p: dict[str, Any]) -> str:
    step, steps = p["step"], p["steps"]
    if step is None:
        return "nothing readable"
    parts = [f"step {step:,}" + (f" of {steps:,} ({100 * step / steps:.0f}%)" if steps else "")]
    if p["epoch"] is not None:
        parts.append(f"epoch {p['epoch']:.2f}" + (f" of {p['epochs']:g}" if p["epochs"] else ""))
    if p["train_time_s"] is not None:
        parts.append(f"{format_duration(p['train_time_s'])} of training")
    if p["images_per_s"] is not None:
        parts.append(f"{p['images_per_s']:,.0f} images/s")
    for key, noun in (("resumes", "resume"), ("rollbacks", "rollback")):
        if p[key]:
            parts.append(f"{p[key]} {noun}{'s' if p[key] != 1 else ''}")
    return ", ".join(parts)


def _updated(updated: float | None) -> str:
    if updated is None:
        return "never (no file of the run can be read)"
    age = format_age(time.time() - updated)
    return f"{'just now' if age == 'now' else age + ' ago'} ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(updated))})"


def _metrics(m: dict[str, Any]) -> str:
    named = (("D loss", "d_loss", ".3f"), ("G loss", "g_loss", ".3f"), ("D(x)", "d_real", ".2f"),
             ("D(G(z))", "d_fake", ".2f"))
    parts = [f"{label} {m[key]:{spec}}" for label, key, spec in named if m.get(key) is not None]
    if m.get("grad_norm_g") is not None and m.get("grad_norm_d") is not None:
        parts.append(f"grad norm G {m['grad_norm_g']:.3g} D {m['grad_norm_d']:.3g}")
    parts.append(f"lr {format_lr_pair(m.get('lr_g'), m.get('lr_d'))}")
    return f"at step {m['step']:,}: " + ", ".join(parts) if m.get("step") is not None else ", ".join(parts)


def _quality(q: dict[str, Any]) -> list[str]:
    if q["status"] != "measured" or q["last"] is None:
        return [q["why_none"] or "none"]
    lines = [f"last: {_figures(q['last'])}"]
    if q["best"] is not None and q["best"]["step"] != q["last"]["step"]:
        lines.append(f"best: {_figures(q['best'])}")
    elif q["measurements"] > 1:
        lines[0] += " (the best)"
    every = f", at most one every {q['every']:,} steps" if q["every"] else ""  # side work: it may wait its turn
    judge = q["judge"] or {}
    accuracy = f", judge accuracy {judge['accuracy']:.1%}" if judge.get("accuracy") is not None else ""
    lines.append(f"{q['measurements']} measurement{'s' if q['measurements'] != 1 else ''}{every}{accuracy}")
    return lines


def _figures(f: dict[str, Any]) -> str:
    text = f"step {f['step']:,}: FD {f['fd']:.1f} over its floor {f['fd_floor']:.1f} = {f['fd_ratio']:.1f}x"
    if f["classes"]:
        text += f", classes {f['classes']['covered']}/{f['classes']['total']}"
    return text


def _checkpoints(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return ["none"]
    parts = []
    for i, c in enumerate(found):
        notes = [n for n, on in (("best", c["best"]), ("latest", i == len(found) - 1)) if on]
        if c["fd_ratio"] is not None:
            notes.append(f"{c['fd_ratio']:.1f}x")
        if c["bytes"] is not None:
            notes.append(_size(c["bytes"]))
        parts.append(f"step {c['step']:,}" + (f" ({', '.join(notes)})" if notes else ""))
    return parts


def _history(changes: list[dict[str, Any]]) -> list[str]:
    if not changes:
        return ["unchanged since the start"]
    lines = []
    for c in changes:
        what = ", ".join(f"{k} {_value(k, v['old'])} -> {_value(k, v['new'])}" for k, v in c["changes"].items())
        who = c["by"] + (f" {c['action']}" if c["action"] else "") + (f" from {c['member']}" if c["member"] else "")
        lines.append(f"step {c['step']:,}: {what or 'no change'} ({who})")
    return lines


def _config(d: dict[str, Any]) -> list[str]:
    config, changed = d["config"], d["config_changed"]
    if not config:
        return ["nothing readable"]
    lines = [", ".join(f"{k} {_value(k, v)}" for k, v in changed.items()) or "every setting at its default"]
    rest = len(config) - len(changed)
    lines.append(f"{rest} more at their defaults (--json lists every setting)")
    return lines


def _value(key: str, value: Any) -> str:
    if key.startswith("lr_"):
        return format_lr(value)
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    if isinstance(value, (bool, list, type(None))):
        return json.dumps(value)
    return str(value)


def _size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
