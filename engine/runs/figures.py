"""How a run's figures are spelled wherever runs are listed: `gan-tui ls` (a runs folder or a sweep
folder), `gan-tui show`, the sweep's headless table and its view. One formatter each, so the same
learning rate reads the same everywhere."""

from __future__ import annotations

import math

LR_DIGITS = 3  # significant digits: a sweep's log-uniform draws (0.000674072...) read as 6.74e-4


def format_lr(value: object) -> str:
    """A learning rate in the fewest characters, to 3 significant digits: `2e-4`, `1.5e-4`, `6.74e-4`,
    `0.5`; `-` for anything that is not a number."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    rounded = float(f"{value:.{LR_DIGITS - 1}e}")
    for digits in range(1, LR_DIGITS + 1):
        spellings = [_short_exponent(f"{rounded:.{digits - 1}e}"), f"{rounded:.{digits}g}"]
        exact = [s for s in spellings if float(s) == rounded]
        if exact:
            return min(exact, key=len)
    return _short_exponent(f"{rounded:.{LR_DIGITS - 1}e}")


def format_lr_pair(lr_g: object, lr_d: object) -> str:
    """`2e-4/8e-4`, or one figure when G and D share it."""
    g, d = format_lr(lr_g), format_lr(lr_d)
    return g if g == d else f"{g}/{d}"


def _short_exponent(text: str) -> str:
    """`6.74e-04` -> `6.74e-4`, `1e+00` -> `1e0`."""
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"
