"""Dataset sources, all reduced to one uint8 tensor of 28x28 images that lives on the training device.

Batches are random index draws into that tensor: no DataLoader, no per-image PIL work on the hot
path. Sources, in the order they are tried for a named dataset: IDX files already on disk (any
split; the train split is preferred), a torchvision download into the cache folder, and, when
neither works and the user named no folder, the embedded font-digit fallback with a note saying
why and how to get the real data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.synthetic import font_digits

IMAGE_SIZE = 28

# name -> (torchvision class name, its folder under a torchvision root)
_NAMED = {
    "mnist": ("MNIST", "MNIST"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST"),
    "kmnist": ("KMNIST", "KMNIST"),
}
# Where Debian's dataset-fashion-mnist package puts its files.
_SYSTEM_FOLDERS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
_DOWNLOAD_TIMEOUT_S = 20.0


class DatasetError(RuntimeError):
    """The dataset the user asked for cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class DatasetInfo:
    """What was loaded and from where: shown to the user and saved with the run."""

    name: str
    source: str
    split: str
    num_images: int
    num_classes: int
    checksum: str
    note: str = ""

    def describe(self) -> str:
        """One line for a status bar or a log."""
        return f"{self.name} ({self.split}, {self.num_images:,} images) from {self.source}"


@dataclass
class ImageData:
    """The whole training set as tensors on one device."""

    images: torch.Tensor  # uint8 (N, 28, 28)
    labels: torch.Tensor | None  # int64 (N,), or None for unlabelled image folders
    info: DatasetInfo

    @property
    def num_classes(self) -> int:
        """Classes a conditional generator can learn: 0 without labels."""
        return 0 if self.labels is None else self.info.num_classes

    def to(self, device: torch.device) -> ImageData:
        """Move the tensors once; batches are then drawn without host round trips."""
        labels = None if self.labels is None else self.labels.to(device)
        return ImageData(self.images.to(device), labels, self.info)

    def batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A random batch in [-1, 1], shape (B, 1, 28, 28), drawn with replacement."""
        idx = torch.randint(len(self.images), (batch_size,), device=self.images.device, generator=generator)
        return self.images_at(idx)

    def labelled_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch and its labels: the same index draw as `batch`, so the RNG sequence matches."""
        if self.labels is None:
            raise ValueError(f"{self.info.name} has no labels")
        idx = torch.randint(len(self.images), (batch_size,), device=self.images.device, generator=generator)
        return self.images_at(idx), self.labels[idx.to(self.labels.device)]

    def images_at(self, indices: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """The images at `indices` in [-1, 1], shape (N, 1, 28, 28), on `device` (default: where they are)."""
        picked = self.images[indices.to(self.images.device)]
        return to_unit_range(picked if device is None else picked.to(device)).unsqueeze(1)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the generator's tanh range)."""
    return images.float().mul_(2.0 / 255.0).sub_(1.0)


def default_data_root() -> Path:
    """The user cache folder for downloads: $XDG_CACHE_HOME/gan-tui/datasets."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gan-tui" / "datasets"


def load_dataset(dataset: str, data_root: str | None = None, seed: int = 0) -> ImageData:
    """Load a dataset by name or path onto the CPU. Raises DatasetError with a clear reason."""
    if dataset == "synthetic":
        return _synthetic(seed, note="")
    if dataset in _NAMED:
        return _load_named(dataset, data_root, seed)
    return _load_path(Path(dataset).expanduser())


# ------------------------------------------------------------- named datasets
def _load_named(name: str, data_root: str | None, seed: int) -> ImageData:
    tv_class, folder = _NAMED[name]
    if data_root is not None:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DatasetError(f"data root {root} does not exist (or is not a folder)")
        roots = [root]
    else:
        root = default_data_root()
        roots = [root, *_SYSTEM_FOLDERS.get(name, [])]
    for candidate in roots:
        for where in (candidate / folder / "raw", candidate):
            found = _read_idx_folder(where)
            if found is not None:
                return _from_idx(name, where, *found)
    try:
        return _download(name, tv_class, root)
    except Exception as exc:  # noqa: BLE001 - any download failure leads to the same advice
        reason = f"{name} is not in {', '.join(str(r) for r in roots)} and could not be downloaded ({_short(exc)})"
    how = (
        f"to use the real data, run once with network access (it downloads to {root}), "
        f"or pass --data-root to a folder holding {folder}/raw/*-idx3-ubyte[.gz]"
    )
    if data_root is not None:
        raise DatasetError(f"{reason}; {how}")
    return _synthetic(seed, note=f"Using the embedded font digits: {reason}. To {how[3:]}.")


def _download(name: str, tv_class: str, root: Path) -> ImageData:
    import torchvision.datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    # torchvision's urlopen has no timeout; a firewalled network would hang start-up without one.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        ds = getattr(tvd, tv_class)(str(root), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    images, labels = ds.data.to(torch.uint8), ds.targets.to(torch.int64)
    return _make(name, f"torchvision download in {root}", "train", images, labels)


# ------------------------------------------------------------------ IDX files
def read_idx(path: Path) -> np.ndarray:
    """Read one IDX (MNIST-format) file, gzipped or not, checking its header against its size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path} could not be read: {_short(exc)}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated or corrupt: header says {shape}, body has {len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_folder(folder: Path) -> tuple[str, np.ndarray, np.ndarray | None] | None:
    """The preferred split found in a folder: (split, images, labels), or None."""
    if not folder.is_dir():
        return None
    for split in ("train", "t10k"):
        images_path = _idx_file(folder, f"{split}-images-idx3-ubyte")
        if images_path is None:
            continue
        images = read_idx(images_path)
        labels_path = _idx_file(folder, f"{split}-labels-idx1-ubyte")
        labels = read_idx(labels_path) if labels_path else None
        if labels is not None and len(labels) != len(images):
            raise DatasetError(f"{labels_path} has {len(labels)} labels for {len(images)} images")
        return split, images, labels
    return None


def _from_idx(name: str, folder: Path, split: str, images: np.ndarray, labels: np.ndarray | None) -> ImageData:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(f"IDX images in {folder} are {images.shape[1:]}, expected 28x28")
    other = "t10k" if split == "train" else "train"
    split_text = split if split == "train" else f"t10k (the {other} split is not there)"
    return _make(
        name,
        f"IDX files in {folder}",
        split_text,
        torch.from_numpy(images.copy()),
        None if labels is None else torch.from_numpy(labels.astype(np.int64)),
    )


# --------------------------------------------------------------- user paths
def _load_path(path: Path) -> ImageData:
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist")
    if path.is_file():
        if "idx3" in path.name:
            images = read_idx(path)
            return _from_idx(path.name, path.parent, "file", images, None)
        raise DatasetError(f"{path} is a file; give an IDX images file (*-idx3-ubyte[.gz]) or a folder")
    for where in (path, path / "raw", *sorted(path.glob("*/raw"))):
        found = _read_idx_folder(where)
        if found is not None:
            return _from_idx(path.name, where, *found)
    return _image_folder(path)


def _image_folder(folder: Path) -> ImageData:
    """A folder of the user's own images, resized to 28x28 grey; subfolders become labels."""
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"{folder} holds no IDX files and no images ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    classes = sorted({p.parent.relative_to(folder).as_posix() for p in files})
    images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as im:
                images[i] = np.asarray(im.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS))
        except OSError as exc:
            raise DatasetError(f"{file} is not a readable image: {_short(exc)}") from exc
    labels = None
    if len(classes) > 1:
        index = {c: k for k, c in enumerate(classes)}
        labels = torch.tensor([index[p.parent.relative_to(folder).as_posix()] for p in files])
    return _make(folder.name, f"images in {folder}", "all", torch.from_numpy(images), labels)


# ------------------------------------------------------------------ helpers
def _synthetic(seed: int, note: str) -> ImageData:
    images, labels = font_digits(10_000, seed=seed)
    return _make("synthetic", "embedded font digits", "generated", images, labels, note)


def _make(
    name: str, source: str, split: str, images: torch.Tensor, labels: torch.Tensor | None, note: str = ""
) -> ImageData:
    checksum = hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest()[:16]
    num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 0
    info = DatasetInfo(name, source, split, len(images), num_classes, checksum, note)
    return ImageData(images.contiguous(), labels, info)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
