"""The ranges a number given by a user (a CLI option or a recipe key) must lie in, checked NaN-safely.

Each typed config checks its own fields with ``check_range`` in its ``validate``, so the command line
and recipes get the same bounds and the same message, which names the allowed range. The limits are
what is meaningful, not what the code happens to survive: 10^9 epochs or a learning rate of 1e308 is
never what anyone meant.
"""

from __future__ import annotations

import math

from compress.errors import ConfigError

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


__all__ = ["MAX_BATCH", "MAX_COUNT", "MAX_DURATION_S", "MAX_EPOCHS", "MAX_IMAGES", "MAX_IMAGE_SIZE", "MAX_LR", "MAX_SEED",
           "MAX_THREADS", "MAX_WORKERS", "check_range", "shown", "span", "within"]
