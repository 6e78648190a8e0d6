"""The training regime of a distillation run in one sentence: how many images keep their labels, how
many are unlabelled, and which teacher(s), trained on what (the report states it above its table)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from compress.errors import ConfigError

if TYPE_CHECKING:  # compress.data imports torch: not needed to describe a regime
    from compress.data import DataConfig

# Training images of the built-in datasets (before train_limit); imagefolder data is counted on disk and
# synthetic data has its own size. Kept here rather than read from the data files: a report must not
# load 60,000 images to print one number.
_TRAIN_SIZES = {"fashion-mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}
_SYNTHETIC_TRAIN = 2048  # DataConfig.synthetic_size[0]; data records in sidecars do not carry it


@dataclass(frozen=True)
class LabelCounts:
    """How many training images a run drew from and how many of them had labels (None: unknown here)."""

    total: int | None  # labelled + unlabelled
    labeled: int | None
    unlabeled: int | None  # 0 when every image is labelled
    per_class: int | None = None  # the request, as given: labels_per_class ...
    fraction: float | None = None  # ... or label_fraction

    @property
    def partly_labeled(self) -> bool:
        return self.unlabeled != 0


@dataclass(frozen=True)
class TeacherFacts:
    """What the regime sentence says about a teacher."""

    label: str
    top1: float | None = None
    data: Mapping[str, Any] | None = None  # the data record it was trained with (its sidecar's "data")
    weights: str | None = None  # given weights (e.g. "imagenet") when it was not trained on this data


def _field(data: DataConfig | Mapping[str, Any], name: str) -> Any:
    """A field of a DataConfig or of a data record (a sidecar's "data": a dict, some keys absent)."""
    return data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)


def _dataset_name(data: DataConfig | Mapping[str, Any]) -> str:
    name = str(_field(data, "name") or "?")
    from compress.data import DATASETS

    try:
        return DATASETS.canonical(name)  # aliases (fmnist, imagenet) -> the registry's name
    except ConfigError:  # an unknown name (a foreign sidecar): say what it says
        return name


def _image_files(folder: Path, recursive: bool) -> int | None:
    from compress.data.sources import IMAGE_SUFFIXES

    if not folder.is_dir():
        return None  # the report may be rendered on another machine than the one that trained
    paths = folder.rglob("*") if recursive else (p for d in folder.iterdir() if d.is_dir() for p in d.iterdir())
    return sum(1 for p in paths if p.suffix.lower() in IMAGE_SUFFIXES)


def _classes_and_size(data: DataConfig | Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(classes, training images before any limit) of the dataset a config or data record names."""
    name = _dataset_name(data)
    if name == "imagefolder":
        root = _field(data, "data_dir")
        train = Path(root) / "train" if root else None
        if train is None or not train.is_dir():
            return None, None
        return sum(1 for d in train.iterdir() if d.is_dir()), _image_files(train, recursive=False)
    from compress.data import DATASETS

    try:
        classes: int | None = DATASETS.get(name).num_classes
    except ConfigError:
        classes = None
    if name == "synthetic":
        size = _field(data, "synthetic_size")
        return classes, int(size[0]) if size else _SYNTHETIC_TRAIN
    return classes, _TRAIN_SIZES.get(name)


def label_counts(data: DataConfig | Mapping[str, Any]) -> LabelCounts:
    """Labelled and unlabelled training images of a DataConfig or data record, without loading any image.

    Mirrors compress.data: the training set is ``train_limit`` images of the dataset (all without it);
    ``labels_per_class`` keeps that many per class, ``label_fraction`` about that share of every class
    (rounded per class, so the count here may differ by a few), the rest lose their labels, and the
    images of ``unlabeled_dir`` (imagefolder) join the unlabelled ones."""
    classes, size = _classes_and_size(data)
    limit = _field(data, "train_limit")
    if limit is not None:
        size = min(size, int(limit)) if size is not None else int(limit)
    per_class, fraction = _field(data, "labels_per_class"), _field(data, "label_fraction")
    extra_dir = _field(data, "unlabeled_dir")
    extra = _image_files(Path(extra_dir), recursive=True) if extra_dir else 0
    if per_class is None and fraction is None and not extra_dir:
        return LabelCounts(size, size, 0)
    if per_class is not None:
        labeled = per_class * classes if classes is not None else None
    elif fraction is not None:
        labeled = round(fraction * size) if size is not None else None
    else:
        labeled = size  # unlabeled_dir alone: train/ keeps every label
    if labeled is not None and size is not None:
        labeled = min(labeled, size)  # a request beyond the data fails in training; never count below zero
    rest = size - labeled if size is not None and labeled is not None else None
    unlabeled = rest + extra if rest is not None and extra is not None else None
    total = labeled + unlabeled if labeled is not None and unlabeled is not None else None
    return LabelCounts(total, labeled, unlabeled, per_class, fraction)


def _how_labeled(counts: LabelCounts) -> str:
    """"(100 per class)" / "(2 % of each class)": the request behind a labelled count."""
    if counts.per_class is not None:
        return f"({counts.per_class:,} per class)"
    if counts.fraction is not None:
        return f"({100 * counts.fraction:g} % of each class)"
    return ""


def _student_regime(counts: LabelCounts, unlabeled_dir: str | None) -> str:
    if not counts.partly_labeled:
        return f"all {counts.total:,} training images labelled" if counts.total is not None else \
            "all training images labelled"
    how = _how_labeled(counts)
    if counts.labeled is not None:
        labeled = f"{counts.labeled:,} labelled training images" + (f" {how}" if how else "")
    elif counts.per_class is not None:
        labeled = f"{counts.per_class:,} labelled training images per class"
    else:
        labeled = f"{100 * (counts.fraction or 0):g} % of the training images labelled"
    if counts.unlabeled is not None:
        return f"{labeled} and {counts.unlabeled:,} unlabelled ones"
    return f"{labeled} and the unlabelled images of {unlabeled_dir}" if unlabeled_dir else f"{labeled}, the rest unlabelled"


def _teacher_regime(teacher: TeacherFacts, student_dataset: str) -> str:
    details = []
    if teacher.top1 is not None:
        details.append(f"{teacher.top1:.2f} % top-1")
    if teacher.data is not None:
        counts = label_counts(teacher.data)
        other = _dataset_name(teacher.data)
        of = f" {other}" if other != student_dataset else ""  # only worth saying when it differs
        if not counts.partly_labeled:
            details.append(f"trained on all {counts.total:,}{of} labels" if counts.total is not None else
                           f"trained on all{of} labels")
        elif counts.labeled is not None:
            how = _how_labeled(counts)[1:-1]  # without its parentheses: this already sits in some
            details.append(f"trained on {counts.labeled:,}{of} labels" + (f", {how}" if how else ""))
        else:
            details.append(f"trained on part of the{of} labels")
    elif teacher.weights:
        details.append(f"{teacher.weights} weights")
    return f"{teacher.label}" + (f" ({', '.join(details)})" if details else "")


def describe_regime(data: DataConfig | Mapping[str, Any], teachers: Sequence[TeacherFacts] = ()) -> str:
    """One sentence on what the runs learnt from, e.g. "Regime: 1,000 labelled training images (100 per
    class) and 59,000 unlabelled ones; teacher resnet20 (93.12 % top-1, trained on all 60,000 labels)."

    The same numbers mean different things with all labels and with a few: a reader needs this before
    the comparison table."""
    sentence = "Regime: " + _student_regime(label_counts(data), _field(data, "unlabeled_dir"))
    if teachers:
        dataset = _dataset_name(data)
        parts = [_teacher_regime(t, dataset) for t in teachers]
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        sentence += f"; teacher{'s' if len(parts) > 1 else ''} {listed}"
    return sentence + "." + _protocol(data)


def _protocol(data: DataConfig | Mapping[str, Any]) -> str:
    """What the validation split was and which camera the images came through, when not the defaults."""
    said = ""
    holdout = _field(data, "holdout_per_class")
    if holdout is not None:
        of = "labelled " if label_counts(data).partly_labeled else ""
        said += (f" Validation: {holdout} {of}training images per class held out of training (the best epoch is "
                 "chosen on them); the test split is read once, at the end.")
    if _field(data, "shift") is not None:
        said += (f" Images: the {_field(data, 'shift')} shift (seed {_field(data, 'shift_seed') or 0}), training "
                 "and test alike.")
    return said
