"""Adapters that give torchvision's ImageNet models the features/head contract.

``small_input`` removes stem downsampling (stride-1 stem conv, no max-pool) so 28-64 px inputs keep
a useful feature map. A non-RGB input gets a new stem conv with ``in_channels`` inputs; pretrained
RGB stems are folded into it when weights are loaded (see ``compress.models.weights``).
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from compress.models.base import ClassifierModel, ModelSpec


def _replace_conv(conv: nn.Conv2d, in_channels: int, stride: int | None = None) -> nn.Conv2d:
    stride_value = conv.stride if stride is None else (stride, stride)
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride_value,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )


def _pool_head(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), *layers)


def resnet(spec: ModelSpec, builder: str) -> ClassifierModel:
    m = getattr(tvm, builder)(num_classes=spec.num_classes)
    if spec.small_input:
        m.conv1 = nn.Conv2d(spec.in_channels, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    elif spec.in_channels != 3:
        m.conv1 = _replace_conv(m.conv1, spec.in_channels)
    body = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)
    return ClassifierModel(spec, body, _pool_head(m.fc), m.fc.in_features)


def _stem_first_conv(m: nn.Module, spec: ModelSpec) -> None:
    """MobileNet/EfficientNet: features[0][0] is the stem conv."""
    stem = m.features[0][0]
    if spec.small_input or spec.in_channels != 3:
        m.features[0][0] = _replace_conv(stem, spec.in_channels, 1 if spec.small_input else None)


def features_classifier(spec: ModelSpec, builder: str) -> ClassifierModel:
    """mobilenet_v2/v3, efficientnet: ``features`` then pool then ``classifier``."""
    m = getattr(tvm, builder)(num_classes=spec.num_classes)
    _stem_first_conv(m, spec)
    first_linear = next(layer for layer in m.classifier if isinstance(layer, nn.Linear))
    return ClassifierModel(spec, m.features, _pool_head(*m.classifier), first_linear.in_features)


def shufflenet(spec: ModelSpec, builder: str) -> ClassifierModel:
    m = getattr(tvm, builder)(num_classes=spec.num_classes)
    if spec.small_input or spec.in_channels != 3:
        m.conv1[0] = _replace_conv(m.conv1[0], spec.in_channels, 1 if spec.small_input else None)
    if spec.small_input:
        m.maxpool = nn.Identity()
    body = nn.Sequential(m.conv1, m.maxpool, m.stage2, m.stage3, m.stage4, m.conv5)
    return ClassifierModel(spec, body, _pool_head(m.fc), m.fc.in_features)
