"""The sweep's Ray driver: builds the search, runs Ray Tune, keeps sweep.json current.

    python -m engine.sweep.driver SWEEP_DIR      # what `gan-tui sweep` starts, detached

A local Ray by default (this box's CPUs and GPUs, shared by the trials in fractions), bound to
127.0.0.1 and never another cluster the machine knows of (engine/sweep/cluster.py), or the cluster at
`spec.address`.

SIGTERM, SIGINT and SIGHUP are the driver's own, whatever Ray installs (ray.init sets a SIGTERM
handler that exits at once; ours is put back after it, and again should anything replace it while
Tune runs): each asks for a stop through the sweep's `stop` file, so every trial saves a checkpoint at
its step and ends `stopped`, and the driver waits for them and writes the final sweep.json. A stop
before any trial started (while the judge is readied or Ray starts) ends the sweep `stopped` at once.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from engine.notify import notify_sweep_end, trial_settings
from engine.sweep.cluster import LOCAL_RAY_ENV, local_resources
from engine.sweep.rows import best_trial, read_trials
from engine.sweep.spec import (METRIC, RAY_DIR_NAME, Range, SweepError, SweepSpec, SweepStatus, request_stop,
                               stop_requested, trial_folder_name)

_STATUS_EVERY_S = 1.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",  # the old reporter, which verbose=0 silences completely
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",  # no phoning home from a training box
    # Under `uv run`, Ray would otherwise ship this folder to every worker and start each through
    # `uv run` again (slow, and it resolves packages): workers use this Python as they are.
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}
# Trials get this long to end cleanly when PBT swaps their weights (Ray's default is 2 s).
_TRIAL_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "30", "RAY_USAGE_STATS_ENABLED": "0"}


class SweepStopped(BaseException):
    """A stop asked for before any trial started: nothing to save, the sweep ends `stopped`. A
    BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the detached driver process."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m engine.sweep.driver SWEEP_DIR", file=sys.stderr)
        return 2
    sweep_dir = Path(args[0]).resolve()
    try:
        spec = SweepSpec.load(sweep_dir)
    except SweepError as exc:
        print(f"gan-tui sweep: {exc}", file=sys.stderr)
        return 2
    if not spec.address:
        os.environ.update(LOCAL_RAY_ENV)  # before Ray is imported, which reads it once
    status = run_sweep(spec, StopSignals(sweep_dir))
    notify_sweep_end(spec, status)
    return 0 if status.state in ("finished", "stopped") else 1


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP as a saving stop of the sweep (the `stop` file every trial watches).
    While `interruptible` (nothing started that could be saved) a signal also raises SweepStopped."""

    def __init__(self, sweep_dir: Path, active: bool = True) -> None:
        self.sweep_dir = sweep_dir
        self.active = active  # False: run_sweep inside another program (tests), whose signals stay its own
        self.interruptible = False

    def install(self) -> None:
        """Make the three signals ours again (only the main thread may; elsewhere this does nothing)."""
        if self.active and threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                signal.signal(sig, self._handle)

    def installed(self) -> bool:
        return not self.active or all(signal.getsignal(sig) == self._handle for sig in _SIGNALS)

    def _handle(self, signum: int, _frame: object) -> None:
        try:
            request_stop(self.sweep_dir)
        except OSError as exc:  # a full disk: the trials cannot be told; said in driver.log
            print(f"gan-tui sweep: {signal.Signals(signum).name}: the stop file could not be written ({exc})",
                  file=sys.stderr, flush=True)
        if self.interruptible:
            raise SweepStopped(signal.Signals(signum).name)


def run_sweep(spec: SweepSpec, signals: StopSignals | None = None) -> SweepStatus:
    """Run the whole sweep (blocking); the final status is also in sweep.json. With `signals` (the
    driver process), SIGTERM, SIGINT and SIGHUP stop it as described in the module docstring."""
    signals = signals or StopSignals(spec.path, active=False)
    status = SweepStatus(state="starting", pid=os.getpid(), host=socket.gethostname())
    signals.install()
    status.save(spec.path)
    started: list[bool] = []
    try:
        signals.interruptible = True
        _warm_judge(spec, status)
        _start_ray(spec, signals, started)
        if stop_requested(spec.path):  # asked for through the file (the view's X) while the judge was readied
            raise SweepStopped("stop")
        signals.interruptible = False
        results = _fit(spec, status, signals)
    except SweepStopped:
        signals.interruptible = False
        status.state, status.message = "stopped", "stopped before any trial started"
        status.save(spec.path)
        if started:
            import ray

            ray.shutdown()
        return status
    except Exception as exc:  # noqa: BLE001 - a failed sweep says why in sweep.json and driver.log
        signals.interruptible = False
        traceback.print_exc()
        status.state, status.message = "failed", f"{type(exc).__name__}: {exc}"
        status.save(spec.path)
        return status
    errors = [r.error for r in results if r.error is not None]
    status.state = "stopped" if stop_requested(spec.path) else ("failed" if errors and len(errors) == len(results) else "finished")
    status.best = best_trial(status, read_trials(spec.path, status))  # stopped trials measured once more as they saved
    if errors:
        status.message = f"{len(errors)} of {len(results)} trials failed: {str(errors[0]).strip().splitlines()[-1]}"
    status.save(spec.path)
    return status


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """The Tune search space: lr_g and lr_d log-uniform in their ranges, batch sizes as a choice;
    for `grid`, exactly `trials` points spread over the grid of ranges x batch sizes."""
    from ray import tune

    lr_g, lr_d = Range(*spec.lr_g), Range(*spec.lr_d)
    sizes = list(spec.batch_sizes)
    if spec.search == "grid":
        return {"point": tune.grid_search(grid_points(spec))}
    space: dict[str, Any] = {
        "lr_g": lr_g.lo if lr_g.fixed else tune.loguniform(lr_g.lo, lr_g.hi),
        "lr_d": lr_d.lo if lr_d.fixed else tune.loguniform(lr_d.lo, lr_d.hi),
    }
    if sizes:
        space["batch_size"] = sizes[0] if len(sizes) == 1 else tune.choice(sizes)
    if spec.search == "pbt":
        space["d_steps"] = spec.base_config().d_steps  # PBT would otherwise draw a first value itself
    return space


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """`trials` grid points: each open range gets the fewest log-spaced values whose full grid has at
    least `trials` points, and the points taken are spread evenly over that grid."""
    ranges = [(name, Range(*getattr(spec, name))) for name in ("lr_g", "lr_d")]
    sizes = list(spec.batch_sizes) or [spec.base_config().batch_size]
    open_ranges = sum(not r.fixed for _, r in ranges)
    k = 1
    while open_ranges and k ** open_ranges * len(sizes) < spec.trials:
        k += 1
    axes = [[(name, v) for v in r.points(k)] for name, r in ranges] + [[("batch_size", s) for s in sizes]]
    full = [dict(combo) for combo in itertools.product(*axes)]
    if len(full) <= spec.trials:
        return full
    stride = len(full) / spec.trials
    return [full[int(i * stride)] for i in range(spec.trials)]


def pbt_scheduler(spec: SweepSpec) -> Any:
    """PopulationBasedTraining over lr_g, lr_d and d_steps, perturbing every `perturbation_interval` reports."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    mutations: dict[str, Any] = {"d_steps": [1, 2, 3]}
    for name in ("lr_g", "lr_d"):
        r = Range(*getattr(spec, name))
        if not r.fixed:
            mutations[name] = tune.loguniform(r.lo, r.hi)
    return PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=spec.perturbation_interval,
        hyperparam_mutations=mutations,
        quantile_fraction=0.25,
        resample_probability=0.25,
    )


# ---------------------------------------------------------------- internals
def _start_ray(spec: SweepSpec, signals: StopSignals, started: list[bool]) -> None:
    """Connect to the cluster at spec.address, or start this machine's own Ray on 127.0.0.1 only;
    `started` gets True once this process runs a Ray of its own making."""
    import ray
    import ray._private.ray_constants as ray_constants

    if ray.is_initialized():
        return  # tests: a Ray this process already runs
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "runtime_env": {"env_vars": _TRIAL_ENV}}
    if spec.address:
        kwargs["address"] = spec.address
    else:
        if ray_constants.ENABLE_RAY_CLUSTER:
            raise SweepError("a local sweep's Ray must be imported with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
                             "(python -m engine.sweep.driver sets it), or it would listen on every interface")
        cpus, gpus = local_resources()
        # "local": a Ray of its own, whatever RAY_ADDRESS or /tmp/ray/ray_current_cluster name.
        kwargs.update(address="local", num_cpus=cpus, **({} if gpus is None else {"num_gpus": gpus}))
    try:
        ray.init(**kwargs)
        started.append(True)
    except SystemExit:  # ray.init's own SIGTERM handler: a stop while Ray starts
        request_stop(spec.path)
        raise SweepStopped("SIGTERM") from None
    except SweepStopped:
        ray.shutdown()
        raise
    finally:
        signals.install()  # ray.init replaced SIGTERM's handler with one that exits at once


def _fit(spec: SweepSpec, status: SweepStatus, signals: StopSignals) -> Any:
    import ray
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from engine.sweep.trial import train_trial

    total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
    total_gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if spec.gpus_per_trial > total_gpus:
        raise SweepError(f"--gpus-per-trial {spec.gpus_per_trial:g} but Ray sees {total_gpus:g} GPUs")
    parallel = spec.parallel or _default_parallel(spec, total_cpus, total_gpus)
    node_cpus = max((float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")), default=total_cpus)
    # Rounded down, so K of them fit; at most one node's CPUs, or a trial would wait for good.
    cpus = spec.cpus_per_trial or max(0.01, min(node_cpus, math.floor(total_cpus / parallel * 100) / 100))
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, sweep_dir=str(spec.path), notify=trial_settings()), {"cpu": cpus, "gpu": spec.gpus_per_trial}
    )
    scheduler = pbt_scheduler(spec) if spec.search == "pbt" else None
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=TuneConfig(
            metric=METRIC, mode="min",
            num_samples=1 if spec.search == "grid" else spec.trials,
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=spec.seed, max_concurrent=parallel),
            reuse_actors=True,
            trial_name_creator=lambda t: trial_folder_name(t.trial_id),
            trial_dirname_creator=lambda t: trial_folder_name(t.trial_id),
        ),
        run_config=RunConfig(
            name="tune",
            storage_path=str(spec.path / RAY_DIR_NAME),
            verbose=0,
            callbacks=[_status_callback(spec, status, signals)],
            # Only PBT reports checkpoints (a member's latest may be copied at any time; Ray's pruning
            # under PBT trips over its own files). Other trials resume from their own run folders.
            checkpoint_config=CheckpointConfig(num_to_keep=None),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    status.state = "running"
    status.save(spec.path)
    return tuner.fit()


def _default_parallel(spec: SweepSpec, cpus: float, gpus: float) -> int:
    if spec.gpus_per_trial > 0:
        return max(1, min(spec.trials, int(gpus / spec.gpus_per_trial + 1e-9)))
    if spec.search == "pbt":
        return spec.trials  # a population trains side by side, sharing the CPUs
    return max(1, min(spec.trials, int(cpus)))


def _warm_judge(spec: SweepSpec, status: SweepStatus) -> None:
    """Train (or load) the dataset's judge once here, so the trials load it instead of each training it."""
    import torch

    from engine.data import load_dataset
    from engine.judge import JudgeCancelled, JudgeError, load_or_train

    cfg = spec.base_config()
    status.message = "readying the quality judge (trained once per dataset, then cached)"
    status.save(spec.path)
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.seed)
    try:
        # A stop through the file (the view's X) ends the judge's training too, between batches.
        load_or_train(data, torch.device("cpu"), Path(spec.judge_cache) if spec.judge_cache else None,
                      cancelled=lambda: stop_requested(spec.path))
    except JudgeCancelled:
        raise SweepStopped("stop") from None
    except JudgeError as exc:
        raise SweepError(f"a sweep ranks trials by sample quality, but {exc}") from None
    status.message = ""


for _key, _value in _QUIET_ENV.items():  # before Ray is imported: some are read at import time
    os.environ.setdefault(_key, _value)
os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune's would end the run unsaved: ours turn signals into a stop


def _status_callback(spec: SweepSpec, status: SweepStatus, signals: StopSignals) -> Any:
    """The Tune callback (its base class is Ray's, imported only here: the driver imports Ray after
    choosing the environment it starts Ray with)."""
    from ray.tune import Callback

    class StatusCallback(_StatusMirror, Callback):  # type: ignore[misc]
        pass

    return StatusCallback(spec, status, signals)


class _StatusMirror:
    """Mirrors Ray's view of the trials into sweep.json (at most once a second, and at every change)."""

    def __init__(self, spec: SweepSpec, status: SweepStatus, signals: StopSignals) -> None:
        self.spec = spec
        self.status = status
        self.signals = signals
        self._written = 0.0

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if not self.signals.installed():  # anything in Ray that took a signal over gives it back here
            self.signals.install()
        changed = False
        for trial in trials:
            entry = self.status.trials.setdefault(trial_folder_name(trial.trial_id), {})
            config = {k: v for k, v in _flat(trial.config).items()}
            if entry.get("status") != trial.status or entry.get("config") != config:
                entry.update(status=trial.status, config=config)
                changed = True
        if stop_requested(self.spec.path) and self.status.state == "running":
            self.status.state, changed = "stopping", True
        if changed or time.monotonic() - self._written > _STATUS_EVERY_S:
            self._write()

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        name = trial_folder_name(trial.trial_id)
        entry = self.status.trials.setdefault(name, {})
        ratio = result.get(METRIC)
        entry.update(fd_ratio=ratio, step=result.get("step"), reports=result.get("training_iteration"))
        if isinstance(ratio, (int, float)) and math.isfinite(ratio):
            best = self.status.best
            if not best or ratio < best.get(METRIC, math.inf):
                self.status.best = {"trial": name, METRIC: ratio, "step": result.get("step"),
                                    "config": {k: result.get(k) for k in ("lr_g", "lr_d", "d_steps", "batch_size")}}
        self._write()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        entry = self.status.trials.setdefault(trial_folder_name(trial.trial_id), {})
        entry.update(status="ERROR", error=str(getattr(trial, "error_msg", "") or "")[-500:])
        self._write()

    def _write(self) -> None:
        self._written = time.monotonic()
        try:
            self.status.save(self.spec.path)
        except OSError:
            pass  # a full disk must not end the sweep; the trials' own folders still say everything


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {**config.get("point", {}), **{k: v for k, v in config.items() if k != "point"}}


if __name__ == "__main__":
    raise SystemExit(main())
