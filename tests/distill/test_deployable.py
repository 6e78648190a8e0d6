"""What is deployed: eval logits, save/load, cost report, and every method x student family traces."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from compress.data.preprocessing import Preprocessing
from compress.deployable import build_architecture, load_deployable, save_deployable
from compress.distill import METHODS, DistillConfig, SharedHeadStudent, build_method, deployed_cost
from compress.models import ClassifierModel, count_parameters

from distill_helpers import batch, optimizer, tiny, train_step

PREP = Preprocessing(mean=(0.5,), std=(0.5,), image_size=16, channels=1, source_channels=1)


def trained(method_name: str, teachers: int = 1, **cfg) -> tuple[torch.nn.Module, torch.nn.Module]:
    teacher_models = [tiny("resnet14", seed=1 + k) for k in range(teachers)]
    method = build_method(DistillConfig(method=method_name, **cfg), tiny("vgg8"), teacher_models)
    opt = optimizer(method)
    for s in range(2):
        train_step(method, opt, *batch(seed=s))
    return method, method.deployable()


@pytest.mark.parametrize("name, cfg", [("atsc", {}), ("atsc", {"reference": True}), ("simkd", {"projector": "depthwise"}),
                                       ("kd", {}), ("none", {})])
def test_deployable_reproduces_eval_logits_and_round_trips(tmp_path: Path, name: str, cfg: dict) -> None:
    method, deployed = trained(name, **cfg)
    x, y = batch(seed=5)
    method.eval()
    logits = method(x, y).logits
    deployed.eval()
    torch.testing.assert_close(deployed(x), logits, rtol=0, atol=0)
    save_deployable(tmp_path / "student.safetensors", deployed, PREP)
    loaded, prep, record = load_deployable(tmp_path / "student.safetensors")
    assert prep == PREP and record.parameters == count_parameters(deployed)
    assert type(loaded) is type(deployed)
    assert torch.equal(loaded(x), logits)


def test_shared_head_student_ships_no_student_head_and_rebuilds_without_teacher_backbones() -> None:
    method, deployed = trained("atsc", teachers=2)
    assert isinstance(deployed, SharedHeadStudent)
    arch = deployed.architecture()
    assert arch["type"] == "shared_head" and len(arch["branches"]) == 2
    # vgg8 gives a 1x1 map at 16 px and resnet14 a 4x4 one: the teacher target is pooled, the student is not
    assert [b["align"] for b in arch["branches"]] == [None, None]
    assert arch["branches"][0]["projector"] == {"kind": "bottleneck", "in_channels": 512, "out_channels": 64, "factor": 2}
    rebuilt = build_architecture(arch)
    assert sorted(rebuilt.state_dict()) == sorted(deployed.state_dict())
    student = tiny("vgg8")
    expected = (count_parameters(student.body) + sum(count_parameters(b.projector) for b in deployed.branches)
                + sum(count_parameters(t.head_module) for t in method.teachers))
    assert count_parameters(deployed) == expected  # the student's own classifier is not in it


def test_alignment_pools_a_larger_student_map_in_the_deployable() -> None:
    # vgg8 teacher (1x1 map) and resnet8 student (4x4): the student map is pooled before the projector
    method = build_method(DistillConfig(method="simkd"), tiny("resnet8"), [tiny("vgg8", seed=1)], image_size=16)
    assert method.net.branches[0].align == (1, 1)  # resolved by the meta-device probe, before any batch
    train_step(method, optimizer(method), *batch())
    assert method.deployable().architecture()["branches"][0]["align"] == [1, 1]


def test_cost_report_splits_student_projectors_classifiers() -> None:
    _, deployed = trained("simkd", teachers=2, projector="linear")
    cost = deployed_cost(deployed, 16)
    # linear projector: one 1x1 conv 512 -> 64 on the 1x1 vgg8 map, per teacher; classifier 64 -> 10
    assert cost["projectors"]["macs"] == 2 * 512 * 64
    assert cost["classifiers"]["macs"] == 2 * 64 * 10 and cost["classifiers"]["params"] == 2 * (64 * 10 + 10)
    assert cost["projectors"]["params"] == 2 * (512 * 64 + 2 * 64)
    first_conv = 1 * 64 * 9 * 16 * 16  # vgg8's first 3x3 conv, 1 -> 64 channels at 16x16
    assert cost["student"]["macs"] > first_conv
    assert cost["total"]["params"] == sum(cost[p]["params"] for p in ("student", "projectors", "classifiers"))
    assert cost["total"]["flops"] == 2 * cost["total"]["macs"]
    plain = deployed_cost(tiny("resnet8"), 16)
    assert plain["projectors"]["params"] == 0 and plain["classifiers"]["params"] == 64 * 10 + 10


FAMILIES = ["resnet8", "resnet8x4", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0", "efficientnet_b0",
            "wrn_16_2", "vgg8"]
_CACHE: dict[str, ClassifierModel] = {}


def cached(name: str, seed: int = 0) -> ClassifierModel:
    # torchvision families take a moment to build: build once, hand out copies (methods edit them in place)
    key = f"{name}/{seed}"
    if key not in _CACHE:
        _CACHE[key] = tiny(name, seed=seed)
    return copy.deepcopy(_CACHE[key])


@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_and_family_steps_and_traces(family: str) -> None:
    # batch 4: efficientnet_b0's 1x1 maps at 16 px make BN gradients explode with 2 images
    x, y = batch(4, seed=3)
    for name in METHODS.names():
        method = build_method(DistillConfig(method=name), cached(family), [cached("resnet8", seed=1)])
        out = train_step(method, optimizer(method, lr=0.01), x, y, lr=0.01)
        assert torch.isfinite(out.loss) and out.logits.shape == (4, 10)
        if name in ("kd", "simkd"):
            continue  # same deployable types as none (the student) and atsc (shared head)
        deployed = method.deployable().eval()
        # no profiling-executor re-optimisation: the traced graph runs as recorded (and fast)
        with torch.no_grad(), torch.jit.optimized_execution(False):
            traced = torch.jit.trace(deployed, x[:1], check_trace=False)
            expected = deployed(x)
            assert torch.isfinite(expected).all()
            torch.testing.assert_close(traced(x), expected, rtol=1e-4, atol=1e-5)
