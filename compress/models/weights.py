"""Loading weights into zoo models: our checkpoints, plain state dicts, torchvision's ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import torch

from compress.checkpoint import load_external_state_dict
from compress.errors import CheckpointError
from compress.models.base import ClassifierModel
from compress.models.zoo import MODELS


# Prefixes that wrappers add to every key: DDP/DataParallel (``module.``), Lightning and EMA helpers
# (``model.``), torch.compile (``_orig_mod.``).
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")


def strip_wrapper_prefixes(state: dict[str, torch.Tensor], own_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop a prefix shared by every key while it is one of ``WRAPPER_PREFIXES`` and the model's own keys
    do not carry it (``module.model.layer1...`` -> ``layer1...``)."""
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None or all(k.startswith(prefix) for k in own_keys):
            return state
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def remap_native_keys(model: ClassifierModel, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of the model's own library (torchvision ``layer1.0.conv1.weight``, timm ``fc.weight``,
    a user module's ``backbone.0.weight``) to ours (``body.4.0.conv1.weight``), when they are in that form."""
    if any(k.startswith(("body.", "head_module.")) for k in state):
        return state
    native = getattr(model, "native_keys", None)  # wrapped timm / user models: their key -> ours
    if native:
        return {native.get(k, k): v for k, v in state.items()}
    prefixes = MODELS.get(model.spec.name).tv_prefixes if model.spec.name in MODELS else ()
    if not prefixes:
        return state
    out = {}
    for key, value in state.items():
        for theirs, ours in prefixes:
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = value
                break
        else:
            out[key] = value
    return out


def _names(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _fold_stem(model: ClassifierModel, state: dict[str, torch.Tensor]) -> None:
    """Adapt an RGB stem kernel to a 1-channel model by summing over colour (grey = r = g = b)."""
    own = model.state_dict()
    for key, value in list(state.items()):
        if key in own and value.dim() == 4 and own[key].dim() == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            if value.shape[0] == own[key].shape[0] and value.shape[2:] == own[key].shape[2:]:
                state[key] = value.sum(dim=1, keepdim=True)


def load_state_into(model: ClassifierModel, state: dict[str, torch.Tensor], source: str,
                    allow_new_head: bool = False) -> list[str]:
    """Load ``state`` strictly; with ``allow_new_head`` a classifier of another size is left fresh.

    Returns the keys that were not loaded (only the classifier, and only with ``allow_new_head``).
    """
    own = model.state_dict()
    state = remap_native_keys(model, strip_wrapper_prefixes(dict(state), set(own)))
    _fold_stem(model, state)
    head_keys = {k for k in own if k.startswith("head_module.")}
    skipped: list[str] = []
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    for key in mismatched:
        if allow_new_head and key in head_keys:
            state.pop(key)
            skipped.append(key)
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if mismatched:
        key = mismatched[0]
        if key in head_keys:
            raise CheckpointError(
                f"{source}: classifier '{key}' has shape {tuple(state[key].shape)} but {model.spec.name} with "
                f"{model.num_classes} classes needs {tuple(own[key].shape)}: use weights trained on the same classes "
                "(compress train-teacher) or fine-tune them with --init"
            )
        raise CheckpointError(
            f"{source}: '{key}' has shape {tuple(state[key].shape)}, expected {tuple(own[key].shape)}; "
            f"these weights are not for {model.spec.name} with this input (check --model / channels / image size)"
        )
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        found = [f"{len(missing)} missing ({_names(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({_names(unexpected)})" if unexpected else ""]
        raise CheckpointError(
            f"{source}: weights do not fit {model.spec.name}: {'; '.join(f for f in found if f)} keys; "
            "pass weights saved from this architecture"
        )
    model.load_state_dict(state, strict=False if skipped else True)
    return skipped


def torchvision_pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """torchvision's default ImageNet weights: from the local torch cache, or downloaded when online."""
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise CheckpointError(f"torchvision has no pretrained weights for '{name}': pass --teacher-weights FILE") from None
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, HTTPError, OSError: no network and not in the cache
        raise CheckpointError(
            f"cannot get torchvision ImageNet weights for '{name}' ({type(exc).__name__}): they are neither in the "
            "torch cache (~/.cache/torch/hub/checkpoints) nor downloadable; pass a weights file, or train a teacher "
            "with `compress train-teacher`"
        ) from None


def load_weights(model: ClassifierModel, source: str, allow_new_head: bool = False) -> str:
    """Load weights from ``source``: 'imagenet', one of our checkpoints, or a third-party weights file.

    Returns a short description of what was loaded (for logs and sidecars).
    """
    if model.spec.name.startswith("timm:") and not Path(source).exists():
        from compress.models.timm_zoo import timm_pretrained_state

        state = timm_pretrained_state(model.spec, source)  # `source` is a pretrained tag
        load_state_into(model, state, f"timm weights '{source}' for {model.spec.name}", allow_new_head=allow_new_head)
        return f"{model.spec.name}.{source}"
    if source.lower() in ("imagenet", "pretrained", "torchvision"):
        state = torchvision_pretrained_state(model.spec.name)
        load_state_into(model, state, f"ImageNet weights for {model.spec.name}", allow_new_head=allow_new_head)
        return f"torchvision:{model.spec.name}"
    path = Path(source)
    if path.suffix == ".safetensors" and Path(str(path) + ".json").exists():
        from compress.checkpoint import load_tensors

        tensors, record = load_tensors(path)
        arch = record.get("architecture", {})
        if arch.get("type") not in (None, "classifier"):
            raise CheckpointError(f"'{path}' is a distilled student, not a {model.spec.name} classifier; pass a teacher checkpoint")
        spec = arch.get("model", {})
        if spec.get("name") and spec["name"] != model.spec.name:
            raise CheckpointError(f"'{path}' holds a {spec['name']}, not a {model.spec.name}: pass the matching --model or weights")
        load_state_into(model, tensors, str(path), allow_new_head=allow_new_head)
        return str(path)
    load_state_into(model, load_external_state_dict(path), str(path), allow_new_head=allow_new_head)
    return str(path)
