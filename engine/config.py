"""The one configuration object of a run: validated, frozen, saved with every run."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

#: "auto" is resolved once the data is known (resolve_preset): a class-conditional preset for
#: labelled data, an unconditional one otherwise; the resolved name is what config.json keeps.
PRESETS = ("auto", "cond-mlp", "cond-dcgan", "dcgan-small", "mlp-small", "mlp", "mlp-dropout", "dcgan")
#: Presets whose generator takes a class and whose discriminator has a projection head.
CONDITIONAL_PRESETS = ("cond-mlp", "cond-dcgan")
#: What "auto" becomes for labelled and for unlabelled data.
AUTO_CONDITIONAL, AUTO_UNCONDITIONAL = "cond-mlp", "mlp"
#: Conditional fixed grids hold one row per class with one column per class (K x K) up to this many classes.
MAX_GRID_CLASSES = 32
LOSSES = ("bce", "hinge", "lsgan", "wgan-gp")
SEED_LIMIT = 2**63  # seeds are whole numbers from 0 to SEED_LIMIT - 1 (torch takes up to 2**64 - 1)
NAMED_DATASETS = ("mnist", "fashion-mnist", "kmnist", "synthetic")
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
#: auto, cpu, cuda, or cuda:N for the N-th GPU (whether it exists is checked when the run starts).
DEVICE_FORMAT = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,3})$")
AMP_MODES = ("auto", "off", "bf16", "fp16")
CUDA_GRAPH_MODES = ("auto", "on", "off")

#: Settings added after runs were first saved, each with the value that reproduces how a run trained
#: before the setting existed. A saved config (a run's config.json, a checkpoint) that lacks one is
#: read with that value (TrainConfig.from_saved), so an old run resumes, rolls back and exports with
#: the nets it was trained with, whatever today's default is.
LEGACY_VALUES: dict[str, Any] = {"g_class_embed": 32, "d_mbstd": 0, "diff_augment_cutout": 0.5, "mode_seeking": 0.0}

#: Hyperparameters that may change while a run goes on (the dashboard's form, SetHyperparams).
LIVE_HYPERPARAMS = ("lr_g", "lr_d", "beta1", "beta2", "d_steps", "label_smoothing")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field, the value and what is allowed."""

    def __init__(self, name: str, value: Any, allowed: str, short: str = "") -> None:
        self.field = name
        self.value = value
        self.allowed = allowed
        self.short = short or allowed  # the same rule in a few words, for a narrow form field
        super().__init__(f"{name}: {value!r} is not allowed; {allowed}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Immutable: a change makes a new config."""

    # --- data ---
    dataset: str = "mnist"
    """mnist, fashion-mnist, kmnist, synthetic, or a path to IDX files or a folder of images."""
    data_root: str | None = None
    """Where datasets are looked for and downloaded to; None means the user cache folder."""

    # --- model ---
    preset: str = "auto"
    """Architecture: auto (default: cond-mlp for labelled data, mlp otherwise), cond-mlp, cond-dcgan,
    dcgan-small, mlp-small, mlp, mlp-dropout, dcgan."""
    num_classes: int = 0
    """Classes a conditional preset generates (set from the data when the run starts; 0 for unconditional)."""
    latent_dim: int = 64
    """Size of the noise vector z."""
    g_hidden: tuple[int, ...] = ()
    """Generator widths (MLP units or conv channels); empty means the preset's own."""
    d_hidden: tuple[int, ...] = ()
    """Discriminator widths (MLP units or conv channels); empty means the preset's own."""
    g_class_embed: int = 32
    """Width of the conditional generators' class embedding (concatenated to z)."""
    d_mbstd: int = 0
    """Minibatch standard deviation in cond-mlp's discriminator (ProGAN): the feature spread over groups
    of this many images joins the last hidden layer's input, so D sees a batch drawn in one style (0: off;
    the other presets ignore it)."""

    # --- objective and optimisation ---
    loss: str = "hinge"
    """bce (non-saturating, with logits), hinge, lsgan, wgan-gp."""
    lr_g: float = 2e-4
    """Adam learning rate of the generator."""
    lr_d: float = 8e-4
    """Adam learning rate of the discriminator. Four times G's by default (two time-scale updates,
    Heusel et al. 2017): at equal rates G drew each class in one style (bench/quality.py's notes)."""
    beta1: float = 0.5
    """Adam beta1 for both nets."""
    beta2: float = 0.999
    """Adam beta2 for both nets."""
    batch_size: int = 128
    """Images per batch. 128 (as in the DCGAN paper): on the 2-core CPU it trained 20% more images a
    second than 64 and drew digits the judge read as their class more often (bench/quality.py's notes)."""
    d_steps: int = 1
    """Discriminator updates per generator update."""
    label_smoothing: float = 0.0
    """One-sided label smoothing: real targets become 1 - this (bce only)."""
    gp_weight: float = 10.0
    """Gradient-penalty weight (wgan-gp only)."""
    diff_augment: bool = True
    """DiffAugment: random translation and cutout of real and fake images before D."""
    diff_augment_cutout: float = 0.25
    """Side of DiffAugment's cut-out square as a share of the image side (0: translation only). A quarter:
    half the side hid most of a 28x28 digit and left D too little to tell styles apart."""
    mode_seeking: float = 0.0
    """Weight of the mode-seeking term (Mao et al. 2019) in G's loss: pairs of fakes of one class rewarded
    for differing as their noise differs (0: off)."""
    r1_gamma: float = 0.0
    """Weight of the R1 penalty on real images (0: off), applied lazily every 16 steps."""
    g_ema: float = 0.9995
    """Decay per step of the generator's weight average that draws the samples (0: sample the raw
    generator). Early on the average spans the steps so far; 0.9995 (half-life ~1,400 steps) drew
    better digits than 0.999 from ~8,000 steps on (bench/quality.py's notes)."""

    # --- length ---
    steps: int = 10_000
    """Training steps (one step = d_steps D updates + one G update)."""
    epochs: float = 0.0
    """If > 0, the run length in epochs of the dataset, overriding steps."""

    # --- runtime ---
    seed: int = 0
    """Seed for weights, batches and the fixed noise."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda, or cuda:N for the N-th GPU."""
    amp: str = "auto"
    """Mixed precision: auto (bf16 on GPUs of compute capability 8.0+, fp16 on 7.x, else off; on the CPU
    bf16 where it has bf16 instructions, AVX-512 BF16 or AMX, else off), off, bf16, fp16 (CUDA only)."""
    cuda_graph: str = "auto"
    """Record the training step in a CUDA graph and replay it several steps at a time (engine/graph.py):
    auto (on CUDA, falling back to eager steps with a note where recording fails or fp16 is used),
    on (refused without CUDA or with fp16), off (eager steps). The CPU always trains eagerly."""
    deterministic: bool = False
    """Bitwise-reproducible GPU kernels (cuDNN and cuBLAS in fixed order); slower, so opt-in. The CPU
    is reproducible without it."""
    threads: int = 0
    """CPU threads of a training step on the CPU (0: OMP_NUM_THREADS when set, else all usable cores but
    one, at least 1, so the run's side work and the dashboard keep a core; see
    engine/devices.training_threads). Unused on a GPU."""

    # --- cadence: side work by wall time, bounded by steps (see engine/schedule.py) ---
    log_every: int = 20
    """Fewest steps between metrics records (the only host syncs of the hot loop)."""
    log_every_s: float = 0.1
    """Seconds between metrics records (0: a record exactly every log_every steps)."""
    sample_every: int = 50
    """Fewest steps between sample grids from the fixed noise."""
    sample_every_s: float = 2.0
    """Seconds between sample grids (0: a grid exactly every sample_every steps)."""
    checkpoint_every: int = 1000
    """Fewest steps between periodic checkpoints (0: only on stop and on request)."""
    checkpoint_every_s: float = 60.0
    """Seconds between periodic checkpoints (0: exactly every checkpoint_every steps). A minute keeps
    rollback targets inside a default CPU run and costs well under 1% of it."""
    keep_checkpoints: int = 3
    """How many periodic checkpoints to keep on disk."""
    num_samples: int = 64
    """Images in the fixed-noise sample grid."""
    tensorboard: bool = True
    """Also write the run folder as a TensorBoard log dir (engine/tensorboard.py); --no-tensorboard turns it off."""

    # --- quality and health ---
    quality_every: int = 1000
    """Fewest steps between quality measurements through the dataset's classifier (0: off). One
    measurement of 1,000 samples costs 0.7 s of CPU, milliseconds on a GPU."""
    quality_share: float = 0.05
    """Most of the wall time the quality measurements may take (the worker rests in between; 1: no limit)."""
    judge_share: float = 1.0
    """Most of the wall time training the judge may take the first time a dataset is used (1: no limit).
    No limit by default: the judge trains on one thread on the core a CPU run leaves free (threads);
    on the 2-core box at 0.5 a 4,000-step run ended before its judge was ready, at 1 the first
    quality figure came at 60 s and training ran as fast (5,170 against 5,230 img/s)."""
    quality_samples: int = 1000
    """Generated (and real) images per quality measurement; capped at half the judge's held-out images."""
    alarm_window: int = 200
    """Steps the discriminator must win outright before the d_wins alarm."""
    alarm_d_margin: float = 0.05
    """D wins outright when D(real) >= 1 - this and D(fake) <= this."""
    alarm_grad_spike: float = 10.0
    """A gradient norm this many times its recent median raises grad_spike."""
    alarm_coverage_drop: int = 2
    """Classes covered falling this many below the run's best raises collapse."""
    alarm_diversity_drop: float = 0.5
    """Diversity falling below this fraction of the run's best raises collapse."""
    rollback_lr_scale: float = 0.5
    """Learning-rate factor of the 'roll back with lower learning rates' key."""

    def __post_init__(self) -> None:
        _check_shapes(self)  # a width list that is a number (a hand-written config) is a ConfigError, not a TypeError
        # JSON and the command line hand us lists; keep the frozen object hashable.
        object.__setattr__(self, "g_hidden", tuple(self.g_hidden))
        object.__setattr__(self, "d_hidden", tuple(self.d_hidden))
        self.validate()

    # ------------------------------------------------------------------ API
    def validate(self) -> None:
        """Raise ConfigError for the first invalid field."""
        _choice("preset", self.preset, PRESETS)
        _choice("loss", self.loss, LOSSES)
        if not isinstance(self.device, str) or not DEVICE_FORMAT.match(self.device):
            raise ConfigError("device", self.device, "use auto, cpu, cuda or cuda:N (N a GPU index)")
        if not isinstance(self.deterministic, bool):
            raise ConfigError("deterministic", self.deterministic, "must be true or false")
        _choice("amp", self.amp, AMP_MODES)
        _choice("cuda_graph", self.cuda_graph, CUDA_GRAPH_MODES)
        _int_range("threads", self.threads, 0, 1024)
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError("dataset", self.dataset, f"use one of {', '.join(NAMED_DATASETS)} or a path")
        _int_range("latent_dim", self.latent_dim, 1, 4096)
        _int_range("num_classes", self.num_classes, 0, 10_000)
        _int_range("g_class_embed", self.g_class_embed, 1, 4096)
        if not isinstance(self.d_mbstd, int) or isinstance(self.d_mbstd, bool) or self.d_mbstd not in (0, *range(2, 257)):
            raise ConfigError("d_mbstd", self.d_mbstd, "must be 0 (off) or a group size from 2 to 256")
        for name in ("g_hidden", "d_hidden"):
            for width in getattr(self, name):
                if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 16384:
                    raise ConfigError(name, getattr(self, name), "widths must be whole numbers from 1 to 16384")
        _positive("lr_g", self.lr_g, upper=1.0)
        _positive("lr_d", self.lr_d, upper=1.0)
        _unit_interval("beta1", self.beta1)
        _unit_interval("beta2", self.beta2)
        _int_range("batch_size", self.batch_size, 1, 65536)
        _int_range("d_steps", self.d_steps, 1, 100)
        _number("label_smoothing", self.label_smoothing, 0.0, 0.5, "must be from 0 to 0.5")
        _number("gp_weight", self.gp_weight, 0.0, 1e6, "must be from 0 to 1e6")
        if not isinstance(self.diff_augment, bool):
            raise ConfigError("diff_augment", self.diff_augment, "must be true or false")
        _number("diff_augment_cutout", self.diff_augment_cutout, 0.0, 0.75, "must be from 0 (translation only) to 0.75")
        _number("mode_seeking", self.mode_seeking, 0.0, 100.0, "must be from 0 (off) to 100")
        _number("r1_gamma", self.r1_gamma, 0.0, 1e6, "must be from 0 (off) to 1e6")
        _number("g_ema", self.g_ema, 0.0, 0.99999, "must be from 0 (off) to 0.99999")
        _int_range("steps", self.steps, 1, 10**10)
        _number("epochs", self.epochs, 0.0, 1e6, "must be from 0 (use steps) to 1e6")
        _int_range("seed", self.seed, 0, SEED_LIMIT - 1)
        _int_range("log_every", self.log_every, 1, 10**9)
        _int_range("sample_every", self.sample_every, 1, 10**9)
        _int_range("checkpoint_every", self.checkpoint_every, 0, 10**9)
        for name in ("log_every_s", "sample_every_s", "checkpoint_every_s"):
            _number(name, getattr(self, name), 0.0, 1e6, "must be from 0 (count steps only) to 1e6 seconds")
        _number("quality_share", self.quality_share, 0.001, 1.0, "must be above 0 and at most 1")
        _number("judge_share", self.judge_share, 0.001, 1.0, "must be above 0 and at most 1")
        _int_range("keep_checkpoints", self.keep_checkpoints, 1, 1000)
        _int_range("num_samples", self.num_samples, 1, 1024)
        if not isinstance(self.tensorboard, bool):
            raise ConfigError("tensorboard", self.tensorboard, "must be true or false")
        _int_range("quality_every", self.quality_every, 0, 10**9)
        _int_range("quality_samples", self.quality_samples, 10, 10_000)
        _int_range("alarm_window", self.alarm_window, 1, 10**9)
        _number("alarm_d_margin", self.alarm_d_margin, 0.0, 0.5, "must be from 0 to 0.5")
        _number("alarm_grad_spike", self.alarm_grad_spike, 1.0, 1e9, "must be from 1 to 1e9")
        _int_range("alarm_coverage_drop", self.alarm_coverage_drop, 1, 1000)
        _number("alarm_diversity_drop", self.alarm_diversity_drop, 0.0, 1.0, "must be from 0 to 1")
        _number("rollback_lr_scale", self.rollback_lr_scale, 1e-6, 1.0, "must be above 0 and at most 1")
        if self.amp == "fp16" and self.device == "cpu":  # auto may still land on the CPU: the trainer refuses then
            raise ConfigError("amp", self.amp, "fp16 needs CUDA; use off or bf16 on the CPU")
        if self.cuda_graph == "on" and self.device == "cpu":  # auto may still land on the CPU: the trainer refuses then
            raise ConfigError("cuda_graph", self.cuda_graph, "a CUDA graph needs CUDA and this run trains on the CPU; "
                              "use auto or off")
        if self.cuda_graph == "on" and self.amp == "fp16":
            raise ConfigError("cuda_graph", self.cuda_graph, "fp16's GradScaler cannot be captured in a CUDA graph; "
                              "use --amp bf16 or off, or --cuda-graph auto (eager steps for fp16)")

    def with_hyperparams(self, **changes: Any) -> TrainConfig:
        """A new config with live hyperparameters changed (validated); other fields are refused."""
        unknown = set(changes) - set(LIVE_HYPERPARAMS)
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigError(name, changes[name], f"only {', '.join(LIVE_HYPERPARAMS)} can change during a run")
        return dataclasses.replace(self, **changes)

    def hyperparams(self) -> dict[str, float | int]:
        """The live hyperparameters as a plain dict."""
        return {name: getattr(self, name) for name in LIVE_HYPERPARAMS}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        data = dataclasses.asdict(self)
        data["g_hidden"] = list(self.g_hidden)
        data["d_hidden"] = list(self.d_hidden)
        return data

    @property
    def conditional(self) -> bool:
        """The generator takes a class and the discriminator sees it."""
        return self.preset in CONDITIONAL_PRESETS

    def resolve_preset(self, num_classes: int) -> TrainConfig:
        """This config for data with `num_classes` labelled classes (0: unlabelled).

        "auto" becomes a conditional preset for labelled data and an unconditional one otherwise;
        a conditional run learns `num_classes` classes and its fixed grid becomes one row per class
        (K rows of K). Raises ConfigError when a conditional preset meets unlabelled data.
        """
        preset = self.preset
        if preset == "auto":
            preset = AUTO_CONDITIONAL if num_classes >= 2 else AUTO_UNCONDITIONAL
        if preset not in CONDITIONAL_PRESETS:
            return dataclasses.replace(self, preset=preset, num_classes=0)
        if num_classes < 2:
            raise ConfigError("preset", preset, "a conditional preset needs labelled data (2 or more classes); "
                              "use auto or an unconditional preset")
        samples = num_classes * num_classes if num_classes <= MAX_GRID_CLASSES else self.num_samples
        return dataclasses.replace(self, preset=preset, num_classes=num_classes, num_samples=samples)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from plain data; unknown keys are refused by name."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(key, data[key], "unknown setting")
        return cls(**data)

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a config a run saved: settings it lacks (added since) take LEGACY_VALUES."""
        return cls.from_dict(saved_config_dict(data))

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, saved: bool = True) -> TrainConfig:
        """Read a JSON config file; a malformed file raises ConfigError naming the file.

        `saved` (a run folder's config.json): settings it predates take LEGACY_VALUES (from_saved).
        Otherwise (a user's --config file, often naming a few settings) they take today's defaults."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("config", str(path), f"the file could not be read ({exc.strerror})") from exc
        except UnicodeDecodeError:
            raise ConfigError("config", str(path), "the file must be JSON text (UTF-8); it holds binary data") from None
        except json.JSONDecodeError as exc:
            raise ConfigError("config", str(path), f"the file must be JSON ({exc.msg} at line {exc.lineno})") from exc
        except (RecursionError, ValueError) as exc:  # nested too deeply; a number of thousands of digits
            raise ConfigError("config", str(path), f"the file must be plain JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise ConfigError("config", str(path), "the file must hold a JSON object")
        return cls.from_saved(data) if saved else cls.from_dict(data)


def saved_config_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config's plain data with the settings it predates filled in from LEGACY_VALUES."""
    return {**LEGACY_VALUES, **data}


# ---------------------------------------------------------------- validators
def _check_shapes(cfg: TrainConfig) -> None:
    """Fields whose type the other checks assume: the width lists are lists, data_root a path or null."""
    for name in ("g_hidden", "d_hidden"):
        value = getattr(cfg, name)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, value, "must be a list of widths, e.g. [256, 512] ([] for the preset's own)")
    if cfg.data_root is not None and not isinstance(cfg.data_root, str):
        raise ConfigError("data_root", cfg.data_root, "must be a folder path (text) or null for the user cache")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(name: str, value: Any, low: float, high: float, allowed: str) -> None:
    if not _is_number(value) or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(name, value, allowed, short=f"from {low:g} to {high:g}")


def _positive(name: str, value: Any, upper: float) -> None:
    if not _is_number(value) or not math.isfinite(value) or not 0 < value <= upper:
        raise ConfigError(name, value, f"must be a number above 0 and at most {upper:g}", short=f"above 0, up to {upper:g}")


def _unit_interval(name: str, value: Any) -> None:
    _number(name, value, 0.0, 0.9999, "must be from 0 to 0.9999")


def _int_range(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(name, value, f"must be a whole number from {low} to {high}", short=f"whole, {low} to {high}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, value, f"use one of {', '.join(allowed)}")

