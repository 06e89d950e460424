"""Generated digits drawn in the terminal: Unicode half-blocks (two grey pixels per cell) or ASCII.

The pure functions at the top map pixels to cells; `SampleGrid` lays out as many digits as fit and
caches the rendered lines, so a redraw that changed nothing costs nothing. A class-conditional grid
(one row per class) keeps its classes apart when it does not fit whole: see `shown_order`.
"""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

HALF_BLOCK = "\u2580"  # upper half block: foreground = top pixel, background = bottom pixel
ASCII_RAMP = " .:-=+*#%@"
GREY_LEVELS = 32  # quantising greys merges equal neighbours into one segment: fewer bytes per frame


def quantize(value: int) -> int:
    """A grey 0..255 snapped to one of GREY_LEVELS levels (0 and 255 stay exact)."""
    step = 255 / (GREY_LEVELS - 1)
    return int(round(round(value / step) * step))


def halfblock_cell(top: int, bottom: int) -> tuple[str, int, int]:
    """(character, foreground grey, background grey) for a pair of vertically stacked pixels."""
    top_q, bottom_q = quantize(top), quantize(bottom)
    if top_q == bottom_q:
        return " ", bottom_q, bottom_q  # a space with a background: shorter than a coloured block
    return HALF_BLOCK, top_q, bottom_q


def ascii_char(top: int, bottom: int) -> str:
    """The ASCII ramp character for the mean of two stacked pixels."""
    mean = (int(top) + int(bottom)) / 2
    return ASCII_RAMP[min(len(ASCII_RAMP) - 1, int(mean * len(ASCII_RAMP) / 256))]


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor blocks (28 -> 14 for factor 2)."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image[: h * factor, : w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3)).astype(np.uint8)


def digit_lines(image: np.ndarray, factor: int, ascii: bool) -> list[list[Segment]]:
    """One digit as rows of segments, each row two pixel rows tall."""
    pixels = downscale(image, factor)
    if pixels.shape[0] % 2:
        pixels = np.vstack([pixels, np.zeros((1, pixels.shape[1]), dtype=np.uint8)])
    rows: list[list[Segment]] = []
    for y in range(0, pixels.shape[0], 2):
        top_row, bottom_row = pixels[y], pixels[y + 1]
        if ascii:
            rows.append([Segment("".join(ascii_char(t, b) for t, b in zip(top_row, bottom_row)))])
            continue
        row: list[Segment] = []
        for t, b in zip(top_row, bottom_row):
            char, fg, bg = halfblock_cell(int(t), int(b))
            style = _style(fg, bg, char == HALF_BLOCK)
            if row and row[-1].style is style and row[-1].text[-1] == char:
                row[-1] = Segment(row[-1].text + char, style)
            else:
                row.append(Segment(char, style))
        rows.append(row)
    return rows


_STYLES: dict[tuple[int, int, bool], Style] = {}


def _style(fg: int, bg: int, block: bool) -> Style:
    key = (fg if block else -1, bg, block)
    style = _STYLES.get(key)
    if style is None:
        style = Style(color=Color.from_rgb(fg, fg, fg) if block else None, bgcolor=Color.from_rgb(bg, bg, bg))
        _STYLES[key] = style
    return style


class SampleGrid(Widget):
    """As many digits of the current grid as fit, at full (28x14 cells) or half size."""

    DEFAULT_CSS = """
    SampleGrid { width: 1fr; height: 1fr; }
    """

    def __init__(self, *, ascii: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.ascii = ascii
        self._images: np.ndarray | None = None
        self._class_rows = 0
        self._lines: list[Strip] = []
        self._layout_for: tuple[int, int, int] | None = None
        self.shown_indices: list[int] = []

    def set_images(self, images: np.ndarray | None, classes: int = 0) -> None:
        """Show a new grid (uint8, N x 28 x 28); `classes` K > 0 when it is a K x K grid with one row per class."""
        self._images = images
        self._class_rows = classes
        self._layout_for = None
        self.refresh()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return container.height

    def render_line(self, y: int) -> Strip:
        size = self.size
        key = (size.width, size.height, id(self._images))
        if key != self._layout_for:
            self._lines = self._render_all(size.width, size.height)
            self._layout_for = key
        return self._lines[y] if y < len(self._lines) else Strip.blank(size.width)

    def _render_all(self, width: int, height: int) -> list[Strip]:
        images = self._images
        if images is None or len(images) == 0 or width <= 0 or height <= 0:
            self.shown_indices = []
            return []
        factor, cols, rows = choose_layout(width, height, len(images))
        order, cols = shown_order(len(images), self._class_rows, cols, rows)
        self.shown_indices = order
        if not order:
            return [Strip([Segment("(too small for digits)"[:width])])]
        rows = (len(order) + cols - 1) // cols
        digit_w = 28 // factor
        blank = Segment(" " * digit_w)
        gap = Segment(" ")
        lines: list[Strip] = []
        for r in range(rows):
            cells = [digit_lines(images[i], factor, self.ascii) for i in order[r * cols : (r + 1) * cols]]
            for line in range(len(cells[0]) if cells else 0):
                segments: list[Segment] = []
                for c in range(cols):
                    segments.extend(cells[c][line] if c < len(cells) else [blank])
                    segments.append(gap)
                lines.append(Strip(segments).crop(0, width))
            lines.append(Strip.blank(width))
        return lines


def choose_layout(width: int, height: int, count: int) -> tuple[int, int, int]:
    """(downscale factor, columns, rows): full size when a 4x4 grid fits, else half size (more digits)."""
    best = (2, 0, 0)
    for factor in (1, 2):
        digit_w, digit_h = 28 // factor + 1, 14 // factor + 1
        cols = min(count, (width + 1) // digit_w)
        rows = min((count + max(cols, 1) - 1) // max(cols, 1), (height + 1) // digit_h)
        if factor == 1 and cols * rows >= 16:
            return factor, cols, rows
        if cols * rows > best[1] * best[2]:
            best = (factor, cols, rows)
    return best


def shown_order(count: int, classes: int, cols: int, rows: int) -> tuple[list[int], int]:
    """(the indices of the digits shown, in reading order; the columns they fill) for a cols x rows space.

    A plain grid shows its first cols x rows digits. A K x K class grid (row r: class r, column c:
    the same noise in every row) keeps one class per row while all K rows fit, its first `cols`
    noises each; when they do not, it shows the classes in turn (0, 1, ..., K-1 on the first
    noise, then on the second, ...), so a small window shows many classes rather than many of one.
    """
    if cols <= 0 or rows <= 0:
        return [], cols
    if classes < 2 or count != classes * classes:
        return list(range(min(count, cols * rows))), cols
    if rows >= classes:
        cols = min(cols, classes)
        return [r * classes + c for r in range(classes) for c in range(cols)], cols
    in_turn = [c * classes + n for n in range(classes) for c in range(classes)]
    return in_turn[: cols * rows], cols
