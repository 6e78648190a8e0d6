"""Teacher weights as users have them: every layout loads into the same model, mismatches are named."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import save_file

from compress.errors import CheckpointError
from compress.models import create_model
from compress.models.weights import load_weights


def _reference() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return create_model("resnet8", 10, 1).state_dict()


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


LAYOUTS: dict[str, Callable[[dict[str, torch.Tensor]], Any]] = {
    "plain": lambda s: s,
    "ddp_module_prefix": lambda s: _prefixed(s, "module."),
    "lightning": lambda s: {"epoch": 3, "global_step": 10, "state_dict": _prefixed(s, "model.")},
    "nested_state_dict": lambda s: {"state_dict": s, "epoch": 7},
    "nested_model": lambda s: {"model": s, "optimizer": {"state": {}, "param_groups": []}},
    "nested_ema_only": lambda s: {"ema": s},
    "model_ema_with_module_prefix": lambda s: {"model_ema": _prefixed(s, "module.")},
    "two_levels": lambda s: {"model": {"state_dict": s}},
    "compiled_ddp": lambda s: _prefixed(s, "module._orig_mod."),
    "ordered_dict": lambda s: collections.OrderedDict(s),
    # timm's train.py: args is an argparse.Namespace, the EMA copy sits beside the raw weights
    "timm_train_checkpoint": lambda s: {"epoch": 2, "arch": "resnet8", "state_dict": s,
                                        "state_dict_ema": {k: torch.zeros_like(v) for k, v in s.items()},
                                        "optimizer": {"state": {}, "param_groups": []}, "version": 2,
                                        "args": argparse.Namespace(lr=0.1, model="resnet8"), "metric": 71.5},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_pytorch_layout_loads_the_same_weights(layout: str, tmp_path: Path) -> None:
    reference = _reference()
    path = tmp_path / f"{layout}.pt"
    torch.save(LAYOUTS[layout](reference), path)
    model = create_model("resnet8", 10, 1)
    assert load_weights(model, str(path)) == str(path)
    loaded = model.state_dict()
    assert set(loaded) == set(reference)
    for key, value in reference.items():
        assert torch.equal(loaded[key], value), key


def test_safetensors_with_ddp_prefix_loads(tmp_path: Path) -> None:
    reference = _reference()
    path = tmp_path / "teacher.safetensors"  # no sidecar: a third-party file, not one of ours
    save_file({k: v.contiguous() for k, v in _prefixed(reference, "module.").items()}, str(path))
    model = create_model("resnet8", 10, 1)
    load_weights(model, str(path))
    assert torch.equal(model.state_dict()["body.0.weight"], reference["body.0.weight"])


def test_mismatched_keys_are_named_in_one_line(tmp_path: Path) -> None:
    state = dict(_reference())
    state.pop("body.0.weight")
    state.pop("body.1.weight")
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("resnet8", 10, 1), str(path))
    message = str(info.value)
    assert "\n" not in message
    assert "2 missing ('body.0.weight', 'body.1.weight')" in message
    assert "1 unexpected ('extra.weight')" in message


def test_long_key_lists_are_cut_after_three(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({f"other.{i}": torch.zeros(1) for i in range(5)} | _reference(), path)
    with pytest.raises(CheckpointError, match=r"5 unexpected \('other.0', 'other.1', 'other.2' and 2 more\)"):
        load_weights(create_model("resnet8", 10, 1), str(path))


class Payload:
    """A pickled object: torch.load(weights_only=True) must refuse it instead of running its code."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (print, ("code ran",))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _reference(), "hook": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to load .* could run code"):
        load_weights(create_model("resnet8", 10, 1), str(path))


def test_container_without_weights_lists_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"epoch": 1, "optimizer": {"lr": 0.1}, "notes": "x"}, path)
    with pytest.raises(CheckpointError, match=r"holds no state_dict .* its keys are 'epoch', 'optimizer', 'notes'"):
        load_weights(create_model("resnet8", 10, 1), str(path))
