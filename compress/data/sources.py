"""Where the pixels come from: each source returns uint8 arrays (N, C, H, W) and labels, or folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compress.data.idx import read_idx
from compress.errors import DataError

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class ArraySplit:
    images: np.ndarray  # uint8 N x C x H x W
    labels: np.ndarray  # int64 N


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).exists():
            return folder / name
    return None


def fashion_mnist_dir(data_dir: str | None, download: bool) -> Path:
    candidates = [Path(data_dir)] if data_dir else [Path(d) for d in FASHION_MNIST_DIRS]
    if data_dir:
        candidates.append(Path(data_dir) / "FashionMNIST" / "raw")  # torchvision's download layout
    for folder in candidates:
        if _find_file(folder, _FMNIST_FILES["train"][0]):
            return folder
    if download:
        root = Path(data_dir or os.path.expanduser("~/.cache/compress/data"))
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(root), train=True, download=True)
            FashionMNIST(str(root), train=False, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(f"downloading Fashion-MNIST failed ({type(exc).__name__}): install it with "
                            "`apt-get install dataset-fashion-mnist` or pass --data-dir") from None
        return root / "FashionMNIST" / "raw"
    where = data_dir or FASHION_MNIST_DIRS[0]
    raise DataError(f"Fashion-MNIST not found in '{where}': run `apt-get install dataset-fashion-mnist`, "
                    "or pass --data-dir DIR with the IDX files, or --download")


def load_fashion_mnist(data_dir: str | None, download: bool) -> dict[str, ArraySplit]:
    folder = fashion_mnist_dir(data_dir, download)
    splits = {}
    for split, (images_stem, labels_stem) in _FMNIST_FILES.items():
        images_path, labels_path = _find_file(folder, images_stem), _find_file(folder, labels_stem)
        if images_path is None or labels_path is None:
            raise DataError(f"'{folder}' lacks the {split} files ({images_stem}[.gz], {labels_stem}[.gz])")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"'{images_path}' holds {images.dtype} of shape {images.shape}, expected uint8 images "
                            "N x H x W: the file is damaged or not Fashion-MNIST")
        if labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"'{images_path}' has {len(images)} images but '{labels_path}' has shape {labels.shape}: "
                            "each image needs one label (the files do not belong together)")
        _check_labels(labels, len(FASHION_MNIST_CLASSES), labels_path)
        splits[split] = ArraySplit(np.ascontiguousarray(images[:, None]), labels.astype(np.int64))
    if splits["train"].images.shape[1:] != splits["val"].images.shape[1:]:
        raise DataError(f"training images are {splits['train'].images.shape[2:]} but validation images are "
                        f"{splits['val'].images.shape[2:]} in '{folder}': both splits must have one size")
    return splits


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Labels must be class indices: an out-of-range one would crash training (or index garbage) later."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(f"'{path}' has {len(bad)} label(s) outside 0..{num_classes - 1} (first: {labels[bad[0]]} at "
                        f"index {bad[0]}): the file is damaged or not Fashion-MNIST")


def load_cifar(name: str, data_dir: str | None, download: bool) -> tuple[dict[str, ArraySplit], tuple[str, ...]]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    root = data_dir or os.path.expanduser("~/.cache/compress/data")
    try:
        train, val = cls(root, train=True, download=download), cls(root, train=False, download=download)
    except RuntimeError:
        raise DataError(f"{name} not found in '{root}': pass --download (needs internet) or --data-dir "
                        "with the extracted python version") from None
    except Exception as exc:
        raise DataError(f"downloading {name} failed ({type(exc).__name__}): pass --data-dir with a local copy") from None
    splits = {
        split: ArraySplit(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets, dtype=np.int64))
        for split, ds in (("train", train), ("val", val))
    }
    return splits, tuple(train.classes)


def synthetic(num_classes: int, image_size: int, channels: int, train: int, val: int, seed: int = 0) -> dict[str, ArraySplit]:
    """Random pixels and labels: for throughput benchmarks only (accuracy is chance)."""
    rng = np.random.default_rng(seed)
    return {
        split: ArraySplit(rng.integers(0, 256, (n, channels, image_size, image_size), dtype=np.uint8),
                          rng.integers(0, num_classes, n).astype(np.int64))
        for split, n in (("train", train), ("val", val))
    }


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def check_image_folder(root: Path, split: str) -> Path:
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"image folder '{folder}' does not exist: --data-dir must contain train/ and val/ "
                        "with one sub-folder per class")
    classes = [d for d in sorted(folder.iterdir()) if d.is_dir()]
    if not classes:
        raise DataError(f"'{folder}' has no class sub-folders: put images in {folder}/<class>/<image>.jpg")
    empty = [d.name for d in classes if not any(_is_image(p) for p in d.rglob("*"))]
    if len(empty) == len(classes):
        raise DataError(f"'{folder}' has class folders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if empty:
        raise DataError(f"class folder(s) {', '.join(repr(e) for e in empty[:5])} in '{folder}' hold no images: add "
                        "images or remove the folder (every class needs examples)")
    return folder


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


class UnlabeledFolder:
    """Every image below a folder (any depth, sorted paths), each with the label ``UNLABELED``."""

    def __init__(self, root: Path, transform: object, strict: bool = False) -> None:
        from compress.data.images import check_images
        from compress.data.labels import UNLABELED

        if root.exists() and not root.is_dir():
            raise DataError(f"--unlabeled-dir '{root}' is a file, not a folder: pass the folder that holds the "
                            "unlabelled images (any sub-folders)")
        if not root.is_dir():
            raise DataError(f"unlabelled image folder '{root}' does not exist: pass --unlabeled-dir DIR with images "
                            "in it (any sub-folders)")
        self.paths = sorted(p for p in root.rglob("*") if _is_image(p))
        if not self.paths:
            raise DataError(f"'{root}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): point --unlabeled-dir at "
                            "a folder of images")
        self.transform, self.label, self.strict = transform, UNLABELED, strict
        self.skipped: list[str] = []
        if strict:
            check_images(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def _item(self, index: int) -> tuple[object, int]:
        from compress.data.images import read_image

        return self.transform(read_image(self.paths[index])), self.label  # type: ignore[operator]

    def __getitem__(self, index: int) -> tuple[object, int]:
        from compress.data.images import tolerant_getitem

        if self.strict:
            return self._item(index)
        return tolerant_getitem(self._item, index, len(self), lambda i: str(self.paths[i]), self.skipped)
