"""The footer: the keys that matter most, as many as fit whole, and always the help key.

Textual's Footer crops at the right edge (`u Roll bac`, `q Qui` at 80 and 120 columns); this one
drops whole keys, least important first, so what shows is never cut.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui_gan.keys import KEYS, Key, footer_keys

_GAP = 2


def fit_keys(width: int, keys: list[Key] | None = None, paused: bool = False, attached: bool = False,
             over: bool = False) -> list[Key]:
    """The most important keys that fit whole in `width` columns (the first always), in table order."""
    chosen: list[Key] = []
    used = 0
    for key in keys if keys is not None else footer_keys(paused, over):
        size = len(key.shown) + 1 + len(key.label_for(paused, attached)) + (_GAP if chosen else 0)
        if chosen and used + size > width:
            continue  # a shorter, less important key may still fit
        chosen.append(key)
        used += size
    rank = {k.action + k.keys: i for i, k in enumerate(KEYS)}
    return sorted(chosen, key=lambda k: rank.get(k.action + k.keys, len(KEYS)))


def footer_text(width: int, paused: bool = False, attached: bool = False, over: bool = False) -> Text:
    """The footer line for `width` columns (pure, for tests); `paused`: space says Resume; `attached`:
    q says Detach; `over`: the run has ended, so no key for its trainer."""
    text = Text(no_wrap=True, overflow="crop")
    for i, key in enumerate(fit_keys(width, paused=paused, attached=attached, over=over)):
        if i:
            text.append(" " * _GAP)
        text.append(key.shown, style="bold")
        text.append(" " + key.label_for(paused, attached))
    return text


class KeyFooter(Widget):
    """One line of keys at the bottom of the dashboard."""

    DEFAULT_CSS = """
    KeyFooter { height: 1; dock: bottom; background: $footer-background; color: $footer-foreground; padding: 0 1; }
    """

    paused: reactive[bool] = reactive(False)
    """Whether the run is paused (the dashboard sets it from the run's phase)."""
    attached: reactive[bool] = reactive(False)
    """Whether the dashboard was opened with `gan-tui attach` (q detaches there)."""
    over: reactive[bool] = reactive(False)
    """Whether the run has ended (finished, stopped, failed, interrupted)."""

    def render(self) -> Text:
        return footer_text(self.content_size.width, self.paused, self.attached, self.over)
