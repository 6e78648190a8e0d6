"""Datasets: one registry (``DATASETS``), the data a run reads (``DataConfig``, ``config.py``, torch-free),
and ``load_data``, which yields normalised float batches and their preprocessing record (``loading.py``).

The names below load from their modules on first use (``compress._lazy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compress._lazy import lazy_names

if TYPE_CHECKING:
    from compress.data.config import DATASETS, DataConfig, DatasetInfo
    from compress.data.loaders import BatchLoader
    from compress.data.loading import DataBundle, augment_for, load_data
    from compress.data.preprocessing import Preprocessing

__getattr__, __all__ = lazy_names(__name__, {
    "config": ("DATASETS", "DataConfig", "DatasetInfo"),
    "loaders": ("BatchLoader",),
    "loading": ("DataBundle", "augment_for", "load_data"),
    "preprocessing": ("Preprocessing",),
})
