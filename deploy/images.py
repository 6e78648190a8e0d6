"""Read an image file into pixels ``deploy.preprocess`` accepts, refusing what it cannot read safely.

Pixels come back as uint8 (8-bit files: H x W grey, H x W x 3 RGB, H x W x 4 RGBA) or as float32 in
[0, 1] (H x W, for grey files deeper than 8 bits), so a 16-bit PNG and its 8-bit twin give one answer:

- 16-bit grey (Pillow mode ``I;16``): value / 65535, or / (2**bits - 1) when a TIFF declares fewer bits;
- 32-bit integer grey (mode ``I``): by the bit depth the file declares (TIFF BitsPerSample and
  SampleFormat: unsigned / (2**bits - 1), signed / (2**(bits-1) - 1) and negative values refused);
  PNG and PPM deliver 16-bit data in this mode; other formats are refused, their scale is unknown;
- float grey (mode ``F``): used as is when in [0, 1]; refused otherwise (not clipped: a float file in
  [0, 255] or HDR units would be clipped to a white picture and still "classified");
- 16-bit RGB(A) PNGs: Pillow keeps the high byte of each sample, which is the 8-bit image.

Files are refused before decoding when they are not regular files (a FIFO would block, /dev/zero never
ends), not one of the formats below (Pillow can hand some formats to external programs), or larger
than ``MAX_PIXELS``: a 236 KB PNG can declare 20000 x 20000 pixels.
"""

from __future__ import annotations

import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import DeployError
from deploy.metadata import MAX_IMAGE_SIDE
from deploy.preprocess import UNIT_SLACK

# Four times the largest model input deploy accepts (4096 x 4096): room for any photo a camera takes
# (a 48-megapixel phone picture fits), and a bound on memory: about 1.4 GB at the limit for RGB.
MAX_PIXELS = 4 * MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "PPM")
GREY_MODES = ("1", "LA", "La")  # 8-bit modes whose picture is grey; everything else 8-bit becomes RGB
BITS_PER_SAMPLE, SAMPLE_FORMAT, SIGNED = 258, 339, 2  # TIFF tags and the SampleFormat of signed integers


def _check_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode  # stat, not open: opening a FIFO blocks until a writer appears
    except OSError as exc:
        raise DeployError(f"cannot read image '{path}': {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, socket or device"
        raise DeployError(f"cannot read image '{path}': it is {kind}, not a regular file; pass image files")


def _declared_bits(img: Any, default: int | None) -> tuple[int, bool]:
    """(bits, signed) of a grey integer image: the TIFF's declaration, else ``default`` (None: unknown)."""
    tags = getattr(img, "tag_v2", None)
    if tags is not None and BITS_PER_SAMPLE in tags:
        bits = tags[BITS_PER_SAMPLE]
        bits = int(bits[0] if isinstance(bits, tuple) else bits)
        sample_format = tags.get(SAMPLE_FORMAT, 1)
        signed = int(sample_format[0] if isinstance(sample_format, tuple) else sample_format) == SIGNED
        if 1 <= bits <= 32:
            return bits, signed
    if default is None:
        raise DeployError(f"cannot tell the bit depth of this {img.format} {img.mode} image; "
                          "save it as an 8- or 16-bit PNG")
    return default, False


def _scaled(values: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Integer samples -> float32 in [0, 1] by their declared bit depth."""
    if not signed and values.dtype == np.int32:
        values = values.view(np.uint32)  # Pillow stores unsigned 32-bit samples in its signed mode "I"
    full = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > full:
        raise DeployError(f"pixel values {low}..{high} do not fit the declared {bits}-bit "
                          f"{'signed ' if signed else ''}depth (0..{full}); save it as an 8- or 16-bit PNG")
    out = values.astype(np.float32)
    out /= np.float32(full)
    return out


def _pixels(img: Any) -> np.ndarray:
    """The decoded pixels of an opened image, by its mode (see the module docstring)."""
    mode = img.mode
    if mode in ("L", "RGB", "RGBA"):
        return np.asarray(img)
    if mode.startswith("I;16"):  # I;16, I;16B, I;16L, I;16N: unsigned 16-bit grey
        return _scaled(np.asarray(img), *_declared_bits(img, 16))
    if mode == "I":
        return _scaled(np.asarray(img), *_declared_bits(img, 16 if img.format in ("PNG", "PPM") else None))
    if mode == "F":
        values = np.asarray(img, dtype=np.float32)
        if not np.isfinite(values).all() or values.min() < -UNIT_SLACK or values.max() > 1 + UNIT_SLACK:
            raise DeployError("float pixel values must lie in [0, 1] (found values outside it or NaN); "
                              "scale the image to [0, 1] or save it as an 8- or 16-bit PNG")
        return values
    return np.asarray(img.convert("L" if mode in GREY_MODES else "RGB"))


def _too_large(max_pixels: int) -> str:
    return f"more than the {max_pixels / 1e6:.0f} megapixels deploy decodes; downscale the image first"


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The pixels of image file ``path`` (uint8, or float32 in [0, 1] for deeper grey files)."""
    try:
        from PIL import Image
    except ImportError:
        raise DeployError("reading image files needs Pillow: pip install pillow") from None
    path = Path(path)
    _check_file(path)
    try:
        # Pillow warns about its own 89-megapixel limit (ours is lower) and about damaged metadata
        # (corrupt EXIF); either the pixels decode or the failure is reported below, in one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path, formats=FORMATS) as img:
                width, height = img.size  # from the header: nothing is decoded yet
                if width * height > max_pixels:
                    raise DeployError(f"{width} x {height} pixels is {_too_large(max_pixels)}")
                return _pixels(img)
    except Image.DecompressionBombError:  # Pillow's own, higher limit, checked inside Image.open
        raise DeployError(f"cannot read image '{path}': its size is {_too_large(max_pixels)}") from None
    except DeployError as exc:
        raise DeployError(f"cannot read image '{path}': {exc}") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, ValueError, SyntaxError, EOFError...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DeployError(f"cannot read image '{path}': {reason}") from None
