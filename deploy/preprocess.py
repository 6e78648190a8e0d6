"""Turn user images into the model's float32 NCHW input, with the numbers recorded at training time.

Pipeline (the same as ``compress.data``): uint8 -> /255 -> grey<->RGB -> resize shorter side to
``resize_size`` and centre-crop ``image_size`` (or plain resize when the dataset was stored at model
size) -> (x - mean) / std. Layouts accepted: HW, HWC, NHW, NHWC, NCHW (a 3-D array is HWC when its
last axis has 1, 3 or 4 entries, else a batch of grey images).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deploy.errors import DeployError

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as compress.data uses
CHANNEL_COUNTS = (1, 3, 4)
UNIT_SLACK = 1e-3  # float pixels a little outside [0, 1] are rounding, not another scale


def to_nchw(images: np.ndarray) -> np.ndarray:
    """Any accepted layout -> N x C x H x W (values untouched)."""
    if images.ndim == 2:  # HW: one grey image
        return images[None, None]
    if images.ndim == 3:
        # HWC (one image) when the last axis looks like channels, else NHW (a batch of grey images).
        # A 3 x H x W array is therefore three grey images; pass one CHW image as 1 x C x H x W.
        if images.shape[-1] in CHANNEL_COUNTS:
            return images.transpose(2, 0, 1)[None]
        return images[:, None]
    if images.ndim == 4:
        if images.shape[1] in CHANNEL_COUNTS:
            return images  # NCHW
        if images.shape[-1] in CHANNEL_COUNTS:
            return images.transpose(0, 3, 1, 2)  # NHWC
        raise DeployError(f"cannot find the channel axis in images of shape {images.shape}: "
                          "use N x C x H x W or N x H x W x C with 1, 3 or 4 channels")
    raise DeployError(f"images must be HW, HWC, NHWC or NCHW; got {images.ndim} dimensions {images.shape}")


def _to_unit_float(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        out = images.astype(np.float32)
        out /= 255.0  # in place: a 64-megapixel photo is 768 MB as float32, twice that with a temporary
        return out
    if np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32, copy=False)
        if images.size and (not np.isfinite(images).all() or images.min() < -UNIT_SLACK
                            or images.max() > 1 + UNIT_SLACK):
            raise DeployError("float images must hold pixel values in [0, 1]; pass uint8 pixels or divide by 255")
        return images
    raise DeployError(f"images must be uint8 or float, got {images.dtype}")


def _resize(x: np.ndarray, height: int, width: int, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of N x C x H x W float32 (its ``box`` region), via Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise DeployError("resizing images needs Pillow: pip install pillow, or pass images at model size") from None
    out = np.empty((*x.shape[:2], height, width), dtype=np.float32)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            img = Image.fromarray(x[n, c])  # float32 2-D -> mode "F", no 8-bit rounding
            out[n, c] = np.asarray(img.resize((width, height), Image.Resampling.BILINEAR, box=box), dtype=np.float32)
    return out


def _resize_crop(x: np.ndarray, size: int, resize_size: int | None) -> np.ndarray:
    h, w = x.shape[2:]
    if (h, w) == (size, size):
        return x
    if resize_size is None:
        return _resize(x, size, size)
    # torchvision Resize(int) scales the shorter side, then CenterCrop(size)
    scale = resize_size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (nh - size) // 2, (nw - size) // 2
    if (nh, nw) == (h, w):
        return x[:, :, top:top + size, left:left + size]
    # Resize only the crop: Pillow's box resize samples the same source points (and neighbours outside
    # the box) as resizing to nh x nw and cropping, up to its float32 box corners (< 1e-5 px), without
    # building that image, which for a 1 x 10000 strip would be 256 x 2.5M pixels.
    box = (left * w / nw, top * h / nh, (left + size) * w / nw, (top + size) * h / nh)
    return _resize(x, size, size, box)


def prepare(images: Any, pre: dict[str, Any]) -> np.ndarray:
    """Images (uint8 or [0, 1] float, any accepted layout) -> normalised float32 NCHW.

    ``pre`` is a checked preprocessing record (``deploy.metadata.check_preprocessing``). Memory stays
    near one float32 copy of the input: the layout is made contiguous before the float conversion,
    grey is made from RGB before the resize and RGB from grey after it (both orders give the same
    numbers: the channel maps and the resize are linear).
    """
    if not isinstance(images, np.ndarray):
        images = np.asarray(images)
    if images.size == 0:
        raise DeployError(f"got an empty image array of shape {images.shape}")
    x = to_nchw(images)
    if x.shape[1] == 4:  # RGBA: the alpha channel is not part of the picture the model saw
        x = x[:, :3]
    x = _to_unit_float(np.ascontiguousarray(x))
    channels, have = int(pre["channels"]), x.shape[1]
    if have == 3 and channels == 1:
        x = np.tensordot(LUMA, x, axes=([0], [1]))[:, None].astype(np.float32, copy=False)
    elif have != channels and not (have == 1 and channels == 3):
        raise DeployError(f"cannot feed {have}-channel images to a {channels}-channel model")
    x = _resize_crop(x, int(pre["image_size"]), pre.get("resize_size"))
    if x.shape[1] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=1)
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)
