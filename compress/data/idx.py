"""Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or plain."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from compress.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# The largest payload read (Fashion-MNIST's training images are 47 MB): a crafted header or a gzip bomb
# cannot make the reader allocate more than this.
MAX_BYTES = 4 << 30


def _read_exactly(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DataError(f"'{path}' is truncated: its {what} has {len(data)} of {n} bytes; reinstall or re-download it")
    return data


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file (gzip or plain), read after its header was checked against sane bounds."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = _read_exactly(f, 4, path, "header")
            if magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES or not 1 <= magic[3] <= 4:
                raise DataError(f"'{path}' is not an IDX file (bad magic number {magic.hex()}: "
                                "expected 00 00, a type byte and 1-4 dimensions)")
            ndim = magic[3]
            shape = struct.unpack(f">{ndim}I", _read_exactly(f, 4 * ndim, path, "shape"))
            dtype = np.dtype(_DTYPES[magic[2]])
            expected = math.prod(shape) * dtype.itemsize
            if expected > MAX_BYTES:
                raise DataError(f"'{path}' declares shape {shape} ({expected / 2**30:.1f} GiB), more than the "
                                f"{MAX_BYTES >> 30} GiB limit: the file is damaged or not a dataset file")
            raw = _read_exactly(f, expected, path, "data")
            if f.read(1):
                raise DataError(f"'{path}' has bytes after the {expected} its header declares: the file is damaged")
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read '{path}' ({exc}); reinstall it (apt-get install --reinstall dataset-fashion-mnist)") from None
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
