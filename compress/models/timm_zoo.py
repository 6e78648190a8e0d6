"""timm models by name (``timm:NAME``), an optional extra: ``pip install 'compress-edge[timm]'``.

timm's ``forward_features`` / ``forward_head`` give the features/head split; ``in_chans`` and
``num_classes`` come from the data. Weights: random, a file, or a pretrained tag (``--teacher-weights
imagenet`` for the default tag, or e.g. ``a1_in1k``) that timm fetches (online users only).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from compress.errors import CheckpointError, ConfigError, MissingDependency, UnknownNameError

if TYPE_CHECKING:  # torch is imported by what builds a model, not by the names (the zoo's table imports this)
    import torch

    from compress.models.base import ClassifierModel, ModelSpec

PREFIX = "timm:"


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise MissingDependency("timm", "timm", "timm:NAME models") from None
    return timm


def timm_version() -> str | None:
    """The installed timm's version, or None (for `compress list models`: read from its metadata, since
    importing timm loads torch)."""
    from importlib import metadata

    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return None


def canonical_timm_name(name: str) -> str:
    """``timm:NAME`` checked against timm's registry (tags such as ``.a1_in1k`` are weights, not models)."""
    timm = _timm()
    bare = name[len(PREFIX):].strip()
    if "." in bare:
        arch, tag = bare.split(".", 1)
        if not timm.is_model(arch) or bare not in timm.list_pretrained(f"{arch}.*"):  # timm:os.system is no tag
            raise UnknownNameError(f"'{name[:80]}' is not a timm model name: give the architecture alone "
                                   "(timm:resnet18; see timm.list_models()) and a pretrained tag as the weights")
        raise ConfigError(f"'{name}': give the architecture as the model (timm:{arch}) and the "
                          f"pretrained tag as the weights (--teacher-weights {tag})")
    if not timm.is_model(bare):
        close = difflib.get_close_matches(bare, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ": see timm.list_models()"
        raise UnknownNameError(f"unknown timm model '{bare}'{hint}")
    return PREFIX + bare


def build_timm(spec: ModelSpec) -> ClassifierModel:
    """A randomly initialised timm model cut into our contract."""
    from compress.models.wrapped import wrap_module

    timm = _timm()
    bare = spec.name[len(PREFIX):]
    module = timm.create_model(bare, pretrained=False, num_classes=spec.num_classes, in_chans=spec.in_channels)
    if hasattr(module, "patch_embed"):  # ViT, DeiT, Swin, ...: tokens, not a map (Swin's are even NHWC)
        raise ConfigError(f"timm model '{bare}' is a patch-token (ViT-style) model: compress's projectors and "
                          "feature losses need a convolutional (batch, channels, height, width) feature map; "
                          "choose a convolutional timm model (resnet*, efficientnet*, mobilenetv3*, convnext*)")
    return wrap_module(module, spec)


def timm_pretrained_state(spec: ModelSpec, tag: str) -> dict[str, torch.Tensor]:
    """timm's pretrained weights for ``spec`` (``imagenet``: timm's default tag), in timm's own key names."""
    timm = _timm()
    bare = spec.name[len(PREFIX):]
    full = bare if tag.lower() in ("imagenet", "pretrained", "timm", "default") else f"{bare}.{tag}"
    try:
        # timm sums an RGB stem into in_chans itself; the classifier keeps the tag's classes (ours are checked on load)
        module = timm.create_model(full, pretrained=True, in_chans=spec.in_channels)
    except Exception as exc:  # RuntimeError for unknown tags, network errors from the hub client
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot get timm weights '{full}' ({first[:140]}): check the tag on the model's "
                              "page, be online (or have them in the Hugging Face cache), or pass a weights file") from None
    return module.state_dict()


__all__ = ["PREFIX", "build_timm", "canonical_timm_name", "timm_pretrained_state", "timm_version"]
