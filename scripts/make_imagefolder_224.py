"""Build the 224 px ImageFolder of the edge story from the Debian Fashion-MNIST package.

    python scripts/make_imagefolder_224.py data/fmnist224
    python scripts/make_imagefolder_224.py data/fmnist224 --classes 3 --train 300 --val 100 --unlabeled 1000

writes ``DIR/train/<class>/*.png`` and ``DIR/val/<class>/*.png`` (labelled, class-balanced) and
``DIR/unlabeled/*.png`` (more training images of the same classes, labels dropped, none of them in train/):
28 px grey images upscaled to ``--size`` px RGB, the layout `compress` reads with ``data.name: imagefolder``
and ``data.unlabeled_dir``. The first ``--classes`` Fashion-MNIST classes are used; which images is
fixed by ``--seed``, so the same arguments give the same files byte for byte.

The folder appears complete or not at all: it is built in a temporary folder beside it and renamed at
the end. Run again with the same arguments and the complete folder is reused; with other arguments the
command refuses (remove the folder or choose another). ``DIR/manifest.json`` records the arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from compress.data.sources import FASHION_MNIST_CLASSES, FASHION_MNIST_DIRS, load_fashion_mnist  # noqa: E402
from compress.errors import CompressError, ConfigError, DataError, UsageError  # noqa: E402

MANIFEST = "manifest.json"
MAX_SIZE = 1024  # px per side: 2,400 PNGs of 1024 px are already ~2 GB


@dataclass(frozen=True)
class FolderSpec:
    """What the folder holds; recorded in its manifest, compared on a re-run."""

    classes: int = 3  # the first N Fashion-MNIST classes
    train: int = 300  # labelled training images per class
    val: int = 100  # validation images per class (from the test split)
    unlabeled: int = 1000  # unlabelled training images in all, drawn from the same classes
    size: int = 224  # px per side
    seed: int = 0

    def check(self) -> None:
        """The arguments on their own, before any data is read."""
        if not 1 <= self.classes <= len(FASHION_MNIST_CLASSES):
            raise UsageError(f"--classes must be 1 to {len(FASHION_MNIST_CLASSES)}, got {self.classes}")
        if not 8 <= self.size <= MAX_SIZE:
            raise UsageError(f"--size must be 8 to {MAX_SIZE} px, got {self.size}")
        if self.train < 1 or self.val < 1 or self.unlabeled < 0 or self.seed < 0:
            raise UsageError("--train and --val must be at least 1, --unlabeled and --seed at least 0")

    def check_fits(self, train_per_class: int, val_per_class: int) -> None:
        """The counts within what the dataset holds (Fashion-MNIST: 6,000 training, 1,000 test images per class)."""
        if self.train * self.classes + self.unlabeled > train_per_class * self.classes:
            raise UsageError(f"--train {self.train} per class and --unlabeled {self.unlabeled} need more than the "
                             f"{train_per_class} training images per class of {self.classes} classes: ask for fewer")
        if self.val > val_per_class:
            raise UsageError(f"--val must be at most {val_per_class} per class (the test split), got {self.val}")


def class_folder(index: int) -> str:
    """``0-t-shirt-top``: the index keeps ImageFolder's alphabetical order the dataset's order."""
    return f"{index}-{re.sub(r'[^a-z0-9]+', '-', FASHION_MNIST_CLASSES[index].lower()).strip('-')}"


def _upscaled(image: np.ndarray, size: int) -> Image.Image:
    """A 28 px grey image as a ``size`` px RGB one (bicubic: smooth edges, as a camera would see them)."""
    grey = Image.fromarray(image[0] if image.ndim == 3 else image, mode="L")
    return grey.resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def _shuffled_by_class(labels: np.ndarray, classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, the indices of its images in a random order."""
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(classes)]


def _write(images: np.ndarray, indices: np.ndarray, folder: Path, size: int, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in sorted(indices.tolist()):
        _upscaled(images[i], size).save(folder / f"{prefix}{i:05d}.png", optimize=False)


def build(out: Path, spec: FolderSpec, data_dir: str | None = None, log: Callable[[str], None] = print) -> Path:
    """The folder ``out`` as ``spec`` says, built atomically; an existing complete one with the same spec is reused."""
    spec.check()
    existing = _existing(out, spec)
    if existing:
        log(f"{out}: complete ({existing}), reused")
        return out
    splits = load_fashion_mnist(data_dir, download=False)
    train, val = splits["train"], splits["val"]
    spec.check_fits(int(np.bincount(train.labels).min()), int(np.bincount(val.labels).min()))
    rng = np.random.default_rng(spec.seed)
    # Per class, the first `train` shuffled images keep their labels and the rest are unlabelled
    # candidates, so no image is in both.
    drawn = _shuffled_by_class(train.labels, spec.classes, rng)
    labelled = [d[:spec.train] for d in drawn]
    unlabelled = rng.permutation(np.concatenate([d[spec.train:] for d in drawn]))[:spec.unlabeled]
    validation = [d[:spec.val] for d in _shuffled_by_class(val.labels, spec.classes, rng)]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for c in range(spec.classes):
            log(f"class {class_folder(c)}: {spec.train} train, {spec.val} val images ...")
            _write(train.images, labelled[c], tmp / "train" / class_folder(c), spec.size, "train-")
            _write(val.images, validation[c], tmp / "val" / class_folder(c), spec.size, "test-")
        log(f"{spec.unlabeled} unlabelled images ...")
        _write(train.images, unlabelled, tmp / "unlabeled", spec.size, "train-")
        counts = _counts(tmp)
        (tmp / MANIFEST).write_text(json.dumps({"spec": asdict(spec), "counts": counts,
                                                "classes": [class_folder(c) for c in range(spec.classes)]},
                                               indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the folder is data like any other
        try:
            tmp.rename(out)  # atomic: the folder is complete or absent
        except OSError:
            if not _existing(out, spec):  # another run finished the same folder first: use it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after the rename there is nothing left here
    log(f"{out}: {counts['train']} train, {counts['val']} val, {counts['unlabeled']} unlabelled images "
        f"of {spec.size} px")
    return out


def _counts(root: Path) -> dict[str, int]:
    return {split: sum(1 for _ in (root / split).rglob("*.png")) for split in ("train", "val", "unlabeled")}


def _existing(out: Path, spec: FolderSpec) -> str | None:
    """A summary of ``out`` when it is this spec's complete folder; None when absent; refuses anything else."""
    if not out.exists():
        return None
    manifest = out / MANIFEST
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"'{out}' exists but is not a folder this script built (no readable {MANIFEST}): "
                          "remove it or choose another folder") from None
    if recorded.get("spec") != asdict(spec):
        differs = ", ".join(f"{k} {recorded.get('spec', {}).get(k)} (asked {v})" for k, v in asdict(spec).items()
                            if recorded.get("spec", {}).get(k) != v)
        raise ConfigError(f"'{out}' was built with other arguments: {differs}; remove it or choose another folder")
    counts = _counts(out)
    if counts != recorded.get("counts"):
        raise DataError(f"'{out}' has {counts} images but its manifest says {recorded.get('counts')}: files were "
                        "removed or added; remove the folder and build it again")
    return f"{counts['train']} train, {counts['val']} val, {counts['unlabeled']} unlabelled images"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = FolderSpec()
    parser.add_argument("out", type=Path, help="the folder to build, e.g. data/fmnist224")
    parser.add_argument("--classes", type=int, default=defaults.classes, help="the first N Fashion-MNIST classes")
    parser.add_argument("--train", type=int, default=defaults.train, help="labelled training images per class")
    parser.add_argument("--val", type=int, default=defaults.val, help="validation images per class")
    parser.add_argument("--unlabeled", type=int, default=defaults.unlabeled, help="unlabelled images in all")
    parser.add_argument("--size", type=int, default=defaults.size, help="px per side")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="which images")
    parser.add_argument("--data-dir", default=None,
                        help=f"the Fashion-MNIST IDX files (default: {FASHION_MNIST_DIRS[0]})")
    args = parser.parse_args(argv)
    spec = FolderSpec(args.classes, args.train, args.val, args.unlabeled, args.size, args.seed)
    try:
        build(args.out, spec, args.data_dir)
    except CompressError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
