"""Sample quality through the judge: Frechet distance, class coverage, confidence, diversity.

    ref = QualityReference.build(judge, data, n=1000)   # or .cached(judge, data, 1000, cache_dir)
    event = ref.measure(step, generated_images)   # images in [-1, 1], (N, 1, 28, 28)

All figures compare N generated images with N real held-out images (N fixed for the run):
- Frechet distance between Gaussians fitted to the judge's penultimate features (FID's formula
  on a feature space that knows this dataset); `fd_floor` is the same distance between two
  disjoint real sets of N, the value a perfect generator would reach at that N;
- the judge's class histogram, classes covered (at least 2% of samples) and KL from uniform;
- mean top-class confidence (smudges and hybrids score low);
- diversity: mean pairwise pixel distance of the samples over that of real images (near 0 when
  the generator repeats itself, about 1 when it varies as much as the data);
- for a conditional generator (samples with the labels they were asked for): label agreement, the
  share the judge reads as the class asked for, and the Frechet distance per class against the
  real images of that class, beside its own real-vs-real floor (about n/K images a side, so both
  sit well above the all-class figures).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.data import ImageData
from engine.events import QualityMeasured
from engine.journal import atomic_write
from engine.judge import Judge

_REFERENCE_VERSION = 1  # bump when what build() computes changes: older cache files are then built anew
COVERED_FRACTION = 0.02  # a class counts as covered when it has at least this share of samples
_DIVERSITY_SAMPLES = 500  # pairwise distances on this many images: 125k pairs, milliseconds


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of a feature set (float64, on the CPU)."""

    mean: torch.Tensor
    cov: torch.Tensor

    @classmethod
    def of(cls, features: torch.Tensor) -> FeatureStats:
        f = features.detach().to("cpu", torch.float64)
        return cls(f.mean(0), torch.cov(f.T))


class QualityReference:
    """The real side of every comparison, computed once per judge and n (then read from a cache file)."""

    def __init__(self, judge: Judge, n: int, real_stats: FeatureStats, fd_floor: float, real_spread: float,
                 class_stats: list[FeatureStats] | None = None, class_fd_floor: tuple[float, ...] = ()) -> None:
        self.judge = judge
        self.n = n
        self.real_stats = real_stats
        self.fd_floor = fd_floor
        self.real_spread = real_spread
        # Per-class references, when the real images come with their labels.
        self.class_stats = class_stats or []
        self.class_fd_floor = class_fd_floor

    @classmethod
    def build(cls, judge: Judge, data: ImageData, n: int) -> QualityReference:
        """Two disjoint sets of n held-out images: one to compare with, one to measure the floor.

        n is capped at half the held-out part; the cap is what `QualityReference.n` reports.
        """
        held_out = judge.split.held_out
        n = _capped(n, judge)
        device = next(judge.model.parameters()).device
        images = data.images_at(held_out[: 2 * n], device)
        real, floor_set = images[:n], images[n:]
        features, _ = judge.model.features_and_probs(real)
        floor_features, _ = judge.model.features_and_probs(floor_set)
        real_stats = FeatureStats.of(features)
        fd_floor = frechet_distance(real_stats, FeatureStats.of(floor_features))
        spread = mean_pairwise_distance(real[:_DIVERSITY_SAMPLES])
        if data.labels is None:
            return cls(judge, n, real_stats, fd_floor, spread)
        labels = data.labels[held_out[: 2 * n].to(data.labels.device)].to(features.device)
        k = judge.model.num_classes
        class_stats = [FeatureStats.of(features[labels[:n] == c]) for c in range(k)]
        floor_stats = [FeatureStats.of(floor_features[labels[n:] == c]) for c in range(k)]
        class_floor = tuple(frechet_distance(a, b) for a, b in zip(floor_stats, class_stats))
        return cls(judge, n, real_stats, fd_floor, spread, class_stats, class_floor)

    @classmethod
    def cached(cls, judge: Judge, data: ImageData, n: int, cache_dir: Path) -> QualityReference:
        """`build`, read from a file beside the judge's when one fits this judge's weights and n, else
        built and written there. Building scores 2n images through the judge (seconds of a CPU core at
        the start of every run); the file is about 1.5 MB. A damaged or unwritable file only costs
        the build."""
        n = _capped(n, judge)
        fingerprint = judge_fingerprint(judge)
        path = cache_dir / f"{judge.checksum}-reference-{n}.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state["fingerprint"] == fingerprint and state["n"] == n and state["version"] == _REFERENCE_VERSION:
                return cls._from_state(judge, state)
        except Exception:  # noqa: BLE001 - missing, damaged or stale: built anew below
            pass
        reference = cls.build(judge, data, n)
        try:
            atomic_write(path, lambda f: torch.save({**reference._state(), "fingerprint": fingerprint}, f))
        except (OSError, RuntimeError):  # torch.save reports a full disk as a RuntimeError
            pass  # a read-only or full cache folder: built again next run, nothing else lost
        return reference

    def _state(self) -> dict[str, object]:
        return {"version": _REFERENCE_VERSION, "n": self.n, "fd_floor": self.fd_floor, "real_spread": self.real_spread,
                "real": [self.real_stats.mean, self.real_stats.cov],
                "classes": [[s.mean, s.cov] for s in self.class_stats], "class_fd_floor": list(self.class_fd_floor)}

    @classmethod
    def _from_state(cls, judge: Judge, state: dict) -> QualityReference:  # type: ignore[type-arg]
        stats = [FeatureStats(mean, cov) for mean, cov in state["classes"]]
        return cls(judge, int(state["n"]), FeatureStats(*state["real"]), float(state["fd_floor"]),
                   float(state["real_spread"]), stats, tuple(float(v) for v in state["class_fd_floor"]))

    def measure(self, step: int, generated: torch.Tensor, labels: torch.Tensor | None = None) -> QualityMeasured:
        """Score n generated images (in [-1, 1], (n, 1, 28, 28)) at a training step.

        `labels`: the class each image was generated for (a conditional generator); adds label
        agreement and the per-class Frechet distances.
        """
        features, probs = self.judge.model.features_and_probs(generated)
        k = probs.size(1)
        predicted = probs.argmax(1)
        hist = torch.bincount(predicted, minlength=k).double().cpu() / len(probs)
        conditional: dict[str, object] = {}
        if labels is not None:
            labels = labels.to(predicted.device)
            conditional["label_agreement"] = float((predicted == labels).double().mean())
            if self.class_stats:
                conditional["class_fd"] = tuple(self._class_fd(features, labels, c) for c in range(k))
                conditional["class_fd_floor"] = self.class_fd_floor
        return QualityMeasured(
            step=step,
            fd=frechet_distance(FeatureStats.of(features), self.real_stats),
            fd_floor=self.fd_floor,
            n=len(generated),
            class_hist=tuple(float(v) for v in hist),
            classes_covered=int((hist >= COVERED_FRACTION).sum()),
            kl_uniform=kl_from_uniform(hist),
            confidence=float(probs.max(1).values.mean()),
            diversity=mean_pairwise_distance(generated[:_DIVERSITY_SAMPLES]) / max(self.real_spread, 1e-12),
            **conditional,  # type: ignore[arg-type]
        )

    def _class_fd(self, features: torch.Tensor, labels: torch.Tensor, c: int) -> float:
        picked = features[labels == c]
        if len(picked) < 2:
            return math.nan  # no samples of this class were asked for
        return frechet_distance(FeatureStats.of(picked), self.class_stats[c])


def _capped(n: int, judge: Judge) -> int:
    """n images a side, at most half the judge's held-out part (two disjoint sets are drawn from it)."""
    return max(2, min(n, len(judge.split.held_out) // 2))


def judge_fingerprint(judge: Judge) -> str:
    """A digest of the judge's weights: a reference cached for other weights (a retrained judge) never fits."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(judge.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """|mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr((A^1/2 B A^1/2)^1/2), through symmetric eigendecompositions.

    The symmetric form needs no general matrix square root (scipy's sqrtm) and stays real when a
    covariance is singular, as it is for a collapsed generator.
    """
    values, vectors = torch.linalg.eigh(a.cov)
    root_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = root_a @ b.cov @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (a.mean - b.mean).square().sum() + a.cov.trace() + b.cov.trace() - 2 * trace_root
    return max(0.0, float(distance))


def kl_from_uniform(hist: torch.Tensor) -> float:
    """KL(p || uniform) in nats: 0 for a perfectly even spread, log K for a single class."""
    k = len(hist)
    p = hist[hist > 0].double()
    return max(0.0, float((p * (p * k).log()).sum())) if k else math.nan


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean L2 distance between distinct pairs of images (pixels in [-1, 1])."""
    flat = images.reshape(len(images), -1).float()
    n = len(flat)
    if n < 2:
        return 0.0
    # The direct form, not the matmul shortcut: that one leaves ~1e-3 of rounding on identical images.
    dist = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")
    return float(dist.sum() / (n * (n - 1)))
