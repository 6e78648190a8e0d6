"""The projector kinds (``PROJECTORS``): name -> the layers of that kind (``projector.py`` builds them).

The table needs no torch (the layers import it when built): the settings that name a projector kind are
checked, and listed by `compress list projectors`, without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from compress.registry import Registry

if TYPE_CHECKING:
    from torch import nn


def _conv_bn_relu(cin: int, cout: int, kernel: int, groups: int = 1) -> list[nn.Module]:
    from torch import nn

    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def bottleneck_layers(cin: int, cout: int, factor: int) -> list[nn.Module]:
    """Reference (SimKD/ATSC): 1x1 -> 3x3 -> 1x1, width C_t / r."""
    mid = max(1, cout // factor)
    return _conv_bn_relu(cin, mid, 1) + _conv_bn_relu(mid, mid, 3) + _conv_bn_relu(mid, cout, 1)


def depthwise_layers(cin: int, cout: int, factor: int) -> list[nn.Module]:
    """The bottleneck with a depthwise 3x3 (``mid`` groups): ~``9 mid^2`` fewer weights."""
    mid = max(1, cout // factor)
    return _conv_bn_relu(cin, mid, 1) + _conv_bn_relu(mid, mid, 3, groups=mid) + _conv_bn_relu(mid, cout, 1)


def pointwise_layers(cin: int, cout: int, factor: int) -> list[nn.Module]:
    """1x1 only: the bottleneck without its 3x3 (no spatial mixing), width C_t / r."""
    mid = max(1, cout // factor)
    return _conv_bn_relu(cin, mid, 1) + _conv_bn_relu(mid, cout, 1)


def linear_layers(cin: int, cout: int, factor: int) -> list[nn.Module]:
    """A single 1x1 conv C_s -> C_t (FitNets-style regressor), BN, ReLU; ``factor`` is unused."""
    return _conv_bn_relu(cin, cout, 1)


PROJECTORS: Registry[Callable[[int, int, int], list[nn.Module]]] = Registry("projector")
PROJECTORS.add("bottleneck", bottleneck_layers, "reference")
PROJECTORS.add("depthwise", depthwise_layers, "dw")
PROJECTORS.add("pointwise", pointwise_layers, "1x1", "conv1x1")
PROJECTORS.add("linear", linear_layers)
