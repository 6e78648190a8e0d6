"""Resuming a training run: ``state.safetensors`` holds the method, the optimizer, the RNG and the history.

Tensors go into the safetensors file; everything else into its header as one JSON record
(``TrainingState``), and nested states (the optimizer's, the RNG's) are flattened to
``prefix.path.to.tensor`` keys with their JSON skeleton beside them. The state file is written after an
epoch's checkpoints, so it never points past files that were not written (see ``compress.train``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compress.checkpoint import flatten_state, load_self_described, save_tensors, unflatten_state
from compress.distill.base import Method
from compress.errors import CheckpointError
from compress.record import STATE_FILE


@dataclass(frozen=True)
class EpochProgress:
    """A save in the middle of an epoch: how far into epoch ``TrainingState.epoch + 1`` training got. The
    loader resumes after ``step`` batches with what an uninterrupted run draws next (``BatchLoader.start_at``);
    the running sums make the epoch's metrics those of the whole epoch."""

    step: int  # batches done in the epoch
    sums: tuple[float, float, float, float]  # this rank's loss sum, images, correct, labelled images
    parts: dict[str, float]  # the method's named loss parts, summed over the steps
    seconds: float  # training time spent in the epoch so far

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "sums": list(self.sums), "parts": self.parts, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Any) -> EpochProgress:
        step, sums, parts, seconds = data["step"], data["sums"], data["parts"], data["seconds"]
        if not _whole(step) or step < 1:
            raise ValueError(f"in_epoch step {step!r} is not a number of batches done")
        if not (isinstance(sums, list) and len(sums) == 4 and all(_number(v) for v in sums)):
            raise ValueError(f"in_epoch sums {sums!r} are not four numbers")
        if not (isinstance(parts, dict) and all(isinstance(k, str) and _number(v) for k, v in parts.items())):
            raise ValueError("in_epoch parts are not named numbers")
        if not _number(seconds) or seconds < 0:
            raise ValueError(f"in_epoch seconds {seconds!r} is not a duration")
        return cls(step, (float(sums[0]), float(sums[1]), float(sums[2]), float(sums[3])),
                   {k: float(v) for k, v in parts.items()}, float(seconds))


@dataclass(frozen=True)
class TrainingState:
    """The JSON part of the resume state: where the run stands and what it must stay the same as."""

    epoch: int  # completed epochs
    history: list[dict[str, Any]]  # one metrics row per completed epoch
    best_top1: float  # -1 before the first evaluation
    best_epoch: int
    fingerprint: dict[str, Any]  # RunInfo.fingerprint(): a resumed run must have the same
    train_config: dict[str, Any]
    in_epoch: EpochProgress | None = None  # saved in the middle of epoch ``epoch + 1``; None at an epoch's end

    def to_dict(self, skeleton: dict[str, Any]) -> dict[str, Any]:
        return {"epoch": self.epoch, "history": self.history, "best": [self.best_top1, self.best_epoch],
                "skeleton": skeleton, "fingerprint": self.fingerprint, "train_config": self.train_config,
                **({"in_epoch": self.in_epoch.to_dict()} if self.in_epoch is not None else {})}

    @property
    def resumes_at(self) -> str:
        """Where training goes on from this state, for a person: "epoch 3" or "epoch 3 after step 140"."""
        after = f" after step {self.in_epoch.step}" if self.in_epoch is not None else ""
        return f"epoch {self.epoch + 1}{after}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        """The state of a file's record, checked (a damaged or crafted one raises KeyError or ValueError):
        training restarts at ``epoch + 1``, so it must count the rows of ``history``."""
        epoch, history, best = data["epoch"], data["history"], data.get("best", [-1.0, 0])
        if not _whole(epoch) or epoch < 0:
            raise ValueError(f"epoch {epoch!r} is not a number of completed epochs")
        if not isinstance(history, list) or len(history) != epoch or not all(isinstance(r, dict) for r in history):
            raise ValueError(f"history does not hold one metrics row for each of the {epoch} completed epochs")
        if not (isinstance(best, list) and len(best) == 2 and isinstance(best[0], (int, float))
                and -1 <= best[0] <= 100 and _whole(best[1]) and 0 <= best[1] <= epoch):
            raise ValueError(f"best {best!r} is not a top-1 (%) and an epoch of this run")
        fingerprint, train_config = data.get("fingerprint") or {}, data.get("train_config") or {}
        if not isinstance(fingerprint, dict) or not isinstance(train_config, dict):
            raise ValueError("fingerprint and train_config are not JSON objects")
        in_epoch = EpochProgress.from_dict(data["in_epoch"]) if data.get("in_epoch") is not None else None
        return cls(epoch, history, float(best[0]), best[1], fingerprint, train_config, in_epoch)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_state_record(out_dir: Path) -> TrainingState | None:
    """The JSON part of ``out_dir/state.safetensors`` (its header only, no tensors), or None if unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(out_dir / STATE_FILE), framework="pt") as f:
            record = json.loads((f.metadata() or {})["record"])
        return TrainingState.from_dict(record)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_training_state(out_dir: Path, method: Method, optimizer: torch.optim.Optimizer, state: TrainingState) -> None:
    """Write ``out_dir/state.safetensors``: ``state`` plus the method's, the optimizer's and the RNG's tensors."""
    tensors: dict[str, torch.Tensor] = {f"method.{k}": v for k, v in method.state_dict().items()}
    skeleton = {
        "optimizer": flatten_state(optimizer.state_dict(), "optim", tensors),
        "rng": flatten_state(_rng_state(), "rng", tensors),
    }
    save_tensors(out_dir / STATE_FILE, tensors, "training-state", state.to_dict(skeleton))


def _check_same_run(out_dir: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    for key in dict.fromkeys([*current, *saved]):  # the current run's keys first, in its order
        if saved.get(key) != current.get(key):
            raise CheckpointError(
                f"cannot resume '{out_dir}': it was trained with a different {key} ({saved.get(key)!r} vs "
                f"{current.get(key)!r}); use the original settings or another --out"
            )


def load_training_state(out_dir: Path, method: Method, optimizer: torch.optim.Optimizer,
                        fingerprint: dict[str, Any]) -> TrainingState:
    """Restore ``method``, ``optimizer`` and the RNG from ``out_dir``; refuse a run with another fingerprint."""
    tensors, record = load_self_described(out_dir / STATE_FILE)
    try:
        state = TrainingState.from_dict(record)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"'{out_dir / STATE_FILE}' is not a usable compress training state ({what[:160]}); "
                              "delete it to start over") from None
    _check_same_run(out_dir, state.fingerprint, fingerprint)
    try:
        _restore(record, tensors, method, optimizer)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
        first = (str(exc).splitlines() or [""])[0][:120]
        raise CheckpointError(f"cannot resume '{out_dir}': saved state does not fit ({type(exc).__name__}: {first}); "
                              "use the original settings, or delete it to start over") from None
    return state


def _restore(record: dict[str, Any], tensors: dict[str, torch.Tensor], method: Method,
             optimizer: torch.optim.Optimizer) -> None:
    """Load the method's, the optimizer's and the RNG's state; whatever does not fit raises."""
    own = {k[len("method."):]: v for k, v in tensors.items() if k.startswith("method.")}
    method.load_state_dict(own, strict=True)
    chosen = [(g.get("fused"), g.get("foreach")) for g in optimizer.param_groups]
    optimizer.load_state_dict(unflatten_state(record["skeleton"]["optimizer"], tensors))
    for group, (fused, foreach) in zip(optimizer.param_groups, chosen):  # this machine's kernels, not the saver's
        group["fused"], group["foreach"] = fused, foreach
    for param, slots in optimizer.state.items():  # load_state_dict takes any shape; the first step would fail
        for name, value in slots.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise ValueError(f"optimizer '{name}' is {list(value.shape)} for a parameter of {list(param.shape)}")
    _set_rng_state(unflatten_state(record["skeleton"]["rng"], tensors))
