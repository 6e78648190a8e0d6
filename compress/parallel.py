"""Distributed training on PyTorch's own engine: ``torchrun`` starts the processes, we join them.

``DistContext.from_env()`` reads the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) and
initialises the process group (NCCL on GPUs, gloo on CPUs). Only the trainable parts are wrapped in
DDP: the method module is wrapped as a whole and DDP ignores parameters that do not require
gradients (frozen teachers). A method whose trainable parameters may get no gradient in a step (ATSC's
classifier weight W when ``teacher_ce = 0``) says so with ``ddp_find_unused_parameters = True``; DDP then
searches the graph every step for them (a cost the other methods do not pay).

Gradient semantics: every rank computes the mean loss over its slice of the global batch and DDP
averages the gradients, so with equal slices the update equals one process on the global batch.
Anything a method steps outside DDP's backward (ATSC reference's separate bias step) must average its
gradients itself with ``average_gradients``; per-rank statistics are summed with ``all_reduce_sum_``.
Only rank 0 writes files. BatchNorm statistics stay per-rank unless ``sync_batchnorm`` (GPU) is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from compress.errors import ConfigError


def _world() -> int:
    """World size of the default process group (1 when none is initialised)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks of the default group; a no-op in a single process."""
    if _world() > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_gradients(params: list[torch.Tensor]) -> None:
    """Mean of ``p.grad`` over ranks, for updates DDP does not see (no-op in a single process)."""
    world = _world()
    grads = [p.grad for p in params if p.grad is not None]
    if world <= 1 or not grads:
        return
    import torch.distributed as dist

    flat = torch.cat([g.reshape(-1) for g in grads])  # one collective instead of one per tensor
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _silent(message: str) -> None:
    pass


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    sync_batchnorm: bool = False  # GPU: BN statistics over the global batch (per-rank otherwise)

    @classmethod
    def single(cls) -> "DistContext":
        return cls()

    @classmethod
    def from_env(cls, backend: str | None = None, sync_batchnorm: bool | None = None) -> "DistContext":
        """Join the job torchrun started; ``COMPRESS_SYNC_BN=1`` turns on SyncBatchNorm when not given."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls.single()
        import torch.distributed as dist

        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
            if chosen == "nccl":
                torch.cuda.set_device(local)
            dist.init_process_group(chosen)
        if sync_batchnorm is None:
            sync_batchnorm = os.environ.get("COMPRESS_SYNC_BN", "0") not in ("", "0", "false")
        return cls(rank, world, local, sync_batchnorm)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def main_only(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log`` on rank 0, silence elsewhere: numbers are reduced over ranks, so rank 0's lines speak for all."""
        return log if self.is_main else _silent

    def device(self, requested: str) -> str:
        """Each rank takes its own GPU under torchrun."""
        if self.enabled and requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def check_batch(self, global_batch: int) -> None:
        """Equal slices per rank, or the averaged gradient is not the global batch's."""
        if self.enabled and global_batch % self.world_size:
            raise ConfigError(f"batch size {global_batch} does not split evenly over {self.world_size} processes: "
                              f"use a multiple of {self.world_size} (the batch size is the global batch)")

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around ``module`` (the method, in place), or ``module`` itself in a single process.

        Build the optimizer after this call: SyncBatchNorm conversion replaces BN modules.
        """
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        cuda = next(module.parameters()).device.type == "cuda"
        if self.sync_batchnorm:
            if not cuda:
                raise ConfigError("SyncBatchNorm needs GPUs (NCCL); on CPU each rank keeps its own BN statistics")
            # Converts in place below the top module (the method itself is no BN, so it is returned as is).
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        device_ids = [self.local_rank] if cuda else None
        # broadcast_buffers=False: BN statistics stay per-rank (SyncBatchNorm shares them).
        find_unused = bool(getattr(module, "ddp_find_unused_parameters", False))
        return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False,
                                       find_unused_parameters=find_unused)

    def all_reduce_sum(self, tensor: torch.Tensor) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()
