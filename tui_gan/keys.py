"""The dashboard's keys, in one table: the bindings, the footer, the help screen and the palette
are all made from it, so a key cannot be bound without being documented, or the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    """One key (or a pair doing the same thing) and everything that is said about it."""

    keys: str  # Textual key names, comma-separated: "h,question_mark"
    action: str  # an action of the dashboard screen, with arguments: "browse(-1)"
    label: str  # a word or two for the footer
    help: str  # one line for the help screen
    display: str = ""  # how the help screen and the footer write the key ("" = the first key name)
    footer: int = 0  # footer rank: 1 is shown first, 0 never; keys that do not fit drop from the highest rank
    palette: str = ""  # the palette's title for it ("" = not in the palette)
    group: str = "training"  # help screen section
    typing: bool = True  # a printable key: while the form has focus it types instead
    priority: bool = False  # works everywhere, even over a modal (ctrl+c)
    paused_label: str = ""  # the footer's word while the run is paused ("" = the same label)
    paused_footer: int = 0  # footer rank while the run is paused (0 = the same rank)
    attached_label: str = ""  # the footer's word in a dashboard opened with `gan-tui attach`
    live: bool = False  # it acts on a live trainer: off the footer once the run is over

    @property
    def shown(self) -> str:
        """The key as a person writes it."""
        return self.display or self.keys.split(",")[0]

    def rank(self, paused: bool, over: bool = False) -> int:
        """Its footer rank (1 first, 0 never), given whether the run is paused, or over."""
        if over and self.live:
            return 0
        return self.paused_footer if paused and self.paused_footer else self.footer

    def label_for(self, paused: bool, attached: bool = False) -> str:
        """The footer's word for this key, given whether the run is paused and the dashboard attached."""
        if paused and self.paused_label:
            return self.paused_label
        return self.attached_label if attached and self.attached_label else self.label

    @property
    def action_name(self) -> str:
        """The action without its arguments."""
        return self.action.split("(")[0]


HELP_KEY = "h,question_mark"

KEYS: tuple[Key, ...] = (
    Key("space", "toggle_pause", "Pause", "pause / resume training", footer=3, palette="Pause / resume",
        paused_label="Resume", live=True),
    Key("n", "step_once", "Step", "one training step (while paused)", footer=9, palette="Step once",
        paused_footer=4, live=True),  # paused, stepping is what the keys are for
    Key("s", "save", "Save", "save a checkpoint now", footer=5, palette="Save checkpoint",
        live=True),
    Key("e", "export", "Export", "export: grid PNG at a scale, GIF over time, metrics CSV, sample PNGs",
        footer=6, palette="Export"),
    Key("v", "toggle_quality", "Quality", "quality view: Frechet distance, class histogram, alarms "
        "(on tall terminals: which of losses and quality is large)", footer=4, palette="Quality view",
        group="view"),
    Key("m", "notes_log", "Notes", "every note and warning of this session, scrollable", footer=7,
        palette="Notes log", group="view"),
    Key("u", "roll_back('last-good')", "Undo", "roll back to the last good checkpoint (at once after a NaN "
        "alarm, else asks); its hyperparameters are restored", footer=8, palette="Roll back", live=True),
    Key("U", "roll_back('last-good', True)", "Undo, lower lr", "the same, then learning rates x rollback_lr_scale",
        palette="Roll back with lower learning rates"),
    Key("b", "roll_back('best')", "Best", "roll back to the best checkpoint (lowest Frechet distance; asks)",
        palette="Roll back to best"),
    Key("c", "compare", "Compare", "compare the newest runs of this runs folder: curves, config diff, digits",
        palette="Compare runs", group="view"),
    Key("g", "pick_digit", "Digit", "samples of one digit (conditional runs): g then 0-9; g then a: the fixed grid",
        palette="Pick a digit", group="view"),
    Key("r", "fresh_samples", "Fresh", "sample fresh noise (the fixed grid stays)", palette="Fresh samples",
        group="view"),
    Key("left_square_bracket", "browse(-1)", "Older", "step back through this run's grids", display="[",
        palette="Older grid", group="view"),
    Key("right_square_bracket", "browse(1)", "Newer", "step forth through this run's grids", display="]",
        palette="Newer grid", group="view"),
    Key("l", "toggle_log", "Log", "log10 scale on the loss plot", palette="Log scale", group="view"),
    Key("plus,equals_sign", "smoothing(1)", "Smooth+", "more loss smoothing", display="+",
        palette="More smoothing", group="view"),
    Key("minus", "smoothing(-1)", "Smooth-", "less loss smoothing", display="-", palette="Less smoothing",
        group="view"),
    Key("w", "toggle_window", "Window", "loss plot: whole run / recent records", palette="Loss window",
        group="view"),
    Key("tab", "focus_form", "Form", "into the hyperparameter form (enter applies, escape leaves)",
        group="form", typing=False),
    Key("escape", "leave_form", "Leave form", "leave the hyperparameter form", group="form", typing=False),
    Key(HELP_KEY, "help", "Help", "this help", display="h/?", footer=1, palette="Help: every key",
        group="app"),
    Key("ctrl+p", "command_palette", "Palette", "command palette (every action)", display="^p", footer=10,
        group="app", typing=False),
    Key("q", "quit_run", "Quit", "quit: asks whether to stop the run (enter, saves a checkpoint) or leave it "
        "training (d); attached: detach", footer=2, palette="Quit", group="app", attached_label="Detach"),
    Key("ctrl+q,ctrl+c", "quit_run", "Quit", "the same as q, also while typing", display="^q/^c", group="app",
        typing=False, priority=True),
    Key("X", "stop_run", "Stop run", "stop the run, keep the dashboard (asks; saves a checkpoint)",
        palette="Stop the run", group="app"),
)

GROUPS = {"training": "Training", "view": "View", "form": "Hyperparameter form", "app": "Dashboard"}

# Actions on printable keys: while the form has focus those keys are typing, not commands.
TYPING_ACTIONS = frozenset(k.action_name for k in KEYS if k.typing)


def bindings() -> list[Binding]:
    """The table as Textual bindings (the footer is drawn by KeyFooter, so none is `show`n)."""
    return [
        Binding(k.keys, k.action, k.label, show=False, key_display=k.display or None, priority=k.priority)
        for k in KEYS
        if k.action != "command_palette"  # Textual binds ctrl+p itself
    ]


def footer_keys(paused: bool = False, over: bool = False) -> list[Key]:
    """The keys the footer may show, most important first (help, then quit: the way out always shows);
    once the run is `over`, none that acts on its trainer."""
    return sorted((k for k in KEYS if k.rank(paused, over)), key=lambda k: k.rank(paused, over))


def help_lines() -> list[tuple[str, list[Key]]]:
    """(section title, keys) in table order, for the help screen."""
    return [(title, [k for k in KEYS if k.group == group]) for group, title in GROUPS.items()]


def palette_keys() -> list[Key]:
    """The keys offered in the command palette, in table order."""
    return [k for k in KEYS if k.palette]
