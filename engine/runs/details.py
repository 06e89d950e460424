"""One run folder in full, as plain data: what `gan-tui show` prints and `show --json` writes. The run's
ls record (summary.py) plus one section per question a user asks of a finished or live run: how it is
configured, how far it got, its last figures, its quality (or why it has none), its checkpoints, who
changed its hyperparameters, and what in the folder is damaged. What cannot be read is None or empty
and is named under `damage`; nothing here raises for a damaged folder. No torch here."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from engine.config import TrainConfig
from engine.runs.folder import RunDir
from engine.runs.reader import read_json_file, read_log, read_quality_index
from engine.runs.summary import number, quality_figures, run_summary, typed

#: The sections of `show --json`, beside the ls record's keys (README: "Scriptable output").
SECTIONS = ("config", "config_changed", "progress", "metrics", "quality", "checkpoints", "hyperparams", "damage")
#: Who changed a run's hyperparameters (`hyperparams[].by`).
CHANGED_BY = ("dashboard", "pbt", "resume", "rollback")
_METRICS = ("step", "epoch", "d_loss", "g_loss", "d_real", "d_fake", "grad_norm_g", "grad_norm_d", "lr_g", "lr_d",
            "images_per_s", "elapsed_s", "amp_skipped")
_QUALITY_EXTRA = ("diversity", "confidence", "kl_uniform", "label_agreement", "n")


def run_details(path: Path) -> dict[str, Any]:
    """The ls record of the run at `path` and the SECTIONS (see the README's table of them)."""
    details = run_summary(path)
    run = RunDir(path)
    config = read_json_file(run.config_path).data
    damage = details["reason"].split("; ") if details["reason"] else []
    try:
        records, bad = read_log(run.metrics_path)
    except OSError as exc:
        records, bad = [], 0
        damage.append(f"metrics.jsonl cannot be read ({exc.strerror or type(exc).__name__})")
    if bad:
        damage.append(f"metrics.jsonl has {bad} damaged line{'s' if bad != 1 else ''} (skipped)")
    metrics = [r for r in records if r.get("type") == "metrics"]
    details.update(
        config=config,
        config_changed=changed_settings(config),
        progress=_progress(details, records, metrics),
        metrics={k: number(metrics[-1].get(k)) for k in _METRICS} if metrics else None,
        quality=_quality(details, config, records),
        checkpoints=_checkpoints(run, damage),
        hyperparams=_history(records),
        damage=damage,
    )
    return _finite(details)


def changed_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a config.json that differ from TrainConfig's defaults (and any it does not know),
    in config.json's order."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
                for f in dataclasses.fields(TrainConfig)}
    plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731 - tuples are lists in JSON
    return {k: v for k, v in config.items() if k not in defaults or plain(defaults[k]) != v}


def why_no_quality(quality: dict[str, Any], live: bool) -> str | None:
    """A sentence for a run without a quality figure (None when it has one)."""
    status, every, judge = quality["status"], quality["every"], quality["judge"] or {}
    if status == "measured":
        return None
    if status == "off":
        return "quality is off (quality_every 0)"
    if status == "judge_unfinished":
        done, epochs = judge.get("epochs_done"), judge.get("epochs")
        progress = f"{done} of {epochs} epochs done" if done is not None and epochs else "its training unfinished"
        return (f"the run ended while its judge was still training ({progress}); the next run of this dataset "
                "continues the judge's training")
    if every is None:
        return "no quality figure in the log (the run's settings cannot be read)"
    every_text = f" (measured every {every:,} steps)" if every > 0 else ""
    if live:
        done, epochs = judge.get("epochs_done"), judge.get("epochs")
        if done is not None and epochs:
            return (f"none yet: the judge is training ({done} of {epochs} epochs done), then the first "
                    f"measurement{every_text}")
        return f"none yet: the judge trains first, then the first measurement{every_text}"
    return f"none: the run ended before its first measurement{every_text}"


# ------------------------------------------------------------------ helpers
def _progress(details: dict[str, Any], records: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> dict[str, Any]:
    last = metrics[-1] if metrics else {}
    return {
        "step": details["step"], "steps": details["steps"], "epoch": details["epoch"], "epochs": details["epochs"],
        "train_time_s": number(last.get("elapsed_s")), "images_per_s": number(last.get("images_per_s")),
        "resumes": sum(1 for r in records if r.get("type") == "resumed"),
        "rollbacks": sum(1 for r in records if r.get("type") == "rollback"),
        "updated": details["updated"],
    }


def _quality(details: dict[str, Any], config: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [_figures(r) for r in records if r.get("type") == "quality"]
    scored = [q for q in measured if q["fd_ratio"] is not None]
    judges = [r for r in records if r.get("type") in ("judge", "judge_unfinished")]
    judge: dict[str, Any] | None = None
    if details["judge"] is not None:
        judge = {"ready": False, **details["judge"]}
    elif judges and judges[-1].get("type") == "judge":
        judge = {"ready": True, "accuracy": number(judges[-1].get("accuracy")),
                 "source": typed(judges[-1].get("source"), str)}
    quality = {"status": details["fd_status"], "every": typed(config.get("quality_every"), int),
               "measurements": len(measured), "last": measured[-1] if measured else None,
               "best": min(scored, key=lambda q: q["fd_ratio"]) if scored else None, "judge": judge}
    quality["why_none"] = why_no_quality(quality, live=details["pid"] is not None)
    return quality


def _figures(record: dict[str, Any]) -> dict[str, Any]:
    figures = quality_figures(record)
    step = figures.pop("quality_step")
    return {"step": step, **figures, **{k: number(record.get(k)) for k in _QUALITY_EXTRA}}


def _checkpoints(run: RunDir, damage: list[str]) -> list[dict[str, Any]]:
    """Every checkpoint, oldest first: step, file (in the run folder), bytes, whether it is the best by
    quality, and its quality figures when measured."""
    index_file = read_json_file(run.quality_index_path)
    if index_file.problem:
        damage.append(f"checkpoints/quality.json {index_file.problem}")
    index = read_quality_index(run.quality_index_path)
    try:
        found = run.checkpoints()
        best = run.best_checkpoint()
    except OSError as exc:
        damage.append(f"checkpoints/ cannot be read ({exc.strerror or type(exc).__name__})")
        return []
    listed = []
    for step, path in found:
        try:
            size: int | None = path.stat().st_size
        except OSError:
            size = None
        measured = index.get(step)
        listed.append({"step": step, "file": str(path.relative_to(run.path)), "bytes": size, "best": path == best,
                       "fd_ratio": quality_figures(measured)["fd_ratio"] if measured else None})
    return listed


def _history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hparams records as {step, by, changes: {name: {old, new}}, action, member}, oldest first."""
    history = []
    rollback_step = None  # a rollback's learning-rate scale is logged right after it, untagged
    for record in records:
        kind = record.get("type")
        if kind == "rollback":
            rollback_step = record.get("step")
        elif kind == "metrics":
            rollback_step = None
        if kind != "hparams":
            continue
        old = record.get("old") if isinstance(record.get("old"), dict) else {}
        new = record.get("new") if isinstance(record.get("new"), dict) else {}
        if record.get("source") == "pbt":
            by = "pbt"
        elif record.get("reason") in ("resume", "rollback") or rollback_step == record.get("step"):
            by = record.get("reason") if record.get("reason") == "resume" else "rollback"
        else:
            by = "dashboard"  # a viewer's SetHyperparams: the dashboard's form, or another control-socket client
        history.append({"step": record.get("step"), "by": by,
                        "changes": {k: {"old": old.get(k), "new": new[k]} for k in new if old.get(k) != new[k]},
                        "action": typed(record.get("action"), str), "member": typed(record.get("member"), str) or None})
    return history


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity (a hand-edited config.json may hold them): they become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
