"""Any classifier ``nn.Module`` as a ``ClassifierModel``: cut it (``split.py``), check the feature map,
and remember how its own state-dict keys map onto ours so its checkpoints load as users have them."""

from __future__ import annotations

import torch
from torch import nn

from compress.errors import ConfigError
from compress.models.base import ClassifierModel, ModelSpec
from compress.models.split import SplitArg, find_split

PROBE_SIZE = 64  # px: enough for five 2x downsamplings to leave a 2x2 map


def probe_feature_map(body: nn.Module, in_channels: int, who: str, size: int = PROBE_SIZE) -> tuple[int, ...]:
    """The shape of ``body``'s output for one blank image; refuses outputs that are not (1, C, H, W) maps."""
    param = next(iter(body.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = body.training
    try:
        with torch.no_grad():
            out = body.eval()(torch.zeros(1, in_channels, size, size, device=device))
    except Exception as exc:  # shape errors of a model that cannot take this input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{who} cannot run on a {in_channels}x{size}x{size} image ({first[:120]}); "
                          "check the model's input channels") from None
    finally:
        body.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{who}'s features are {shape}, not a (batch, channels, height, width) feature map: "
                          "compress's projectors and feature losses need a convolutional map (ViT-style token "
                          "outputs are not supported); choose a convolutional model or split it at a conv stage")
    return tuple(out.shape)


def native_key_map(original: nn.Module, wrapped: nn.Module) -> dict[str, str]:
    """Their state-dict key -> ours, matched by tensor identity (the split keeps the same parameter objects)."""
    ours = {id(t): name for name, t in wrapped.state_dict(keep_vars=True).items()}
    return {name: ours[id(t)] for name, t in original.state_dict(keep_vars=True).items() if id(t) in ours}


def wrap_module(module: nn.Module, spec: ModelSpec, split: SplitArg = None) -> ClassifierModel:
    """``module`` cut into body and head (``Sequential(pre_logits, classifier)``) under ``spec``."""
    parts = find_split(module, split)
    who = f"model '{spec.name}'"
    if parts.classifier.out_features != spec.num_classes:
        raise ConfigError(f"{who} ends in a Linear with {parts.classifier.out_features} outputs but the data has "
                          f"{spec.num_classes} classes: build it with {spec.num_classes} outputs")
    shape = probe_feature_map(parts.body, spec.in_channels, who)
    model = ClassifierModel(spec, parts.body, nn.Sequential(parts.pre_logits, parts.classifier), shape[1])
    model.native_keys = native_key_map(module, model)  # read by compress.models.weights when loading
    return model


def input_channels(module: nn.Module) -> int:
    """The channels of the first convolution (3 when there is none to ask)."""
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


__all__ = ["PROBE_SIZE", "input_channels", "native_key_map", "probe_feature_map", "wrap_module"]
