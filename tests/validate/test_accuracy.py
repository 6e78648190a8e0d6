"""Accuracy and agreement on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from compress.validate.accuracy import AccuracyAccumulator, agreement, evaluate_backends, max_abs_diff, topk_accuracy

LOGITS = np.array([
    [5.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # top-1: 0
    [0.0, 1.0, 6.0, 2.0, 0.0, 0.0, 0.0],  # top-1: 2, top-2: 3
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # top-1: 6, top-5: 2..6
    [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # top-1: 0, top-5: 0..4
], dtype=np.float32)
LABELS = np.array([0, 3, 2, 5])


def test_topk_on_hand_made_logits():
    assert topk_accuracy(LOGITS, LABELS, 1) == 25.0  # only row 0
    assert topk_accuracy(LOGITS, LABELS, 2) == 50.0  # + row 1
    assert topk_accuracy(LOGITS, LABELS, 5) == 75.0  # + row 2; row 3's label 5 is 6th
    assert topk_accuracy(LOGITS[:, :3], np.array([0, 1, 2, 2]), 5) == 100.0  # k capped at the class count


def test_agreement_and_max_diff():
    other = LOGITS.copy()
    other[1, 3] = 6.5  # row 1 now predicts 3 instead of 2
    other[2, 0] += 0.25
    assert agreement(other, LOGITS) == 75.0
    assert max_abs_diff(other, LOGITS) == pytest.approx(4.5)
    assert agreement(LOGITS, LOGITS) == 100.0 and max_abs_diff(LOGITS, LOGITS) == 0.0


def test_accumulator_over_batches_equals_whole():
    other = LOGITS.copy()
    other[:, 1] += 0.5  # small shifts that change no prediction
    other[3] = other[3][::-1]  # row 3 now predicts 6
    acc = AccuracyAccumulator()
    acc.update(other[:3], LABELS[:3], LOGITS[:3])
    acc.update(other[3:], LABELS[3:], LOGITS[3:])
    result = acc.result()
    assert result.samples == 4
    assert result.top1 == pytest.approx(25.0)
    assert result.agreement == pytest.approx(75.0)
    assert result.max_abs_logit_diff == pytest.approx(6.0)
    assert AccuracyAccumulator().result().agreement is None  # no reference, no agreement
    with pytest.raises(ValueError, match="differ in shape"):
        acc.update(other, LABELS, LOGITS[:, :3])


class TableBackend:
    """Returns fixed logits per sample id (the id is the first pixel) and records its batch sizes."""

    engine = "fake"
    uses_threads = True

    def __init__(self, name: str, table: np.ndarray, max_batch: int | None = None) -> None:
        self.name, self.table, self.max_batch, self.calls = name, table, max_batch, []

    def set_threads(self, threads):
        pass

    def predict_logits(self, x):
        self.calls.append(len(x))
        return self.table[x[:, 0, 0, 0].astype(int)]


def test_evaluate_backends_streams_batches_and_compares_with_reference():
    images = np.zeros((4, 1, 2, 2), dtype=np.float32)
    images[:, 0, 0, 0] = np.arange(4)
    flipped = LOGITS.copy()
    flipped[0] = flipped[0][::-1]
    ref, other = TableBackend("ref", LOGITS), TableBackend("other", flipped, max_batch=2)
    batches = [(images[:3], LABELS[:3]), (images[3:], LABELS[3:])]
    results = evaluate_backends([other, ref], batches, reference="ref")
    assert results["ref"].top1 == 25.0 and results["ref"].agreement == 100.0
    assert results["other"].top1 == 0.0
    assert results["other"].agreement == 75.0
    assert results["other"].max_abs_logit_diff == pytest.approx(5.0)
    assert other.calls == [2, 1, 1]  # the 3-image batch was split for max_batch=2
    with pytest.raises(ValueError, match="reference 'nope'"):
        evaluate_backends([ref], batches, reference="nope")
