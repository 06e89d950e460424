"""The judge: a small classifier of the run's own dataset, trained once per dataset and cached.

Sample quality is read through it (engine/quality.py): its penultimate features give the
Frechet distance, its predictions the class histogram and confidence. It is trained on a fixed
part of the labelled data the run loaded and scored on the rest (the held-out part, which also
provides the real images that generated ones are compared with). The split depends only on the
data, so the cache is keyed by the data's checksum: a dataset is judged by the same weights in
every run, and the judge is trained at most once. Its training keeps its progress: after every
epoch the model, optimizer and RNG go to a partial file in the cache, so a run that ends before
its judge is ready loses none of that work, and the next run of the dataset continues from there.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine.checkpoint import save_checkpoint
from engine.data import ImageData

JUDGE_VERSION = 1  # bump when the architecture or the recipe changes: old cache files are then ignored
HELD_OUT_FRACTION = 0.2
FEATURE_DIM = 128
_SPLIT_SEED = 20_261_122  # fixed, not the run's seed: every run of a dataset shares one split and one judge
_EPOCHS = 6
_MAX_STEPS = 1_200  # on big training sets (60k) fewer passes suffice: about 3 minutes on 2 CPU cores, not 8
_BATCH = 128
_LR = 2e-3
_WEIGHT_DECAY = 0.05


class JudgeError(RuntimeError):
    """No judge for this dataset: it has no labels or too few images (a damaged cache file is just retrained)."""


class JudgeCancelled(JudgeError):
    """Training the judge was cancelled (the run ended first); nothing was cached."""


@dataclass(frozen=True)
class JudgeSplit:
    """Which images the judge trains on and which it is scored on (indices into the run's data)."""

    train: torch.Tensor
    held_out: torch.Tensor


class Classifier(nn.Module):
    """Two conv blocks and a 128-unit hidden layer; the hidden layer is the feature space.

    Build it with `new_classifier`: the constructor's default initialisation draws from the
    process-wide RNG.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(
            *_conv(1, 32), *_conv(32, 32), nn.MaxPool2d(2),  # 14x14
            *_conv(32, 64), *_conv(64, 64), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(inplace=True),
        )
        # No dropout: it would draw from the process-wide RNG, which the GAN's training thread
        # owns (its exact resume depends on it). Shifts and weight decay regularise instead.
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def features_and_probs(self, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features (N, 128) and class probabilities (N, K) of images in [-1, 1], (N, 1, 28, 28)."""
        self.eval()
        feats, probs = [], []
        for chunk in images.split(batch):
            f = self.body(chunk.float())
            feats.append(f)
            probs.append(F.softmax(self.head(f), dim=1))
        return torch.cat(feats), torch.cat(probs)


@dataclass
class Judge:
    """A trained classifier with what it was scored at."""

    model: Classifier
    accuracy: float  # on the held-out part
    split: JudgeSplit
    checksum: str
    source: str  # "trained" or "cache"
    train_s: float


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/gan-tui/judges (beside downloaded datasets)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gan-tui" / "judges"


def new_classifier(num_classes: int, device: torch.device, generator: torch.Generator | None = None) -> Classifier:
    """A classifier initialised from `generator` (or left uninitialised for a state dict to fill).

    It is made on the meta device first so that nothing touches the process-wide RNG, which the
    training thread owns: the judge is built on another thread while training runs. The weights are
    drawn on the generator's own device (a CPU generator cannot fill CUDA tensors), then moved.
    """
    with torch.device("meta"):
        model = Classifier(num_classes)
    model = model.to_empty(device=generator.device if generator is not None else device)
    if generator is not None:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                # torch's own default for these layers, drawn from our generator
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    bound = 1 / math.sqrt(module.weight[0].numel())
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # ones and zeros: no RNG
    return model.to(device)


def split_for(data: ImageData) -> JudgeSplit:
    """The fixed train/held-out split of a dataset (a seeded permutation of its indices)."""
    n = len(data.images)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_SPLIT_SEED))
    cut = n - max(1, int(n * HELD_OUT_FRACTION))
    return JudgeSplit(train=order[:cut], held_out=order[cut:])


def load_or_train(
    data: ImageData,
    device: torch.device,
    cache_dir: Path | None = None,
    epochs: int = _EPOCHS,
    cancelled: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int, int], None] = lambda epoch, epochs, resumed: None,
) -> Judge:
    """The cached judge of this dataset, or a new one trained now (and cached). JudgeError if impossible.

    While training, `progress(k, n, resumed)` is called as epoch k of n begins (training takes minutes
    on a CPU); `resumed` is the number of epochs an earlier, unfinished training had already done.
    """
    if data.labels is None or data.info.num_classes < 2:
        raise JudgeError(f"{data.info.name} has no class labels, so there is no classifier to judge samples by")
    if len(data.images) < 500:
        raise JudgeError(f"{data.info.name} has only {len(data.images)} images; the judge needs at least 500")
    cache_dir = cache_dir or default_cache_dir()
    path = cache_dir / f"{data.info.checksum}-v{JUDGE_VERSION}.pt"
    split = split_for(data)
    cached = _load_cached(path, data, device, split)
    if cached is not None:
        return cached
    start = time.perf_counter()
    partial = path.with_name(f"{path.stem}.partial.pt")
    model, earlier_s = _train(data, split, device, epochs, cancelled, progress, partial)
    accuracy = evaluate_accuracy(model, data, split.held_out, device)
    train_s = earlier_s + time.perf_counter() - start
    try:
        save_checkpoint(path, {"judge_version": JUDGE_VERSION, "checksum": data.info.checksum,
                               "num_classes": model.num_classes, "accuracy": accuracy,
                               "train_s": train_s, "model": model.state_dict()})
        partial.unlink(missing_ok=True)
    except (OSError, RuntimeError):  # torch.save raises RuntimeError on a full disk
        pass  # a read-only or full cache folder costs a retrain next time, nothing else
    return Judge(model, accuracy, split, data.info.checksum, "trained", train_s)


def partial_progress(data: ImageData, cache_dir: Path | None = None) -> tuple[int, int] | None:
    """(epochs done, epochs) of this dataset's unfinished judge training in the cache, or None."""
    path = (cache_dir or default_cache_dir()) / f"{data.info.checksum}-v{JUDGE_VERSION}.partial.pt"
    state = _load_partial(path)
    return (int(state["epoch"]), int(state["epochs"])) if state is not None else None


@torch.no_grad()
def evaluate_accuracy(model: Classifier, data: ImageData, indices: torch.Tensor, device: torch.device) -> float:
    """Top-1 accuracy on the given images."""
    images = data.images_at(indices, device)
    labels = data.labels[indices.to(data.labels.device)].to(device)
    _, probs = model.features_and_probs(images)
    return float((probs.argmax(1) == labels).float().mean())


# ------------------------------------------------------------------ helpers
def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _train(
    data: ImageData, split: JudgeSplit, device: torch.device, epochs: int, cancelled: Callable[[], bool],
    progress: Callable[[int, int, int], None], partial: Path,
) -> tuple[Classifier, float]:
    """The trained classifier and the seconds earlier runs spent on it (continued from `partial`)."""
    assert data.labels is not None
    gen = torch.Generator().manual_seed(_SPLIT_SEED)
    model = new_classifier(data.info.num_classes, device, gen)
    images = data.images_at(split.train, device)
    labels = data.labels[split.train.to(data.labels.device)].to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=_LR, weight_decay=_WEIGHT_DECAY)
    steps_per_epoch = max(1, len(images) // _BATCH)
    epochs = max(1, min(epochs, _MAX_STEPS // steps_per_epoch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=_LR, total_steps=epochs * steps_per_epoch)
    done, earlier_s = 0, 0.0
    saved = _load_partial(partial)
    if saved is not None and saved["epochs"] == epochs and saved["num_classes"] == data.info.num_classes:
        before = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), gen.get_state())
        try:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
            gen.set_state(saved["gen"])
            done, earlier_s = int(saved["epoch"]), float(saved["train_s"])
        except (RuntimeError, KeyError, ValueError, TypeError):  # damaged: start over, never trust it
            model.load_state_dict(before[0])
            opt.load_state_dict(before[1])
            gen.set_state(before[2])
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=_LR, total_steps=epochs * steps_per_epoch)
    start = time.perf_counter()
    model.train()
    for epoch in range(done, epochs):
        progress(epoch + 1, epochs, done)
        order = torch.randperm(len(images), generator=gen).to(device)
        for i in range(steps_per_epoch):
            if cancelled():
                raise JudgeCancelled("the run ended before the judge was trained")
            idx = order[i * _BATCH : (i + 1) * _BATCH]
            x = _shift(images[idx], gen)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if epoch + 1 < epochs:
            _save_partial(partial, model, opt, sched, gen, epoch + 1, epochs, earlier_s + time.perf_counter() - start)
    return model.eval(), earlier_s


def _save_partial(path: Path, model: Classifier, opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator,
                  epoch: int, epochs: int, train_s: float) -> None:
    """An unfinished training's state after `epoch` epochs, so the next run continues it."""
    try:
        save_checkpoint(path, {"judge_version": JUDGE_VERSION, "num_classes": model.num_classes, "epoch": epoch,
                               "epochs": epochs, "train_s": train_s, "model": model.state_dict(),
                               "opt": opt.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state()})
    except (OSError, RuntimeError):  # torch.save raises RuntimeError on a full disk
        pass  # a read-only or full cache folder: the next run starts this training over, nothing else


def _load_partial(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged partial file is trained over, never trusted
        return None
    needed = ("epoch", "epochs", "num_classes", "model", "opt", "sched", "gen", "train_s")
    return state if isinstance(state, dict) and all(k in state for k in needed) else None


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by up to 2 pixels each way: the augmentation that matters most for digits."""
    n, size = x.size(0), x.size(-1)
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)  # -1 is the background in the [-1, 1] range
    dy, dx = torch.randint(0, 5, (2, n, 1), generator=gen).to(x.device)
    grid = torch.arange(size, device=x.device)
    rows, cols = (dy + grid)[:, :, None], (dx + grid)[:, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None], 0, rows, cols].unsqueeze(1)


def _load_cached(path: Path, data: ImageData, device: torch.device, split: JudgeSplit) -> Judge | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = new_classifier(int(payload["num_classes"]), device)
        model.load_state_dict(payload["model"])
    except Exception:  # noqa: BLE001 - a damaged cache file is retrained over, never trusted
        return None
    if payload.get("checksum") != data.info.checksum or model.num_classes != data.info.num_classes:
        return None
    return Judge(model.eval(), float(payload["accuracy"]), split, data.info.checksum, "cache", 0.0)
