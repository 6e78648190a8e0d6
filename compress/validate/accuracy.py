"""Accuracy of every backend on the validation split, and agreement with a reference backend.

The loader is read once: every batch goes through every backend, so a slow ImageFolder decode is
paid once, and agreement needs no stored logits (the reference's logits for the current batch are at
hand). Percentages are 0..100; drops are absolute points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from compress.errors import CheckpointError

if TYPE_CHECKING:
    from compress.validate.backends import Backend


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the ``k`` largest logits (k is capped at the class count)."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    return 100.0 * topk_correct(logits, labels, k) / len(labels)


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Percentage of rows where both backends predict the same class."""
    return 100.0 * float((logits.argmax(1) == reference.argmax(1)).mean())


def max_abs_diff(logits: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(logits.astype(np.float64) - reference.astype(np.float64))))


@dataclass
class AccuracyResult:
    samples: int
    top1: float
    top5: float
    agreement: float | None = None  # top-1 agreement with the reference, percent
    max_abs_logit_diff: float | None = None  # max |logit - reference logit| over all samples and classes

    def to_dict(self) -> dict:
        return asdict(self)


class AccuracyAccumulator:
    """Running counts for one backend; ``update`` per batch, ``result`` at the end."""

    def __init__(self) -> None:
        self.samples = self.correct1 = self.correct5 = self.agree = 0
        self.max_diff = 0.0
        self.compared = False

    def update(self, logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None) -> None:
        if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
            raise ValueError(f"logits shaped {logits.shape} do not fit {labels.shape[0]} labels")
        self.samples += len(labels)
        self.correct1 += topk_correct(logits, labels, 1)
        self.correct5 += topk_correct(logits, labels, 5)
        if reference is not None:
            if reference.shape != logits.shape:
                raise ValueError(f"logits {logits.shape} and reference logits {reference.shape} differ in shape")
            self.compared = True
            self.agree += int((logits.argmax(1) == reference.argmax(1)).sum())
            self.max_diff = max(self.max_diff, max_abs_diff(logits, reference))

    def result(self) -> AccuracyResult:
        n = max(self.samples, 1)
        return AccuracyResult(
            samples=self.samples,
            top1=100.0 * self.correct1 / n,
            top5=100.0 * self.correct5 / n,
            agreement=100.0 * self.agree / n if self.compared else None,
            max_abs_logit_diff=self.max_diff if self.compared else None,
        )


def predict_in_chunks(backend: Backend, images: np.ndarray) -> np.ndarray:
    """Split a batch for backends with a batch limit (a TensorRT optimisation profile's max)."""
    limit = backend.max_batch
    if not limit or len(images) <= limit:
        return backend.predict_logits(images)
    return np.concatenate([backend.predict_logits(images[i:i + limit]) for i in range(0, len(images), limit)])


def check_finite_logits(stage: str, logits: np.ndarray) -> None:
    """Refuse NaN/Inf logits: argmax over them still "predicts" a class, so the stage would get a score."""
    finite = np.isfinite(logits)
    if not finite.all():
        rows = int((~finite).any(axis=1).sum()) if logits.ndim == 2 else int((~finite).sum())
        raise CheckpointError(f"stage '{stage}' gives non-finite logits (NaN/Inf) for {rows} of {len(logits)} images: "
                              "its weights are broken or overflow at this precision; re-create or re-export it")


def _as_numpy(values: Any) -> np.ndarray:
    """A batch of a PyTorch loader (tensors, maybe on a GPU) or of numpy arrays, as numpy."""
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def evaluate_backends(backends: Sequence[Backend], batches: Iterable[tuple[Any, Any]],
                      reference: str | None = None) -> dict[str, AccuracyResult]:
    """Top-1/top-5 of every backend and, against ``reference`` (a backend name), agreement and max |Δlogit|."""
    names = [b.name for b in backends]
    if reference is not None and reference not in names:
        raise ValueError(f"reference '{reference}' is not among the backends {names}")
    accumulators = {name: AccuracyAccumulator() for name in names}
    # the reference runs first in each batch so its logits are there to compare against
    ordered = sorted(backends, key=lambda b: b.name != reference)
    for images, labels in batches:
        x = np.ascontiguousarray(_as_numpy(images), dtype=np.float32)
        y = _as_numpy(labels)
        ref_logits = None
        for backend in ordered:
            logits = predict_in_chunks(backend, x)
            check_finite_logits(backend.name, logits)
            if backend.name == reference:
                ref_logits = logits
                accumulators[backend.name].update(logits, y, logits)
            else:
                accumulators[backend.name].update(logits, y, ref_logits)
    return {name: acc.result() for name, acc in accumulators.items()}
