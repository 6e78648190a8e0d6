"""The feature/head split of any nn.Module: found by tracing, given by name or callables, or refused clearly."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn
from torchvision import models as tvm

from compress.errors import ConfigError
from compress.models.base import ModelSpec
from compress.models.split import SplitError, find_split
from compress.models.weights import load_state_into
from compress.models.wrapped import wrap_module


class TinyNet(nn.Module):
    """A hand-written classifier: conv stages, global average pooling as a mean, a hidden layer, a Linear."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.hidden = nn.Linear(16, 12)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage(self.stem(x))
        return self.fc(torch.relu(self.hidden(x.mean((2, 3)))))


class NoPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 14 * 14, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


def _same_outputs(model: nn.Module, reference: nn.Module, x: torch.Tensor) -> None:
    model.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: tvm.resnet18(num_classes=5),
    "mobilenet_v2": lambda: tvm.mobilenet_v2(num_classes=5),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(num_classes=5),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(num_classes=5),
    "shufflenet_v2_x0_5": lambda: tvm.shufflenet_v2_x0_5(num_classes=5),  # pools with x.mean([2, 3])
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_torchvision_families_split_by_tracing_and_load_their_own_weights(name: str) -> None:
    torch.manual_seed(0)
    reference = BUILDERS[name]().eval()
    model = wrap_module(BUILDERS[name](), ModelSpec(name, 5, 3))
    load_state_into(model, reference.state_dict(), "test")  # torchvision's key names map onto ours
    x = torch.randn(2, 3, 64, 64)
    _same_outputs(model, reference, x)
    assert model.features(x).dim() == 4 and model.features(x).shape[1] == model.feature_channels
    assert isinstance(model.head_module, nn.Sequential) and model.head_module[-1] is model.classifier


def test_hand_written_model_splits_before_the_mean() -> None:
    torch.manual_seed(0)
    net = TinyNet()
    model = wrap_module(net, ModelSpec("tiny", 4, 1))
    x = torch.randn(3, 1, 16, 16)
    _same_outputs(model, net, x)
    assert model.features(x).shape == (3, 16, 4, 4) and model.feature_channels == 16
    assert model.classifier is net.fc  # the same parameters, not a copy
    assert model.native_keys["hidden.weight"] == "head_module.0.hidden.weight"


def test_split_by_module_name() -> None:
    torch.manual_seed(0)
    net = tvm.resnet18(num_classes=3)
    parts = find_split(net, "layer3")  # stop one stage early: layer4 moves into the head
    x = torch.randn(1, 3, 64, 64)
    net.eval(), parts.body.eval(), parts.pre_logits.eval()
    with torch.no_grad():
        fmap = parts.body(x)
        assert fmap.shape[1] == 256
        torch.testing.assert_close(parts.classifier(parts.pre_logits(fmap)), net(x), rtol=0, atol=1e-5)


def test_split_by_callables() -> None:
    torch.manual_seed(0)
    net = TinyNet()
    parts = find_split(net, (lambda x: net.stage(net.stem(x)), lambda m: net.fc(torch.relu(net.hidden(m.amax((2, 3)))))))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = net.fc(torch.relu(net.hidden(net.stage(net.stem(x)).amax((2, 3)))))
        torch.testing.assert_close(parts.classifier(parts.pre_logits(parts.body(x))), expected)
    assert parts.classifier is net.fc


def test_batchnorm_still_switches_with_train_mode() -> None:
    net = TinyNet()
    model = wrap_module(net, ModelSpec("tiny", 4, 1)).train()
    before = net.stem[1].running_mean.clone()
    model(torch.randn(4, 1, 16, 16) + 3)
    assert not torch.equal(net.stem[1].running_mean, before)


def test_failure_says_how_to_give_the_split() -> None:
    with pytest.raises(SplitError, match=r"found no global pooling .* give the split explicitly: split='layer4' .* "
                                         r"or split=\(features_fn, head_fn\)"):
        find_split(NoPool())


def test_unknown_split_name_lists_the_submodules() -> None:
    with pytest.raises(SplitError, match=r"split='layer9' names no submodule .*'stem', 'stage', 'hidden', 'fc'"):
        find_split(TinyNet(), "layer9")


def test_head_that_does_not_end_in_linear_is_refused() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3), nn.Softmax(1))
    with pytest.raises(SplitError, match="does not end with a Linear layer"):
        find_split(net)


def test_class_count_must_match_the_data() -> None:
    with pytest.raises(ConfigError, match="ends in a Linear with 4 outputs but the data has 10 classes"):
        wrap_module(TinyNet(), ModelSpec("tiny", 10, 1))
