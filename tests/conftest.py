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
    )
    base.update(changes)
    return TrainConfig(**base)


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
    """Build a Runner on tiny data with a QueueSink, set up but not started (drive it with tick())."""
    from engine.runner import QueueSink, Runner

    def make(resume: str | None = None, data=None, run_name: str = "run", **changes):
        sink = QueueSink()
        runner = Runner(
            tiny_config(**changes),
            sink,
            runs_dir=tmp_path / "runs",
            run_name=None if resume else run_name,
            resume=resume,
            data=data or synthetic_data,
        )
        runner.setup()
        return runner, sink

    return make
