"""Deployable architectures: rebuilt from their recorded spec by the models package alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compress.data.preprocessing import Preprocessing
from compress.deployable import load_deployable, save_deployable
from compress.errors import CheckpointError
from compress.models import (ARCHITECTURES, Branch, ClassifierModel, SharedHeadStudent, build_architecture,
                             build_projector, create_model)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "compress" / "weights" / "fashion-mnist-resnet20.safetensors"
PREP = Preprocessing(mean=(0.5,), std=(0.5,), image_size=16, channels=1, source_channels=1)

# The spec of a shared-head student as the code before the move wrote it (a distilled resnet8 from a resnet20,
# fashion_mnist_ci.yaml): the format on disk is unchanged, so students saved then still load.
SPEC8 = {"name": "resnet8", "num_classes": 10, "in_channels": 1, "small_input": True}
SPEC20 = {"name": "resnet20", "num_classes": 10, "in_channels": 1, "small_input": True}
RECORDED = {"type": "shared_head", "student": SPEC8,
            "branches": [{"teacher": SPEC20, "align": None,
                          "projector": {"kind": "bottleneck", "in_channels": 64, "out_channels": 64, "factor": 2}}]}


def shared_head_student() -> SharedHeadStudent:
    """Built from the models package only: a resnet8 body, a pointwise projector, a resnet14's head."""
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 10, 1, 16), create_model("resnet14", 10, 1, 16)
    projector = build_projector("pointwise", student.feature_channels, teacher.feature_channels, 2)
    return SharedHeadStudent(student.spec, student.body, [Branch(projector, teacher.head_module, teacher.spec,
                                                                 resolved=True)]).eval()


def test_recorded_shared_head_spec_rebuilds_the_same_module() -> None:
    module = build_architecture(RECORDED)
    assert isinstance(module, SharedHeadStudent) and module.architecture() == RECORDED
    keys = list(module.state_dict())
    assert len(keys) == 74 and keys[0] == "backbone.0.weight"
    assert "branches.0.projector.0.weight" in keys and keys[-1] == "branches.0.head.2.bias"
    assert module(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_registered_types_and_unknown_type() -> None:
    assert {"classifier", "shared_head"} <= set(ARCHITECTURES.names())
    with pytest.raises(CheckpointError, match="unknown architecture type 'hologram'"):
        build_architecture({"type": "hologram"})


def test_shipped_teacher_and_its_sidecar_still_load() -> None:
    model, prep, record = load_deployable(SHIPPED)
    assert isinstance(model, ClassifierModel) and model.spec.name == "resnet20"
    assert record.architecture == {"type": "classifier", "model": model.spec.to_dict()}
    assert (prep.channels, prep.image_size, len(prep.class_names)) == (1, 28, 10)


def test_loading_a_checkpoint_imports_no_method(tmp_path: Path) -> None:
    """Export and validation load students without importing compress.distill (no method, no cycle)."""
    module = shared_head_student()
    path = tmp_path / "student.safetensors"
    save_deployable(path, module, PREP)
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = module(x)
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import json, sys, torch\n"
        "from compress.deployable import load_deployable\n"
        f"module, _, record = load_deployable({str(path)!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "with torch.no_grad():\n"
        "    out = module(x).tolist()\n"
        "print(json.dumps({'type': record.architecture['type'], 'out': out,\n"
        "                  'distill': sorted(m for m in sys.modules if m.startswith('compress.distill.'))}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["distill"] == [] and loaded["type"] == "shared_head"
    torch.testing.assert_close(torch.tensor(loaded["out"]), expected, rtol=0, atol=1e-6)
