"""The embedded fallback dataset: digits drawn from fonts with random distortions.

It needs nothing but Pillow (which torchvision brings), so `gan-tui` always has something real to
train on, offline, on a fresh machine. Glyphs are rendered once per font and stroke width; the
distortions (rotation, scale, shear, shift) are one batched `affine_grid`/`grid_sample` call.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

_RENDER = 64  # glyphs are drawn large, then scaled into a 20x20 box centred in 28x28 like MNIST
_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))


def font_digits(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` distorted digit images (uint8, N x 28 x 28) and their labels (int64)."""
    gen = torch.Generator().manual_seed(seed)
    templates, template_labels = _templates()
    pick = torch.randint(len(templates), (count,), generator=gen)
    base = templates[pick].unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(count, generator=gen) * (high - low) + low

    angle = uniform(-0.3, 0.3)
    scale = uniform(0.85, 1.15)
    shear = uniform(-0.25, 0.25)
    shift = torch.rand(count, 2, generator=gen) * 0.16 - 0.08
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin + shear * cos, shift[:, 0]], dim=1),
            torch.stack([sin, cos + shear * sin, shift[:, 1]], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(base.shape), align_corners=False)
    warped = F.grid_sample(base, grid, align_corners=False, padding_mode="zeros").squeeze(1)
    images = (warped.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, template_labels[pick]


def _fonts() -> list[ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    fonts: list[ImageFont.FreeTypeFont | ImageFont.ImageFont] = [ImageFont.load_default(size=_RENDER)]
    for folder in _FONT_DIRS:
        for path in sorted(folder.glob("*.ttf"))[:8]:
            fonts.append(ImageFont.truetype(str(path), size=_RENDER))
    return fonts


def _templates() -> tuple[torch.Tensor, torch.Tensor]:
    """Every digit in every font at three stroke widths, centred by its bounding box."""
    images, labels = [], []
    for font in _fonts():
        for stroke in (0, 2, 4):
            for digit in range(10):
                images.append(_render(str(digit), font, stroke))
                labels.append(digit)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _render(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, stroke: int) -> torch.Tensor:
    canvas = Image.new("L", (_RENDER * 2, _RENDER * 2), 0)
    ImageDraw.Draw(canvas).text((_RENDER // 2, _RENDER // 4), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    box = canvas.getbbox() or (0, 0, 1, 1)
    glyph = canvas.crop(box)
    ratio = 20 / max(glyph.size)
    size = (max(1, math.ceil(glyph.size[0] * ratio)), max(1, math.ceil(glyph.size[1] * ratio)))
    glyph = glyph.resize(size, Image.Resampling.LANCZOS)
    out = Image.new("L", (28, 28), 0)
    out.paste(glyph, ((28 - size[0]) // 2, (28 - size[1]) // 2))
    return torch.frombuffer(bytearray(out.tobytes()), dtype=torch.uint8).view(28, 28).float() / 255.0
