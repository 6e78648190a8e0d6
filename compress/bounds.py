"""The ranges a number given by a user (a CLI option or a recipe key) must lie in, checked NaN-safely.

Each typed config checks its own fields with ``check_range`` in its ``validate``, so the command line,
the Python API and recipes get the same bounds and a message naming the allowed range. ``OPTION_BOUNDS``
is the table of every number option of every ``compress`` command: the CLI checks each value against it
while it reads the command line, before any work (``compress export --target cpu --threads 1000000`` is
refused at once), and ``tests/test_bounds.py`` walks every command's options and fails on a number option
the table does not bound. The limits are what is meaningful, not what the code happens to survive: 10^9
epochs or a learning rate of 1e308 is never what anyone meant.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

from compress.errors import ConfigError, UsageError

MAX_EPOCHS = 100_000
MAX_BATCH = 65_536  # images per batch
MAX_COUNT = 2**31 - 1  # images in a subset, labels per class: more than any dataset holds
# numpy's legacy seeding takes 32 bits; the loaders derive per-epoch torch seeds as seed * 100_003 + epoch,
# which must stay below 2**63
MAX_SEED = 2**32 - 1
MAX_LR = 10.0
MAX_IMAGE_SIZE = 2048  # pixels per side
MAX_WORKERS = 256  # DataLoader processes
MAX_THREADS = 1024
MAX_DURATION_S = 3600.0  # timed seconds per latency point
MAX_IMAGES = 100_000  # images an export step reads into memory (parity, calibration, evaluation)
MAX_WORKSPACE_MB = 2**20  # TensorRT builder workspace: 1 TiB, more than any GPU has
MAX_LOSS_WEIGHT = 10_000.0  # a loss term's weight: the papers use 0.1 to 50
MAX_TEMPERATURE = 1000.0  # a softmax temperature: the papers use 1 to 20
MAX_LATENCY_MS = 3_600_000.0  # a latency threshold: an hour per image
MAX_SPEEDUP = 1_000_000.0  # a speed-up threshold
MAX_FACTOR = 1024  # SimKD's projector bottleneck factor (C_t / r channels)
MAX_BLOCKS = 1000  # blocks of a network (ATSC's adapt_last)
MAX_STEP_INTERVAL = 1_000_000  # training steps between two teacher steps (ATSC's teacher_every)
MAX_SAVE_EVERY_S = 7 * 24 * 3600  # a week between mid-epoch saves


def within(value: object, low: float, high: float, *, above: bool = False, below: bool = False) -> bool:
    """``low <= value <= high`` (``low < value`` with ``above``, ``value < high`` with ``below``).

    False for NaN, for booleans and for anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and math.isnan(value):  # NaN compares False both ways: it would pass "not < low"
        return False
    over_low = value > low if above else value >= low
    under_high = value < high if below else value <= high
    return over_low and under_high


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # 3600000, not 3.6e+06
    return str(value) if isinstance(value, int) else f"{value:g}"


def span(low: float, high: float, *, above: bool = False, below: bool = False) -> str:
    """The range in words: ``at least 1 and at most 100000``, ``above 0 and below 1``."""
    return (f"{'above' if above else 'at least'} {_number(low)} and "
            f"{'below' if below else 'at most'} {_number(high)}")


def shown(value: object, limit: int = 60) -> str:
    """``value`` as an error message quotes it: a huge number by its size, long text cut short."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        # str() refuses more than 4300 digits; beyond that the count comes from the bit length
        digits = len(str(abs(value))) if value.bit_length() < 14_000 else int(value.bit_length() * math.log10(2)) + 1
        return f"a {digits}-digit number"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def check_range(label: str, value: object, low: float, high: float, *, above: bool = False, below: bool = False,
                hint: str = "") -> None:
    """Raise a ConfigError naming ``label``, the allowed range and ``hint`` unless ``value`` lies in it."""
    if not within(value, low, high, above=above, below=below):
        raise ConfigError(f"{label} must be {span(low, high, above=above, below=below)}{hint}, got {shown(value)}")


@dataclass(frozen=True)
class Bound:
    """The values a number option takes: ``low``..``high`` (exclusive with ``above``/``below``), ``unit`` for
    the message. ``unbounded`` (a reason) marks an option that needs no range, said explicitly."""

    low: float = 0
    high: float = 0
    above: bool = False
    below: bool = False
    unit: str = ""
    unbounded: str = ""

    def check(self, option: str, value: object) -> None:
        """Raise a UsageError (exit 2) naming ``option`` unless ``value`` lies in the range."""
        if not self.unbounded and not within(value, self.low, self.high, above=self.above, below=self.below):
            raise UsageError(f"{option} must be {span(self.low, self.high, above=self.above, below=self.below)}"
                             f"{self.unit}, got {shown(value)}")


PERCENT = Bound(0, 100, unit=" (percent points)")
WEIGHT = Bound(0, MAX_LOSS_WEIGHT)
COUNT = Bound(1, MAX_COUNT)
SEED = Bound(0, MAX_SEED)

# Every number option of every command, by its long name (an option means the same in each command that has
# it). The configs behind the options check the same ranges (and what depends on other values, such as a
# warm-up shorter than the training); this table is what the command line refuses before reading anything.
OPTION_BOUNDS: dict[str, Bound] = {
    # training (train-teacher, distill)
    "--epochs": Bound(1, MAX_EPOCHS),
    "--batch-size": Bound(1, MAX_BATCH),
    "--lr": Bound(0, MAX_LR, above=True),
    "--momentum": Bound(0, 1, below=True),
    "--weight-decay": Bound(0, 1),
    "--warmup": Bound(0, MAX_EPOCHS, unit=" epochs"),
    "--label-smoothing": Bound(0, 1, below=True),
    "--seed": SEED,
    "--save-every": Bound(0, MAX_SAVE_EVERY_S, unit=" s"),
    # data
    "--workers": Bound(0, MAX_WORKERS),
    "--train-limit": COUNT,
    "--val-limit": COUNT,
    "--labels-per-class": COUNT,
    "--label-fraction": Bound(0, 1, above=True),
    "--labeled-share": Bound(0, 1, above=True, below=True),
    "--label-seed": SEED,
    "--holdout-per-class": COUNT,
    "--shift-seed": SEED,
    "--image-size": Bound(8, MAX_IMAGE_SIZE, unit=" px"),
    "--channels": Bound(1, 3),
    # distillation method settings (compress distill)
    "--factor": Bound(1, MAX_FACTOR),
    "--beta": WEIGHT,
    "--w": WEIGHT,
    "--teacher-ce": WEIGHT,
    "--teacher-lr-scale": WEIGHT,
    "--shared-kl": WEIGHT,
    "--ce-weight": WEIGHT,
    "--kl-weight": WEIGHT,
    "--adapt-last": Bound(1, MAX_BLOCKS),
    "--teacher-every": Bound(1, MAX_STEP_INTERVAL),
    "--pseudo-threshold": Bound(0, 1, above=True),
    "--teacher-drop-limit": Bound(0, 1),
    "--teacher-margin": Bound(0, 1),
    "--temperature": Bound(0, MAX_TEMPERATURE, above=True),
    # export
    "--calibration": Bound(1, MAX_IMAGES, unit=" images"),
    "--workspace-mb": Bound(16, MAX_WORKSPACE_MB),
    "--int8-max-drop": PERCENT,
    "--threads": Bound(1, MAX_THREADS),
    "--max-top1-drop": PERCENT,
    # validate (and its gates)
    "--duration": Bound(0, MAX_DURATION_S, above=True, unit=" s"),
    "--min-top1": PERCENT,
    "--min-agreement": PERCENT,
    "--max-p90-ms": Bound(0, MAX_LATENCY_MS, above=True, unit=" ms"),
    "--min-speedup": Bound(0, MAX_SPEEDUP, above=True),
    "--max-top1-drop-vs-baseline": PERCENT,
    "--max-speedup-loss-vs-baseline": PERCENT,
    "--min-above-chance": PERCENT,  # the gate another branch adds (issue 22): bounded before it lands
    # the common options
    "--verbose": Bound(unbounded="counts a repeated flag (-vv): each repetition only asks for more detail"),
    "--quiet": Bound(unbounded="counts a repeated flag (-qq): each repetition only asks for less output"),
}


def check_option(option: str, value: object) -> None:
    """Check a number option's value against ``OPTION_BOUNDS``; an option missing from it is a bug."""
    bound = OPTION_BOUNDS.get(option)
    if bound is None:
        raise KeyError(f"number option {option} has no entry in compress.bounds.OPTION_BOUNDS")
    bound.check(option, value)


__all__ = ["Bound", "OPTION_BOUNDS", "check_option", "MAX_BATCH", "MAX_COUNT", "MAX_DURATION_S", "MAX_EPOCHS", "MAX_IMAGES", "MAX_IMAGE_SIZE", "MAX_LR", "MAX_SEED",
           "MAX_THREADS", "MAX_WORKERS", "check_range", "shown", "span", "within"]
