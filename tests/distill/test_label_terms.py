"""Each method's loss terms on partly labelled batches: label terms see labelled images only, teacher terms all."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compress.data.labels import UNLABELED
from compress.distill import DistillConfig, build_method

from distill_helpers import SIZE, batch, tiny

METHODS = {
    "none": DistillConfig(method="none"),
    "ls": DistillConfig(method="none", label_smoothing=0.1),
    "kd": DistillConfig(method="kd"),
    "simkd": DistillConfig(method="simkd"),
    "atsc": DistillConfig(method="atsc"),
    "atsc-reference": DistillConfig(method="atsc", reference=True),
    "atsc-control": DistillConfig(method="atsc", teacher_feedback=False),
    "atsc-frozen": DistillConfig(method="atsc", teacher_adapt="none"),
    "atsc-bn": DistillConfig(method="atsc", teacher_adapt="bn"),
    # a max softmax over 10 classes is >= 0.1: every unlabelled image gets the teacher's guess, never its label
    "atsc-pseudo": DistillConfig(method="atsc", pseudo_threshold=0.1),
}
EXPECTED_LABEL_TERMS = {"none": ("ce",), "ls": ("ce",), "kd": ("ce",), "simkd": (), "atsc": ("teacher_ce", "bias_ce"),
                        "atsc-reference": (), "atsc-control": ("teacher_ce", "bias_ce"), "atsc-frozen": (),
                        "atsc-bn": (), "atsc-pseudo": ("teacher_ce", "bias_ce")}
KNOWN = [0, 2, 5]  # labelled images of the batch of 8


def build(name: str) -> torch.nn.Module:
    method = build_method(METHODS[name], tiny("resnet8", seed=1), [tiny("resnet14", seed=2)], SIZE)
    return method.eval()  # eval: batch statistics do not depend on which images are labelled


def parts(name: str, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    images, _ = batch(8)
    torch.manual_seed(0)
    out = build(name)(images, labels)
    return {k: v.float() for k, v in out.parts.items()}


@pytest.mark.parametrize("name", list(METHODS))
def test_label_terms_use_labelled_images_only_and_the_others_use_all(name: str) -> None:
    _, labels = batch(8)
    hidden = torch.full_like(labels, UNLABELED)
    hidden[KNOWN] = labels[KNOWN]
    full, partial, other = parts(name, labels), parts(name, hidden), parts(name, torch.where(hidden < 0, -5, hidden))
    method = build(name)
    present = tuple(k for k in method.label_terms if k in full)
    assert present == EXPECTED_LABEL_TERMS[name]
    for key, value in full.items():
        assert torch.equal(partial[key], other[key]), key  # the hidden labels' values never matter
        if key in method.label_terms:
            assert not torch.allclose(partial[key], value), key  # it really is computed on fewer images
        else:
            assert torch.equal(partial[key], value), key  # teacher terms: every image, labelled or not


def test_kd_cross_entropy_is_the_mean_over_labelled_images() -> None:
    images, labels = batch(8)
    hidden = torch.full_like(labels, UNLABELED)
    hidden[KNOWN] = labels[KNOWN]
    method = build("kd")
    out = method(images, hidden)
    with torch.no_grad():
        logits = method.student(images)
    assert torch.allclose(out.parts["ce"], F.cross_entropy(logits[KNOWN], labels[KNOWN]), atol=1e-6)


def test_only_the_student_alone_learns_from_labelled_batches_only() -> None:
    uses = {name: build(name).uses_unlabeled for name in METHODS}
    assert uses == {"none": False, "ls": False, "kd": True, "simkd": True, "atsc": True, "atsc-reference": True,
                    "atsc-control": True, "atsc-frozen": True, "atsc-bn": True, "atsc-pseudo": True}
