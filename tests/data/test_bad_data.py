"""Damaged or crafted data is caught when the data is opened (one line naming the file), or, for single
bad images in a folder, skipped with a warning so an epoch never stops halfway."""

from __future__ import annotations

import gzip
import logging
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compress.data import DataConfig, load_data
from compress.data.idx import read_idx
from compress.data.images import read_image
from compress.data.sources import load_fashion_mnist
from compress.errors import DataError
from tests.data.test_image_folder import make_folder

_TYPE = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, _TYPE[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_fmnist(folder: Path, train_labels: np.ndarray | None = None, val_size: int = 28,
                 train_images: bytes | None = None) -> Path:
    """A small Fashion-MNIST-shaped folder (20 train, 10 val images) with optional damage."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(20, dtype=np.uint8) % 10 if train_labels is None else train_labels
    files = {
        "train-images-idx3-ubyte": train_images or idx_bytes(rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte": idx_bytes(labels),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (10, val_size, val_size), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.arange(10, dtype=np.uint8)),
    }
    for name, data in files.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    return folder


def test_a_clean_small_folder_loads(tmp_path: Path) -> None:
    splits = load_fashion_mnist(str(write_fmnist(tmp_path)), False)
    assert splits["train"].images.shape == (20, 1, 28, 28) and splits["val"].labels.tolist() == list(range(10))


@pytest.mark.parametrize("labels, shown", [
    (np.array([200] + [1] * 19, dtype=np.uint8), "first: 200 at index 0"),
    (np.array([1] * 5 + [-1] + [1] * 14, dtype=np.int8), "first: -1 at index 5"),
])
def test_labels_out_of_range_are_refused_when_opened(tmp_path: Path, labels: np.ndarray, shown: str) -> None:
    with pytest.raises(DataError, match=rf"train-labels-idx1-ubyte.gz' has 1 label\(s\) outside 0..9 \({shown}\)"):
        load_fashion_mnist(str(write_fmnist(tmp_path, labels)), False)


def test_image_and_label_counts_must_match(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has 20 images but .*train-labels-idx1-ubyte.gz' has shape \\(19,\\)"):
        load_fashion_mnist(str(write_fmnist(tmp_path, np.zeros(19, dtype=np.uint8))), False)


def test_validation_images_of_another_size_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"training images are \(28, 28\) but validation images are \(32, 32\)"):
        load_fashion_mnist(str(write_fmnist(tmp_path, val_size=32)), False)


def test_corrupt_gzip_body_is_one_line(tmp_path: Path) -> None:
    good = gzip.compress(idx_bytes(np.zeros((20, 28, 28), dtype=np.uint8)))
    broken = tmp_path / "x-idx3-ubyte.gz"
    broken.write_bytes(good[:20] + bytes(b ^ 0xFF for b in good[20:60]) + good[60:])
    with pytest.raises(DataError, match="cannot read .*x-idx3-ubyte.gz"):
        read_idx(broken)


@pytest.mark.parametrize("ndim", [0, 5, 255])
def test_a_wrong_ndim_byte_is_refused(tmp_path: Path, ndim: int) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, ndim]) + b"\x00" * 8)
    with pytest.raises(DataError, match="is not an IDX file .*1-4 dimensions"):
        read_idx(path)


def test_a_header_declaring_terabytes_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**20, 2**12, 2**12)))
    with pytest.raises(DataError, match=r"declares shape \(1048576, 4096, 4096\) \(16384.0 GiB\)"):
        read_idx(path)


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x01")
    with pytest.raises(DataError, match="has bytes after the 4 its header declares"):
        read_idx(path)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A valid PNG signature and IHDR declaring width x height, with one tiny IDAT: kilobytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def test_a_decompression_bomb_png_is_refused_before_decoding_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 9_000, 9_000)  # 81 MP RGB: 243 MB decoded, below Pillow's own warning
    script = (
        "import resource, sys\n"
        "from compress.data.images import read_image\n"
        "from compress.errors import DataError\n"
        "pages = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (pages + (256 << 20), resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    read_image({str(bomb)!r})\n"
        "except DataError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "is 9000x9000 pixels, more than 64 megapixels" in result.stdout


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="is not a regular file"):
        read_image(fifo)


def _break_one_image(root: Path) -> Path:
    bad = root / "train" / "dog" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated: the header opens, decoding fails
    return bad


def test_a_bad_image_is_skipped_with_a_warning_and_the_epoch_completes(tmp_path: Path, caplog) -> None:
    root = make_folder(tmp_path)
    bad = _break_one_image(root)
    bundle = load_data(DataConfig(name="imagefolder", data_dir=str(root), image_size=16, batch_size=4, workers=0,
                                  augment=False))
    with caplog.at_level(logging.WARNING, logger="compress.data"):
        batches = [images for images, _ in bundle.train]
    assert len(batches) == 3 and all(b.shape == (4, 3, 16, 16) for b in batches)
    assert all(torch.isfinite(b).all() for b in batches)
    warned = [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]
    assert len(warned) == 1 and str(bad) in warned[0]


def test_strict_data_refuses_the_bad_image_when_the_folder_is_opened(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    bad = _break_one_image(root)
    with pytest.raises(DataError, match=f"cannot read image '{bad}'"):
        load_data(DataConfig(name="imagefolder", data_dir=str(root), image_size=16, workers=0, strict_data=True))


def test_an_empty_class_folder_is_one_line(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    for image in (root / "train" / "eel").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"class folder\(s\) 'eel' in '.*train' hold no images"):
        load_data(DataConfig(name="imagefolder", data_dir=str(root), image_size=16, workers=0))


@pytest.mark.parametrize("pixels, expected", [
    (np.full((8, 8), 40000, dtype=np.uint16), 156),  # 16-bit: 40000 / 65535 of full scale
    (np.full((8, 8), 0.5, dtype=np.float32), 128),  # float in [0, 1]
    (np.full((8, 8), 200, dtype=np.uint8), 200),  # 8-bit unchanged
])
def test_deep_images_are_scaled_by_their_bit_depth(tmp_path: Path, pixels: np.ndarray, expected: int) -> None:
    path = tmp_path / "deep.tiff"
    Image.fromarray(pixels).save(path)
    rgb = np.asarray(read_image(path))
    assert rgb.shape == (8, 8, 3) and (rgb == expected).all()


def test_a_float_image_out_of_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hdr.tiff"
    Image.fromarray(np.full((4, 4), 1000.0, dtype=np.float32)).save(path)
    with pytest.raises(DataError, match="has values outside \\[0, 255\\]"):
        read_image(path)
