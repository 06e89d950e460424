"""Shared fixtures: tiny configs, the real MNIST t10k files, and a runner driven step by step."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MNIST_RAW = SHARED_DATASETS / "MNIST" / "raw"
FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


def tiny_config(**changes):
    """A config that trains in milliseconds on the embedded digits."""
    from engine.config import TrainConfig

    base = dict(
        dataset="synthetic",
        preset="mlp-small",
        g_hidden=(32,),
        d_hidden=(32,),
        latent_dim=8,
        batch_size=16,
        steps=40,
        log_every=5,
        sample_every=10,
        checkpoint_every=20,
        num_samples=16,
        device="cpu",
        amp="off",  # the same arithmetic on every CI machine (auto is bf16 only where the CPU has it)
        quality_every=0,  # the judge is tested on its own; tiny runs need no classifier
        # Plain step counts (no wall-time budgets) and no throttling: tests see side work at known steps.
        log_every_s=0.0,
        sample_every_s=0.0,
        checkpoint_every_s=0.0,
        quality_share=1.0,
        judge_share=1.0,
        tensorboard=False,  # its own tests turn it on; elsewhere its writer thread only costs time
    )
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Datasets and judges cached by the tests go to a folder of this session, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def synthetic_data():
    """The embedded font digits, made once per test session."""
    from engine.data import load_dataset

    return load_dataset("synthetic")


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The real MNIST test split shipped beside the project (read-only)."""
    if not (MNIST_RAW / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST t10k files not found under {MNIST_RAW}")
    return SHARED_DATASETS


@pytest.fixture
def make_runner(tmp_path, synthetic_data):
    """Build a Runner on tiny data with a QueueSink, set up but not started (drive it with tick()).
    A runner the test leaves unfinished is let go at teardown, so its journal thread ends with it."""
    from engine.runner import QueueSink, Runner

    made: list = []

    def make(resume: str | None = None, data=None, run_name: str = "run", judge_cache=None, exploit=None, **changes):
        sink = QueueSink()
        runner = Runner(
            tiny_config(**changes),
            sink,
            runs_dir=tmp_path / "runs",
            run_name=None if resume else run_name,
            resume=resume,
            data=data or synthetic_data,
            judge_cache=judge_cache,
            exploit=exploit,
        )
        made.append(runner)
        runner.setup()
        return runner, sink

    yield make
    for runner in made:
        if not runner.done:
            runner.abandon()


@pytest.fixture(scope="session")
def mnist_data(mnist_root):
    """The real MNIST t10k digits through the real loader."""
    from engine.data import load_dataset

    return load_dataset("mnist", str(mnist_root))


@pytest.fixture(scope="session")
def judge_cache(tmp_path_factory) -> Path:
    """Where this session's judges are cached (each dataset's judge is trained once)."""
    return tmp_path_factory.mktemp("judges")


@pytest.fixture(scope="session")
def mnist_judge(mnist_data, judge_cache):
    """The classifier trained on the t10k files (about a minute on 2 cores), cached for the session."""
    import torch

    from engine.judge import load_or_train

    return load_or_train(mnist_data, torch.device("cpu"), judge_cache)
