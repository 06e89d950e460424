"""The judge and the quality figures, on the real MNIST t10k files."""

from __future__ import annotations

import math

import pytest
import torch

from engine.judge import JudgeError, load_or_train, split_for
from engine.quality import FeatureStats, QualityReference, frechet_distance, kl_from_uniform


def test_judge_reaches_98_percent_on_its_held_out_part_and_is_cached(mnist_data, mnist_judge, judge_cache):
    split = split_for(mnist_data)
    assert len(split.held_out) == 2000 and not set(split.train.tolist()) & set(split.held_out.tolist())
    assert mnist_judge.accuracy >= 0.98, mnist_judge.accuracy
    again = load_or_train(mnist_data, torch.device("cpu"), judge_cache)
    assert again.source == "cache" and again.accuracy == mnist_judge.accuracy
    for a, b in zip(again.model.state_dict().values(), mnist_judge.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_damaged_cache_file_is_retrained_over_not_trusted(mnist_data, judge_cache, monkeypatch, tmp_path):
    (tmp_path / f"{mnist_data.info.checksum}-v1.pt").write_bytes(b"not a checkpoint")
    trained = []
    monkeypatch.setattr("engine.judge._train", lambda *a, **k: trained.append(1) or (_ for _ in ()).throw(RuntimeError("retrain")))
    with pytest.raises(RuntimeError, match="retrain"):
        load_or_train(mnist_data, torch.device("cpu"), tmp_path)
    assert trained


def test_unlabelled_data_has_no_judge_and_says_why(mnist_data):
    from engine.data import ImageData

    unlabelled = ImageData(mnist_data.images, None, mnist_data.info)
    with pytest.raises(JudgeError, match="no class labels"):
        load_or_train(unlabelled, torch.device("cpu"))


def test_frechet_distance_is_near_its_floor_for_real_images_and_orders_the_bad_sets(mnist_data, mnist_judge):
    ref = QualityReference.build(mnist_judge, mnist_data, 500)  # held-out[:1000]
    held = mnist_judge.split.held_out
    real = ref.measure(0, mnist_data.images_at(held[1000:1500]))
    noise = ref.measure(0, torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    sevens = mnist_data.images_at(torch.nonzero(mnist_data.labels == 7).squeeze(1)[:500])
    one_class = ref.measure(0, sevens)
    repeated = ref.measure(0, sevens[:1].repeat(500, 1, 1, 1))

    assert real.fd < 2 * ref.fd_floor, (real.fd, ref.fd_floor)
    assert real.fd < one_class.fd < repeated.fd
    assert noise.fd > 10 * real.fd
    assert real.classes_covered == 10 and real.kl_uniform < 0.05 and real.confidence > 0.95
    assert 0.9 < real.diversity < 1.1
    assert one_class.classes_covered == 1 and one_class.kl_uniform > 0.9 * math.log(10)
    assert repeated.diversity == pytest.approx(0.0, abs=1e-6)
    assert sum(real.class_hist) == pytest.approx(1.0)


def test_the_reference_is_built_once_per_judge_then_read_from_its_cache_file(mnist_data, mnist_judge, tmp_path, monkeypatch):
    import dataclasses

    built = QualityReference.cached(mnist_judge, mnist_data, 300, tmp_path)
    (path,) = tmp_path.glob("*-reference-300.pt")
    monkeypatch.setattr(QualityReference, "build", classmethod(lambda *a: pytest.fail("built again")))
    read = QualityReference.cached(mnist_judge, mnist_data, 300, tmp_path)
    assert (read.n, read.fd_floor, read.real_spread, read.class_fd_floor) == (300, built.fd_floor, built.real_spread, built.class_fd_floor)
    assert torch.equal(read.real_stats.cov, built.real_stats.cov) and len(read.class_stats) == 10
    images = mnist_data.images_at(mnist_judge.split.held_out[600:700])
    assert read.measure(0, images).fd == built.measure(0, images).fd
    monkeypatch.undo()

    # Other weights (a retrained judge) or a damaged file: built anew, never trusted.
    other = copy_judge_with_nudged_weights(mnist_judge)
    assert QualityReference.cached(other, mnist_data, 300, tmp_path).fd_floor != built.fd_floor
    path.write_bytes(b"damaged")
    assert QualityReference.cached(mnist_judge, mnist_data, 300, tmp_path).fd_floor == built.fd_floor
    # An unwritable cache folder costs the build, nothing else.
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert QualityReference.cached(mnist_judge, mnist_data, 300, blocked).fd_floor == built.fd_floor
    assert dataclasses.is_dataclass(read.real_stats)


def copy_judge_with_nudged_weights(judge):
    import copy

    other = copy.deepcopy(judge)
    with torch.no_grad():
        other.model.head.bias.add_(0.5)
        other.model.body[0].weight.mul_(1.01)
    return other


def test_frechet_distance_of_a_set_with_itself_is_zero_and_it_is_symmetric():
    gen = torch.Generator().manual_seed(0)
    a = FeatureStats.of(torch.randn(400, 16, generator=gen))
    b = FeatureStats.of(torch.randn(400, 16, generator=gen) * 1.5 + 0.3)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, b) > 1.0


def test_kl_from_uniform_bounds():
    assert kl_from_uniform(torch.full((10,), 0.1)) == pytest.approx(0.0, abs=1e-6)
    assert kl_from_uniform(torch.tensor([1.0] + [0.0] * 9)) == pytest.approx(math.log(10))
