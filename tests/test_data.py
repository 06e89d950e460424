import gzip
import shutil

import numpy as np
import pytest
import torch

from engine import data as data_mod
from engine.data import DatasetError, load_dataset, read_idx
from tests.conftest import FASHION_SYSTEM


def test_real_mnist_t10k_loads_and_says_which_split(mnist_root):
    data = load_dataset("mnist", str(mnist_root))
    assert data.images.shape == (10_000, 28, 28) and data.images.dtype == torch.uint8
    assert sorted(data.labels.unique().tolist()) == list(range(10))
    assert "t10k" in data.info.split and "train split is not there" in data.info.split
    assert data.info.num_classes == 10 and not data.info.note
    # The real digits: a mean intensity near MNIST's well-known 0.13.
    assert 0.11 < data.images.float().mean().item() / 255 < 0.15


def test_mnist_path_and_plain_idx_files_load_the_same(mnist_root, tmp_path):
    raw = tmp_path / "digits"
    raw.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_root / "MNIST" / "raw" / f"{name}.gz") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    from_gz = load_dataset("mnist", str(mnist_root))
    from_path = load_dataset(str(raw))
    assert torch.equal(from_gz.images, from_path.images)
    assert from_gz.info.checksum == from_path.info.checksum


@pytest.mark.skipif(not FASHION_SYSTEM.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_files_load_the_train_split(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = load_dataset("fashion-mnist")
    assert data.images.shape == (60_000, 28, 28)
    assert data.info.split == "train" and str(FASHION_SYSTEM) in data.info.source


def test_unreachable_dataset_falls_back_to_font_digits_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def no_network(*_args):
        raise OSError("Name or service not known")

    monkeypatch.setattr(data_mod, "_download", no_network)
    data = load_dataset("kmnist")
    assert data.info.name == "synthetic"
    assert "kmnist" in data.info.note and "could not be downloaded" in data.info.note
    assert "--data-root" in data.info.note


def test_explicit_missing_paths_are_errors_not_fallbacks(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere"))


def test_truncated_idx_file_is_a_clear_error(mnist_root, tmp_path):
    src = gzip.open(mnist_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").read()
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(src[:5000])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_idx(bad)


def test_folder_of_images_with_class_subfolders(tmp_path):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 40), 50 * i, dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    data = load_dataset(str(tmp_path))
    assert data.images.shape == (6, 28, 28)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_synthetic_digits_are_deterministic_and_batches_are_in_range(synthetic_data):
    again = load_dataset("synthetic")
    assert torch.equal(again.images, synthetic_data.images)
    assert synthetic_data.info.num_classes == 10
    batch = synthetic_data.batch(32, torch.Generator().manual_seed(0))
    assert batch.shape == (32, 1, 28, 28)
    assert batch.min() >= -1 and batch.max() <= 1 and batch.max() > 0.9
