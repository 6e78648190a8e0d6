"""Reading image files for training safely: bounded decoded size, and a bad file never stops an epoch.

A folder of real images holds the odd truncated JPEG or crafted PNG. Found late (epoch 3, in a
DataLoader worker) such a file used to crash the run; here it is skipped with a warning naming it and
counted, and the batch gets the next readable image instead, so shapes and step counts stay the same.
``strict`` (``--strict-data``) checks every file when the folder is opened and refuses the first bad one.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from torchvision.datasets import ImageFolder

from compress.errors import DataError

log = logging.getLogger("compress.data")

# 64 megapixels: 8k x 8k, far above any training resolution. Pillow's own bomb limit (~89 MP warns,
# ~179 MP raises) still decodes hundreds of MB per image; a file's header gives its size before decoding.
MAX_PIXELS = 64 * 1024 * 1024
# what a damaged or crafted image raises while opening or decoding
BAD_IMAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, EOFError, MemoryError)


def read_image(path: str | Path) -> Any:
    """The image at ``path`` as an RGB PIL image; ``DataError`` (one line) when it is unreadable or too large."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"'{path}' is not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise DataError(f"image '{path}' is {width}x{height} pixels, more than {MAX_PIXELS // 2**20} "
                                    "megapixels: resize it or remove it from the folder")
                img.load()
                return _to_rgb8(img, path)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image '{path}' would decompress to too many pixels ({exc})") from None
    except BAD_IMAGE_ERRORS as exc:
        raise DataError(f"cannot read image '{path}' ({type(exc).__name__}: {exc})") from None


def _to_rgb8(img: Any, path: Path) -> Any:
    """RGB with 8 bits per channel, scaled by the file's real bit depth (Pillow's own conversion clips
    16-bit and float values to 255 instead of scaling them, so a 16-bit scan would train as white)."""
    from PIL import Image

    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        return img.convert("RGB")
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
            raise DataError(f"float image '{path}' has values outside [0, 255] (or NaN): save it as 8- or 16-bit")
        scale = 255.0 if values.max() <= 1.0 else 1.0  # [0, 1] floats are unit intensities
    elif values.min() < 0 or values.max() > 65535:
        raise DataError(f"integer image '{path}' has values outside 0..65535: save it as 8- or 16-bit")
    else:
        scale = 255.0 / 65535.0  # Pillow reads 16-bit greyscale PNG/TIFF as I;16 or I
    grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def check_images(paths: Sequence[str | Path]) -> None:
    """``--strict-data``: every file must decode; the first that does not is refused with its path."""
    for path in paths:
        read_image(path)


def tolerant_getitem(get: Callable[[int], Any], index: int, size: int, paths: Callable[[int], str],
                     skipped: list[str]) -> Any:
    """``get(index)``, or when that file is bad, the next readable one (each bad file warned about once)."""
    for offset in range(size):
        i = (index + offset) % size
        try:
            return get(i)
        except DataError as exc:
            path = paths(i)
            if path not in skipped:
                skipped.append(path)
                log.warning("skipping unreadable image (%d skipped so far in this process): %s", len(skipped), exc)
    raise DataError("no image of the folder could be read: check the files, or pass --strict-data to stop at the first")


class SafeImageFolder(ImageFolder):
    """``torchvision``'s ImageFolder reading through ``read_image``; bad files skipped (or, strict, refused up front)."""

    def __init__(self, root: str | Path, transform: Callable[[Any], Any], strict: bool = False) -> None:
        super().__init__(str(root), transform, loader=read_image)
        self.strict = strict
        self.skipped: list[str] = []  # per process: each DataLoader worker warns about a file once
        if strict:
            check_images([path for path, _ in self.samples])

    def __getitem__(self, index: int) -> Any:
        if self.strict:
            return super().__getitem__(index)
        return tolerant_getitem(super().__getitem__, index, len(self), lambda i: self.samples[i][0], self.skipped)
