"""Data-parallel training (DDP, gloo on CPU) matches one process on the same global batch.

Two processes each take half of every global batch (``TensorLoader`` rank::world_size slicing), DDP
averages their gradients, and the result must follow the single-process run: same per-step loss
(mean over ranks), same epoch metrics, same weights, to float tolerance. The models have no
BatchNorm because per-rank batch statistics differ from the global batch's (SyncBatchNorm is the
GPU option, ``DistContext(sync_batchnorm=True)``). The method is ATSC with a trainable teacher:
the fast path with ``teacher_ce = 0`` (the classifier weight W then gets no gradient from the loss,
which DDP must tolerate, and the anchor gradient is added after DDP's averaging), the fast path with the
teacher CE guard, and the reference path (its separate bias step happens outside DDP and averages its
own gradient). A checkpoint written
by the two-process run resumes in one process.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from compress.data import DATASETS, DataBundle
from compress.data.labels import UNLABELED
from compress.data.loaders import Augment, TensorLoader
from compress.data.preprocessing import Preprocessing
from compress.distill import ATSC, DistillConfig
from compress.distill.base import StepOutput
from compress.models import ClassifierModel, ModelSpec
from compress.models.base import pooled_head
from compress.parallel import DistContext
from compress.train import TrainConfig, fit

SIZE, CLASSES, GLOBAL_BATCH = 12, 10, 16
QUIET: dict[str, Any] = dict(log=lambda msg: None, progress=False)


def _net(name: str, widths: tuple[int, int]) -> ClassifierModel:
    """A conv net without BatchNorm that honours the ClassifierModel contract."""
    body = nn.Sequential(nn.Conv2d(1, widths[0], 3, padding=1), nn.ReLU(),
                         nn.Conv2d(widths[0], widths[1], 3, stride=2, padding=1), nn.ReLU())
    return ClassifierModel(ModelSpec(name, CLASSES, 1, True), body, pooled_head(widths[1], CLASSES), widths[1])


class RecordingATSC(ATSC):
    """ATSC that keeps each step's (rank-local) loss for the trajectory comparison."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.losses: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        out = super().forward(images, labels)
        self.losses.append(out.loss.detach().clone())
        return out


def _method(reference: bool, teacher_ce: float = 0.0, **settings: Any) -> RecordingATSC:
    torch.manual_seed(0)
    teacher, student = _net("resnet8", (8, 16)), _net("resnet8", (4, 8))
    cfg = DistillConfig(method="atsc", projector="pointwise", reference=reference, teacher_ce=teacher_ce,
                        teacher_lr_scale=0.5, anchor_scope="reference", **settings)
    method = RecordingATSC(student, [teacher], cfg.settings, SIZE)
    for branch in method.net.branches:  # the projector without its BatchNorm layers (see the module docstring)
        for i, layer in enumerate(branch.projector):
            if isinstance(layer, nn.BatchNorm2d):
                branch.projector[i] = nn.Identity()
    return method


def _data(rank: int, world: int, partly_labeled: bool = False) -> DataBundle:
    g = torch.Generator().manual_seed(7)
    train_x = torch.randint(0, 256, (64, 1, SIZE, SIZE), generator=g, dtype=torch.uint8)
    train_y = torch.randint(0, CLASSES, (64,), generator=g)
    share = None
    if partly_labeled:  # 16 of 64 images keep their labels; half of each global batch is labelled
        train_y[16:] = UNLABELED
        share = 0.5
    val_x = torch.randint(0, 256, (40, 1, SIZE, SIZE), generator=g, dtype=torch.uint8)
    val_y = torch.randint(0, CLASSES, (40,), generator=g)
    pre = Preprocessing((0.5,), (0.25,), SIZE, 1, 1, None, tuple(str(i) for i in range(CLASSES)))
    common: dict[str, Any] = dict(rank=rank, world_size=world)
    train = TensorLoader(train_x, train_y, GLOBAL_BATCH, pre, shuffle=True, augment=Augment(pad=2, flip=True),
                         drop_last=True, seed=3, labeled_share=share, **common)
    val = TensorLoader(val_x, val_y, 16, pre, shuffle=False, **common)
    test_x = torch.randint(0, 256, (40, 1, SIZE, SIZE), generator=g, dtype=torch.uint8)  # read once, at the end
    test = TensorLoader(test_x, torch.randint(0, CLASSES, (40,), generator=g), 16, pre, shuffle=False, **common)
    return DataBundle(train, val, DATASETS.get("synthetic"), CLASSES, pre, test)


def _config(epochs: int) -> TrainConfig:
    # constant lr so that a run stopped at epoch 2 and resumed to 3 follows the same schedule as any other
    return TrainConfig(epochs=epochs, lr=0.1, schedule="constant", seed=0, log_every=1)


# (out folder, reference path, teacher CE weight, epochs, partly labelled): "fast" leaves W without gradient
# (DDP must find it unused), "guarded" (the default's teacher CE) reaches every parameter, "reference" steps b
# outside DDP, "partly" is "guarded" on mixed batches (each rank averages its label terms over its own half
# of the batch's labelled images, an equal share, so the mean over ranks is the global batch's).
JOBS = (("fast", False, 0.0, 2, False), ("guarded", False, 1.0, 1, False), ("reference", True, 0.0, 1, False),
        ("partly", False, 1.0, 1, True), ("every2", False, 1.0, 1, False), ("frozen", False, 1.0, 1, False))
# "every2" steps the teacher on every 2nd step only (DDP must find its parameters unused in between);
# "frozen" trains no teacher at all (no teacher parameter reaches DDP).
SETTINGS: dict[str, dict[str, Any]] = {"every2": {"teacher_every": 2}, "frozen": {"teacher_adapt": "none"}}


def _train(root: Path, rank: int, world: int, dist: DistContext) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, reference, teacher_ce, epochs, partly in JOBS:
        method = _method(reference, teacher_ce, **SETTINGS.get(name, {}))
        fit(method, _data(rank, world, partly), _config(epochs), root / name, dist=dist, **QUIET)
        results[name] = {"losses": torch.stack(method.losses),
                         "state": {k: v.clone() for k, v in method.state_dict().items()}}
    return results


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist = DistContext.from_env(backend="gloo")
    try:
        torch.save(_train(Path(root), rank, world, dist), Path(root) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _history(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_close_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()  # no "module." prefixes: the state is the method's, not DDP's
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=lambda m: f"{key}: {m}")


def test_two_processes_match_one_and_resume_in_one(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    mp.spawn(_worker, args=(2, _free_port(), str(two)), nprocs=2, join=True)
    single = _train(one, 0, 1, DistContext.single())
    ranks = [torch.load(two / f"rank{r}.pt") for r in range(2)]

    for name, _, _, epochs, _ in JOBS:
        # the per-step loss: mean of the two half-batch losses == the global batch's loss
        together = (ranks[0][name]["losses"] + ranks[1][name]["losses"]) / 2
        assert len(together) == epochs * 4
        torch.testing.assert_close(together, single[name]["losses"], rtol=1e-4, atol=1e-5)
        _assert_close_states(ranks[0][name]["state"], single[name]["state"])
        _assert_close_states(ranks[1][name]["state"], ranks[0][name]["state"])  # ranks never drift apart
        # metrics are reduced over ranks before rank 0 writes them
        for row_two, row_one in zip(_history(two / name), _history(one / name), strict=True):
            assert row_two["train_loss"] == pytest.approx(row_one["train_loss"], rel=1e-4)
            assert row_two["loss_mse"] == pytest.approx(row_one["loss_mse"], rel=1e-4)
            for key in ("val_top1", "teacher_top1", "teacher_top1_start"):
                assert abs(row_two[key] - row_one[key]) <= 100 / 40 + 1e-9, key  # one of 40 images at most
        # the test split is read once, over both ranks' slices, with the best epoch's weights
        summary_two, summary_one = (json.loads((run / name / "summary.json").read_text()) for run in (two, one))
        assert summary_two["test_epoch"] == summary_one["test_epoch"]
        assert abs(summary_two["test_top1"] - summary_one["test_top1"]) <= 100 / 40 + 1e-9

    # A state written by 2 processes resumes in 1 (and matches the 1-process run resumed the same way).
    resumed = {}
    for run in (one, two):
        method = _method(False)
        fit(method, _data(0, 1), _config(3), run / "fast", resume=True, **QUIET)
        resumed[run.name] = method.state_dict()
        assert [row["epoch"] for row in _history(run / "fast")] == [1, 2, 3]
    _assert_close_states(resumed["two"], resumed["one"])


def test_sync_batchnorm_on_cpu_is_refused_in_one_line() -> None:
    from compress.errors import ConfigError

    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ConfigError, match=r"^SyncBatchNorm needs GPUs \(NCCL\); on CPU each rank keeps its own BN"):
        DistContext(rank=0, world_size=2, sync_batchnorm=True).wrap(module)
    assert DistContext.single().wrap(module) is module  # one process: nothing to synchronise
