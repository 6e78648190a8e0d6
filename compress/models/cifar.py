"""The CIFAR-style families used by the SimKD and ATSC papers (3x3 stems, no early downsampling).

Written from the architectures' descriptions: ResNet (He et al. 2016, CIFAR variant 6n+2 layers),
the "x4" widened ResNets of the CRD/SimKD benchmarks, Wide ResNet (Zagoruyko & Komodakis 2016)
and VGG with batch norm.
"""

from __future__ import annotations

import torch
from torch import nn

from compress.models.base import ClassifierModel, ModelSpec, pooled_head


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def cifar_resnet(spec: ModelSpec, depth: int, widths: tuple[int, int, int, int]) -> ClassifierModel:
    if (depth - 2) % 6:
        raise ValueError("CIFAR ResNet depth must be 6n+2")
    blocks_per_stage = (depth - 2) // 6
    layers: list[nn.Module] = conv_bn_relu(spec.in_channels, widths[0])
    cin = widths[0]
    for stage, cout in enumerate(widths[1:]):
        for i in range(blocks_per_stage):
            layers.append(BasicBlock(cin, cout, 2 if (stage > 0 and i == 0) else 1))
            cin = cout
    body = nn.Sequential(*layers)
    return ClassifierModel(spec, body, pooled_head(cin, spec.num_classes), cin)


class WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv, BN-ReLU-conv, identity or 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


def wide_resnet(spec: ModelSpec, depth: int, widen: int) -> ClassifierModel:
    if (depth - 4) % 6:
        raise ValueError("WRN depth must be 6n+4")
    n = (depth - 4) // 6
    widths = (16, 16 * widen, 32 * widen, 64 * widen)
    layers: list[nn.Module] = [nn.Conv2d(spec.in_channels, widths[0], 3, 1, 1, bias=False)]
    cin = widths[0]
    for stage, cout in enumerate(widths[1:]):
        for i in range(n):
            layers.append(WideBlock(cin, cout, 2 if (stage > 0 and i == 0) else 1))
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]  # the feature map is post-activation
    return ClassifierModel(spec, nn.Sequential(*layers), pooled_head(cin, spec.num_classes), cin)


def cifar_vgg(spec: ModelSpec, config: list[list[int]]) -> ClassifierModel:
    """A CIFAR VGG; ``config``: the convolution widths of each stage (``compress.models.zoo.VGG_CONFIGS``)."""
    layers: list[nn.Module] = []
    cin = spec.in_channels
    for stage, widths in enumerate(config):
        if stage > 0:
            # ceil_mode keeps odd maps (28 px input: 7 -> 4 -> 2) from shrinking to nothing
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        for cout in widths:
            layers += conv_bn_relu(cin, cout)
            cin = cout
    return ClassifierModel(spec, nn.Sequential(*layers), pooled_head(cin, spec.num_classes), cin)
