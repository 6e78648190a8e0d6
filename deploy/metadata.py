"""Check the preprocessing record a model carries before any number in it sizes an allocation.

The record is what ``compress`` writes (``compress.data.preprocessing.Preprocessing.to_dict``): in an
ONNX model's ``compress.preprocessing`` metadata entry (JSON text), or in a TensorRT engine's sidecar.
A file can be hand-edited or damaged, so every field is checked for type and range, and against the
model's own input shape: ``image_size`` 100000 would otherwise make ``predict`` allocate tens of GiB.
"""

from __future__ import annotations

import json
import math
from typing import Any

from deploy.errors import DeployError

MAX_IMAGE_SIDE = 4096  # the largest model input side deploy feeds; ImageNet models use 224-518
MODEL_CHANNELS = (1, 3)  # grey or RGB: the only inputs the preprocessing can build
MAX_METADATA_CHARS = 1 << 20  # a record with 1000 class names is ~30 KB
MAX_CLASS_NAME_CHARS = 256
# Pixels are in [0, 1] before normalising, so real means and stds are O(1); these bounds keep
# (x - mean) / std finite in float32 (at most ~1e9) whatever a damaged record says.
MAX_NORM, MIN_STD = 1000.0, 1e-6

FIX = "re-export the model with compress"


def parse_json(text: str, what: str) -> Any:
    """``text`` decoded as JSON, or a one-line error naming ``what`` (hostile nesting included)."""
    if len(text) > MAX_METADATA_CHARS:
        raise DeployError(f"{what} is {len(text)} characters, more than the {MAX_METADATA_CHARS} a model record "
                          f"needs; {FIX}")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError; deep nesting recurses
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DeployError(f"{what} is not valid JSON ({reason}); {FIX}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: with a repeated key, which value counts would depend on
    the reader (compress.structured refuses them too)."""
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"the key {repeated[:60]!r} appears twice")
    return dict(pairs)


def _no_constant(name: str) -> float:
    """NaN, Infinity and -Infinity are not JSON numbers (Python's reader accepts them): refused."""
    raise ValueError(f"{name} is not a finite number")


def _int(pre: dict[str, Any], key: str, low: int, high: int, what: str) -> int:
    value = pre.get(key)
    if type(value) is not int or not low <= value <= high:  # bool and float are not sizes
        raise DeployError(f"{what}: '{key}' must be an integer from {low} to {high}, got {value!r:.60}; {FIX}")
    return value


def _floats(pre: dict[str, Any], key: str, count: int, what: str, low: float, high: float) -> list[float]:
    values = pre.get(key)
    ok = isinstance(values, list) and len(values) == count and all(
        type(v) in (int, float) and math.isfinite(v) and low <= v <= high for v in values)
    if not ok:
        raise DeployError(f"{what}: '{key}' must be a list of {count} numbers from {low:g} to {high:g} "
                          f"(one per channel), got {values!r:.60}; {FIX}")
    return [float(v) for v in values]


def _class_names(pre: dict[str, Any], num_classes: int | None, what: str) -> list[str]:
    names = pre.get("class_names") or []
    if not isinstance(names, list) or not all(
            isinstance(n, str) and len(n) <= MAX_CLASS_NAME_CHARS and n.isprintable() for n in names):
        raise DeployError(f"{what}: 'class_names' must be a list of printable names of at most "
                          f"{MAX_CLASS_NAME_CHARS} characters; {FIX}")
    if names and num_classes is not None and len(names) != num_classes:
        raise DeployError(f"{what} names {len(names)} classes but the model outputs {num_classes}; {FIX}")
    return names


def _source_channels(pre: dict[str, Any], channels: int, what: str) -> int:
    """What the training data had (1 for grey data fed to an RGB model); deploy passes it on, unused."""
    value = pre.get("source_channels", channels)
    if type(value) is not int or value not in MODEL_CHANNELS:
        raise DeployError(f"{what}: 'source_channels' must be 1 or 3, got {value!r:.60}; {FIX}")
    return value


def check_preprocessing(pre: Any, input_shape: tuple[int | None, ...], num_classes: int | None,
                        what: str) -> dict[str, Any]:
    """A clean copy of the record ``pre`` (from ``what``), consistent with the model's C x H x W input."""
    if not isinstance(pre, dict):
        raise DeployError(f"{what} must be a JSON object, got {type(pre).__name__}; {FIX}")
    channels = pre.get("channels")
    if type(channels) is not int or channels not in MODEL_CHANNELS:  # not bool, not 1.0
        raise DeployError(f"{what}: 'channels' must be 1 or 3, got {channels!r:.60}; {FIX}")
    size = _int(pre, "image_size", 1, MAX_IMAGE_SIDE, what)
    # resize_size is the shorter side before the centre crop (256 for a 224 crop); it sizes no buffer
    resize = None if pre.get("resize_size") is None else _int(pre, "resize_size", size, 2 * MAX_IMAGE_SIDE, what)
    for axis, (want, name) in enumerate(zip((channels, size, size), ("channels", "height", "width"))):
        model = input_shape[axis] if axis < len(input_shape) else None
        if model is not None and model != want:
            raise DeployError(f"{what} says {want} {name} but the model's input has {model}; {FIX}")
    return {
        "mean": _floats(pre, "mean", channels, what, -MAX_NORM, MAX_NORM),
        "std": _floats(pre, "std", channels, what, MIN_STD, MAX_NORM),
        "image_size": size,
        "channels": channels,
        "source_channels": _source_channels(pre, channels, what),
        "resize_size": resize,
        "class_names": _class_names(pre, num_classes, what),
    }
